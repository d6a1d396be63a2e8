"""The one prompt builder, shared by fine-tuning (training examples) and answering (inference).

    from rag.prompt import build_prompt
    build_prompt("What is 'Mog's Kittens'?", contexts=[("Mog's Kittens", "Board book ...")])

Changing any string here changes what the model was trained on: bump PROMPT_VERSION so adapters
trained on an older prompt are detected.
"""

from __future__ import annotations

PROMPT_VERSION = 1

# The instruction the model (and OpenAI-style exports, as the system message) is given.
INSTRUCTION = (
    "You are a product catalog assistant. Answer the question with the description of the product "
    "it asks about, using only the catalog entries given. If the product is not among them, say so."
)
NOT_IN_CATALOG = "This product is not in the catalog."

ALPACA_TEMPLATE = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
{instruction}

### Input:
{input}

### Response:
"""
