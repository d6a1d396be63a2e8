"""indexing/questions.py: question phrasings (EN/PT), input hygiene, quoted spans. Used by every stage
(eval retrieval, calibration, training examples, exported pairs, answering), tested here once."""

import pytest

from indexing.errors import UserError
from indexing.questions import (
    MAX_QUESTION_CHARS,
    TEMPLATES_PT,
    make_question,
    make_questions,
    read_questions,
    sanitize_question,
)


def test_question_phrasings_are_pinned():
    # a product's phrasing is chosen by a hash of (uid, salt): the same on every machine and run
    assert make_question("T", "uid1") == "What can you tell me about 'T'?"
    assert (make_questions("T", "uid1", n=3, lang="en")
            == ["What is 'T'?", "Describe the product T.", "Tell me about T."])
    assert make_question("mog's kittens", "x", lang="pt") == "O que é 'mog's kittens'?"
    assert make_question("mog's kittens", "x", lang="pt") in [t.format(title="mog's kittens") for t in TEMPLATES_PT]


@pytest.mark.parametrize("q", ["", "   ", "\t\n", "\x00\x07"])
def test_empty_questions_are_refused_clearly(q):
    with pytest.raises(UserError, match="empty"):
        sanitize_question(q)


def test_control_characters_and_long_questions():
    assert sanitize_question("What\x07 is\x00 'Tutu'?") == ("What is 'Tutu'?", None)
    q, notice = sanitize_question("x" * 50_000)
    assert len(q) == MAX_QUESTION_CHARS == 2000 and "truncated from 50,000 to 2,000 characters" in notice


def test_read_questions_all_formats(tmp_path):
    j = tmp_path / "q.jsonl"
    j.write_text('{"id": "a", "question": "What is X?"}\nnot json\n{"id": "b"}\n{"id": "a", "question": "dup"}\n'
                 '{"id": 3, "question": "   "}\n{"id": 4, "question": "Qual é Y?"}\n')
    items, warns = read_questions(j)
    assert items == [{"id": "a", "question": "What is X?"}, {"id": 4, "question": "Qual é Y?"}]
    assert [w.split(":")[1] for w in warns] == ["2", "3", "4", "5"]
    c = tmp_path / "q.csv"
    c.write_text('id,question\n1,"What is ""X"", really?"\n2,\n3,Tell me about Y.\n')
    items, warns = read_questions(c)
    assert items == [{"id": "1", "question": 'What is "X", really?'}, {"id": "3", "question": "Tell me about Y."}]
    assert warns and ":3:" in warns[0]
    t = tmp_path / "q.txt"
    t.write_text("What is X?\n\nTell me about Y.\n")
    assert read_questions(t)[0] == [{"id": 1, "question": "What is X?"}, {"id": 3, "question": "Tell me about Y."}]
    with pytest.raises(UserError, match="no such file"):
        read_questions(tmp_path / "missing.jsonl")
