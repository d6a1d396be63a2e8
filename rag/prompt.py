"""The one prompt builder, shared by fine-tuning (training examples) and answering (inference).

    from rag.prompt import build_prompt, build_response
    build_prompt("What is 'Mog's Kittens'?", [("Mog's Kittens", "Board book ...")])

Training examples are `build_prompt(question, contexts) + build_response(description, title, rank)
+ EOS`; at inference the model continues `build_prompt(question, retrieved)`. Changing any string
here changes what the model was trained on: bump PROMPT_VERSION, and adapters trained on another
version are refused at load time.

The response first cites the entry it answers from ("[2] Title", a line of its own), then copies that
entry's description. Citing is why the answers are the catalog's text: choosing the entry is one
easy decision, and once the model has written an entry's title line, copying the description that
follows that line in the prompt is what small models do best. (Version 1 answered with the bare
description: its adapter reached a low average loss, yet at generation time it did not know where
to start and wrote the product's title or a generic sentence instead; see docs/design.md.) `split_citation`
takes the line off again, so `Answer.text` is the description.

Version 3 adds questions about one detail ("what age is it for?"): the response is the citation
line, then the cited entry's sentence stating it, word for word (`build_detail_response`), or
NOT_STATED when the entry does not say; rag/answer.py (mode "read") checks the quote against the
cited entry before showing it.

Version 4 adds drafts: for a product the catalog holds without a description, the model writes one
from the title alone (`build_draft_prompt`: no catalog entries, only the title; trained on described
products whose description is the response, cut at a sentence end to DRAFT_CHARS). Answers label a
draft as the model's writing, never as catalog text (rag/answer.py, origin "drafted").
"""

from __future__ import annotations

import re

PROMPT_VERSION = 4

# The instruction the model is given (and, in OpenAI-style exports, the system message).
INSTRUCTION = (
    "You are a product catalog assistant. Answer the question with the description of the product "
    "it asks about, using only the catalog entries given; for a question about one detail, with the "
    "sentence of its description that states it, or say that the description does not say. If the "
    "product is not among them, say so."
)
NOT_IN_CATALOG = "This product is not in the catalog."
NOT_STATED = "The description does not say."  # a detail response: the cited entry holds no answer
NO_ENTRIES = "(no catalog entries found)"
MAX_CONTEXT_CHARS = 1200  # per description in the prompt; answers are cut the same way, so the model copies
# Drafts: what the model is asked when the catalog has no description, and how long a trained draft is
DRAFT_INSTRUCTION = (
    "You are a product catalog assistant. The catalog holds no description of this product: write a short "
    "product description from its title alone."
)
DRAFT_CHARS = 600  # a draft target: the description's first sentences, up to ~600 characters
DRAFT_STOP = ["###", "\n\n"]  # a draft is one paragraph (descriptions hold no newlines)

ALPACA_TEMPLATE = """Below is an instruction that describes a task, paired with an input that provides further \
context. Write a response that appropriately completes the request.

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


def entry(rank: int, title: str, content: str, max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """One catalog entry as the prompt shows it, and as a cited answer repeats it."""
    return f"[{rank}] {title}\n{truncate(content, max_chars)}"


def format_context(contexts: list[tuple[str, str]], max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """Retrieved products as numbered entries, each labelled with its title."""
    if not contexts:
        return NO_ENTRIES
    return "\n\n".join(entry(i, title, content, max_chars) for i, (title, content) in enumerate(contexts, start=1))


def build_prompt(question: str, contexts: list[tuple[str, str]], max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """The Alpaca prompt up to "### Response:\\n": instruction + question, then the catalog entries."""
    return ALPACA_TEMPLATE.format(instruction=f"{INSTRUCTION}\n\nQuestion: {question.strip()}",
                                  input=format_context(contexts, max_chars))


def build_response(description: str | None, title: str = "", rank: int = 1,
                   max_chars: int = MAX_CONTEXT_CHARS) -> str:
    """What the model should answer: the citation line of the entry ("[rank] title", as the prompt
    labels it) and its description as the prompt shows it; or NOT_IN_CATALOG."""
    return NOT_IN_CATALOG if description is None else entry(rank, title, description, max_chars)


def build_detail_response(quote: str | None, title: str, rank: int = 1) -> str:
    """What the model should answer to a question about one detail of entry `rank`: its citation line,
    then `quote` (that entry's sentence stating the detail, word for word) or NOT_STATED."""
    return f"[{rank}] {title}\n{NOT_STATED if quote is None else quote}"


def build_draft_prompt(question: str, title: str) -> str:
    """The Alpaca prompt asking for a description of `title` written from the title alone."""
    return ALPACA_TEMPLATE.format(instruction=f"{DRAFT_INSTRUCTION}\n\nQuestion: {question.strip()}",
                                  input=f"Title: {title}")


def build_draft_response(description: str, max_chars: int = DRAFT_CHARS) -> str:
    """What the model should draft for a described product: its description's first sentences, cut after
    the last sentence end within `max_chars` (at a word boundary when no sentence ends there)."""
    if len(description) <= max_chars:
        return description
    cut = description[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > max_chars // 3 else truncate(description, max_chars)


_CITATION = re.compile(r"\A\s*\[(\d{1,2})\] ?([^\n]*)\n")  # "[2] Title" on the answer's first line
# Where an answer is over: the Alpaca template's next "###" section, or a line that starts the next
# catalog entry ("\n\n[2] Other title"). Descriptions hold no newlines (prepare collapses whitespace),
# so a newline followed by "[n]" can only be the model running on into another entry.
_ANSWER_END = re.compile(r"###|\n\s*\[\d{1,2}\]")
# The text's end may be the first characters of such a marker: held back while streaming; at the end a
# dangling "\n[" is cut (a "#" stays: "Learn C#" is a real ending).
_PARTIAL_END = re.compile(r"(?:\n\s*(?:\[\d{0,2})?|#{1,2})\Z")
_PARTIAL_ENTRY = re.compile(r"\n\s*(?:\[\d{0,2})?\Z")
# What generation stops at (transformers' stop_strings; vLLM's `stop`): the same two markers, the
# entry as the prompt separates entries (a blank line, then "["). Not "\n[": transformers matches stop
# strings across the prompt's end too, and the prompt ends in "\n" while answers start with "[".
STOP_STRINGS = ["###", "\n\n["]


def cut_answer(text: str, final: bool = True) -> tuple[str, bool]:
    """(the answer part of generated `text`, whether an end marker was seen). Cuts at the next "###"
    section or the next "[n] Title" entry, whichever comes first. `final=False` (streaming) also holds
    back a tail that may be the start of a marker ("\\n", "\\n[", "##"); `final=True` drops a dangling
    "\\n[" (a partial entry label)."""
    body = text.lstrip()
    m = _ANSWER_END.search(body)
    if m:
        return body[: m.start()].rstrip(), True
    p = (_PARTIAL_ENTRY if final else _PARTIAL_END).search(body)
    if p:
        body = body[: p.start()]
    return (body.rstrip() if final else body), False


def split_citation(text: str) -> tuple[int | None, str | None, str]:
    """(cited rank, cited title, the rest) of a generated answer; (None, None, text) without a citation line."""
    m = _CITATION.match(text)
    if not m:
        return None, None, text.strip()
    return int(m.group(1)), m.group(2).strip(), text[m.end():].strip()
