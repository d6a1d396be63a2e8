"""Answering logic without models: input hygiene, stop handling, abstention, batch files and resume."""

import json

import pytest

from indexing.errors import UserError
from indexing.search import Hit
from rag.answer import MAX_QUESTION_CHARS, Answer, Answerer, clean_generation, sanitize_question
from rag.batch import GROUP, read_questions, run_batch


@pytest.mark.parametrize("q", ["", "   ", "\t\n", "\x00\x07"])
def test_empty_questions_are_refused_clearly(q):
    with pytest.raises(UserError, match="empty"):
        sanitize_question(q)


def test_control_characters_and_long_questions():
    assert sanitize_question("What\x07 is\x00 'Tutu'?") == ("What is 'Tutu'?", None)
    q, notice = sanitize_question("x" * 50_000)
    assert len(q) == MAX_QUESTION_CHARS and "truncated from 50,000" in notice


def test_generation_stops_at_next_section():
    assert clean_generation("  A tutu.\n\n### Instruction:\nmore") == "A tutu."
    assert clean_generation("") == ""


def test_finish_takes_the_citation_off():
    from rag.answer import Answer
    from rag.prompt import NOT_IN_CATALOG

    qa = Answerer.__new__(Answerer)
    a = qa._finish(Answer("q", "", sources=[hit(0.9), hit(0.8)]), "[2] t\nA pink tutu.\n### Instruction: x")
    assert (a.text, a.cited, a.abstained, a.cited_source.uid) == ("A pink tutu.", 2, False, "u")
    assert a.to_dict()["cited_uid"] == "u"
    a = qa._finish(Answer("q", "", sources=[hit(0.9)]), "[3] t\nA pink tutu.")  # cites a source it was not given
    assert a.cited is None and a.text == "A pink tutu."
    a = qa._finish(Answer("q", "", sources=[hit(0.9)]), NOT_IN_CATALOG)
    assert a.abstained and a.cited is None
    assert qa._finish(Answer("q", "", sources=[hit(0.9)]), "  ").text == NOT_IN_CATALOG


def hit(score):
    return Hit(uid="u", title="t", content="c", score=0.1, dense_score=score, retrievers=("dense",))


def test_abstain_threshold():
    qa = Answerer.__new__(Answerer)
    qa.threshold = 0.46
    assert qa.should_abstain([])  # no sources: never an answer
    assert qa.should_abstain([hit(0.30), hit(0.45)])
    assert not qa.should_abstain([hit(0.30), hit(0.47)])


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


class FakeQA:
    """Stands in for Answerer: echoes, and can be told to crash after some batches."""

    def __init__(self, crash_after=None):
        self.calls, self.crash_after = 0, crash_after

    def ask_many(self, questions, k=3, max_new_tokens=None, batch_size=None):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt
        self.calls += 1
        return [Answer(question=q, text=f"answer to {q}", sources=[hit(0.9)], latency_ms=5.0) for q in questions]


def test_batch_resume_after_interrupt(tmp_path):
    items = [{"id": i, "question": f"q{i}"} for i in range(10)]
    out = tmp_path / "answers.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_batch(FakeQA(crash_after=1), items, out, batch_size=1, progress=False)
    first = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert first == list(range(GROUP))  # the first group of batches was flushed
    with open(out, "a") as f:
        f.write('{"id": 6, "question": "q6", "ans')  # a torn line from a crash mid-write
    r = run_batch(FakeQA(), items, out, batch_size=3, progress=False)
    assert r == {"answered": 10 - GROUP, "already_done": GROUP, "total": 10}
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in rows] == list(range(10))
    assert set(rows[0]) == {"id", "question", "answer", "abstained", "sources", "cited_uid", "latency_ms"}
    assert rows[0]["sources"] == [{"uid": "u", "title": "t", "score": 0.9}]
    assert run_batch(FakeQA(), items, out, progress=False)["answered"] == 0


def test_loops_detects_a_stuck_generation():
    from rag.evaluate import loops

    assert loops("the best tutu the best tutu the best tutu ever")
    assert not loops("A pink tutu for girls, with a satin waistband and three layers of tulle.")


def test_eval_answers_rejects_unknown_systems(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    r = subprocess.run([sys.executable, "-m", "ui.cli", "eval", "answers", "--index", str(tmp_path), "--catalog",
                        str(tmp_path), "--adapter", str(tmp_path), "--systems", "base,gpt5"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown gpt5" in r.stderr and "Traceback" not in r.stderr


def test_token_streamer_flushes_every_token_but_never_half_a_character(smollm2_path):
    import torch
    from transformers import AutoTokenizer

    from rag.answer import token_streamer

    tok = AutoTokenizer.from_pretrained(str(smollm2_path))
    text = "Livro infantil: gatinhos 🐱 e ração.\nSegunda linha"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    s = token_streamer(tok, timeout=5)
    s.put(torch.tensor([[1, 2, 3]]))  # the prompt: skipped
    for i in ids:
        s.put(torch.tensor([i]))
    s.end()
    pieces = [p for p in s if p]
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in p for p in pieces)
    assert pieces[0] == tok.decode(ids[:1])  # the first token is out before the first word ends
    assert len(pieces) > len(text.split())
