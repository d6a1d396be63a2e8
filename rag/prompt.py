"""The one prompt builder, shared by fine-tuning (training examples) and answering (inference).

    from rag.prompt import build_prompt, build_response
    build_prompt("What is 'Mog's Kittens'?", [("Mog's Kittens", "Board book ...")])

Training examples are `build_prompt(question, contexts) + build_response(description) + EOS`; at
inference the model continues `build_prompt(question, retrieved)`. Changing any string here changes
what the model was trained on: bump PROMPT_VERSION, and adapters trained on another version are
refused at load time.
"""

from __future__ import annotations

PROMPT_VERSION = 1

# The instruction the model is given (and, in OpenAI-style exports, the system message).
INSTRUCTION = (
    "You are a product catalog assistant. Answer the question with the description of the product "
    "it asks about, using only the catalog entries given. If the product is not among them, say so."
)
NOT_IN_CATALOG = "This product is not in the catalog."
NO_ENTRIES = "(no catalog entries found)"
MAX_CONTEXT_CHARS = 1200  # per description in the prompt; answers are cut the same way, so the model copies

ALPACA_TEMPLATE = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
{instruction}

### Input:
{input}

### Response:
"""


def truncate(text: str, max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """`text` cut to at most `max_chars`, at a word boundary when there is one."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip()


def format_context(contexts: list[tuple[str, str]], max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """Retrieved products as numbered entries, each labelled with its title."""
    if not contexts:
        return NO_ENTRIES
    return "\n\n".join(f"[{i}] {title}\n{truncate(content, max_chars)}"
                       for i, (title, content) in enumerate(contexts, start=1))


def build_prompt(question: str, contexts: list[tuple[str, str]], max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """The Alpaca prompt up to "### Response:\\n": instruction + question, then the catalog entries."""
    return ALPACA_TEMPLATE.format(instruction=f"{INSTRUCTION}\n\nQuestion: {question.strip()}",
                                  input=format_context(contexts, max_chars))


def build_response(description: str | None, max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """What the model should answer: the description as the prompt shows it, or NOT_IN_CATALOG."""
    return NOT_IN_CATALOG if description is None else truncate(description, max_chars)
