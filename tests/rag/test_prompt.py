"""The one prompt builder: exact strings, shared by training and inference."""

from rag.prompt import INSTRUCTION, NOT_IN_CATALOG, build_prompt, build_response, truncate

EXPECTED = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
You are a product catalog assistant. Answer the question with the description of the product it asks about, using only the catalog entries given. If the product is not among them, say so.

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


def test_training_text_is_inference_prompt_plus_response():
    ctx = [("A", "x " * 700)]
    prompt = build_prompt("What is 'A'?", ctx)
    train_text = prompt + build_response("x " * 700)
    assert train_text.startswith(prompt) and train_text[len(prompt):] == truncate("x " * 700)
    # the answer is cut exactly like the context, so the model can copy it
    assert build_response("x " * 700) in prompt
    assert build_response(None) == NOT_IN_CATALOG


def test_truncate_at_word_boundary():
    assert truncate("short", 10) == "short"
    assert truncate("alpha beta gamma", 12) == "alpha beta"
    assert len(truncate("a" * 50, 10)) == 10
