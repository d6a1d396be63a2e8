"""The one prompt builder: exact strings, shared by training and inference."""

from rag.prompt import (
    INSTRUCTION,
    NOT_IN_CATALOG,
    NOT_STATED,
    build_detail_response,
    build_prompt,
    build_response,
    split_citation,
    truncate,
)

EXPECTED = """Below is an instruction that describes a task, paired with an input that provides further \
context. Write a response that appropriately completes the request.

### Instruction:
You are a product catalog assistant. Answer the question with the description of the product it asks about, \
using only the catalog entries given; for a question about one detail, with the sentence of its description that \
states it, or say that the description does not say. If the product is not among them, say so.

Question: What is 'Mog's Kittens'?

### Input:
[1] Mog's Kittens
Board book for toddlers.

[2] Mog the Forgetful Cat
A cat who forgets.

### Response:
"""


def test_prompt_exact_string():
    got = build_prompt("  What is 'Mog's Kittens'? ", [("Mog's Kittens", "Board book for toddlers."),
                                                     ("Mog the Forgetful Cat", "A cat who forgets.")])
    assert got == EXPECTED


def test_prompt_without_entries_and_portuguese():
    got = build_prompt("Qual é a descrição deste produto: mog's kittens?", [])
    assert "Question: Qual é a descrição deste produto: mog's kittens?\n\n### Input:\n(no catalog entries found)\n\n" \
           "### Response:\n" in got
    assert got.startswith("Below is an instruction") and INSTRUCTION in got


def test_response_exact_string():
    assert (build_response("Board book for toddlers.", "Mog's Kittens", 2)
            == "[2] Mog's Kittens\nBoard book for toddlers.")
    assert build_response(None) == NOT_IN_CATALOG == "This product is not in the catalog."


def test_training_text_is_inference_prompt_plus_response():
    ctx = [("B", "other"), ("A", "x " * 700)]
    prompt = build_prompt("What is 'A'?", ctx)
    response = build_response("x " * 700, "A", 2)
    train_text = prompt + response
    assert train_text.startswith(prompt) and train_text[len(prompt):] == "[2] A\n" + truncate("x " * 700)
    # the citation line and the description are exactly as the prompt shows them, so the model copies
    assert response in prompt


def test_split_citation():
    assert split_citation("[2] Mog's Kittens\nBoard book.") == (2, "Mog's Kittens", "Board book.")
    assert split_citation(" [10] T\n\nLine one.\nLine two. ") == (10, "T", "Line one.\nLine two.")
    assert split_citation(NOT_IN_CATALOG) == (None, None, NOT_IN_CATALOG)
    assert split_citation("[2] only a title") == (None, None, "[2] only a title")  # no line: not a citation


def test_truncate_at_word_boundary():
    assert truncate("short", 10) == "short"
    assert truncate("alpha beta gamma", 12) == "alpha beta"
    assert len(truncate("a" * 50, 10)) == 10


def test_detail_response_exact_strings():
    assert build_detail_response("Ages 0-3.", "Mog's Kittens", 2) == "[2] Mog's Kittens\nAges 0-3."
    assert build_detail_response(None, "Mog's Kittens") == f"[1] Mog's Kittens\n{NOT_STATED}"
    assert split_citation(build_detail_response(None, "Mog's Kittens") + "\n")[2] == NOT_STATED
