"""The chat turn logic (ui.chat.ChatSession) and its escaping, with a fake answerer: no models, no server."""

import pandas as pd
import pytest

from indexing.search import abstains
from rag.answer import Answer
from rag.prompt import NOT_IN_CATALOG
from tests.conftest import FakeIndex
from ui.chat import EMPTY_REPLY, ERROR_REPLY, ChatSession, escape_md, is_followup, parse_auth

XSS = ("<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> ![t](http://evil.test/i.png) "
       "[c](javascript:alert(1))")


class FakeQA:
    """Retrieval by shared words; the "answer" is the first hit's description, streamed word by word."""

    threshold = 0.1

    def __init__(self, docs, fail=False, origin="generated", picked_by=None):
        self.index = FakeIndex(docs)
        self.fail, self.origin, self.picked_by = fail, origin, picked_by
        self.calls = []

    @property
    def serving(self):
        return self.index

    def retrieve(self, questions, k, index=None):
        return (index or self.index).retrieve_many(questions, k=k)

    def should_abstain(self, hits, index=None):  # the real rule, on the fake index's word-overlap scores
        return abstains(hits, self.threshold, score=lambda h: h.dense_score or 0)

    def stream(self, question, k=3, max_new_tokens=320, temperature=0.0, use_retrieval=True, hits=None,
               use_adapter=True, index=None, draft=None, compare=None, pair=None, mode=None):
        self.calls.append({"question": question, "hits": hits, "use_adapter": use_adapter, "draft": draft,
                           "compare": compare})
        if self.fail:
            raise RuntimeError("boom")
        if self.should_abstain(hits):
            yield NOT_IN_CATALOG
            yield Answer(question, NOT_IN_CATALOG, hits, abstained=True, latency_ms=1.0)
            return
        for w in hits[0].content.split():
            yield w + " "
        yield Answer(question, hits[0].content, hits, latency_ms=5.0, first_token_ms=1.0, cited=1, origin=self.origin,
                     fallback_reason="citation only" if self.origin == "fallback" else None, picked_by=self.picked_by)


@pytest.fixture
def docs():
    return pd.DataFrame({"uid": ["u1", "u2", "u3"],
                         "title": ["Girls Ballet Tutu Neon Pink", "Mog's Kittens", "Evil Widget"],
                         "content": ["A pink tutu for girls, 30 cm long.", "A board book about kittens.", XSS]})


def run(session, *args, **kw):
    *steps, last = list(session.respond(*args, **kw))
    return steps, last


def test_escape_md_neutralises_html_and_markdown():
    out = escape_md(XSS)
    for bad in ("<script", "<img", "](", "![", "[c]", "http://"):
        assert bad not in out
    assert escape_md("Pink 4-inch tutu (30 cm), it's 1.5 kg.") == "Pink 4-inch tutu (30 cm), it's 1.5 kg."
    assert escape_md("a & b <i>") == "a &#38; b &#60;i&#62;"
    assert escape_md("- item\n2. second\nsee www.x.com") == "&#45; item\n&#50;. second\nsee www&#46;x.com"


def test_is_followup():
    assert is_followup("and how long is it?")
    assert is_followup("Quanto custa isso?")
    assert not is_followup("What is 'Mog's Kittens'?")
    assert not is_followup("Girls Ballet Tutu Neon Pink")


def test_answer_then_collapsed_escaped_sources(docs):
    qa = FakeQA(docs)
    steps, (messages, last) = run(ChatSession(qa), "What is 'Evil Widget'?", [])
    assert len(steps) > 2  # streamed: the answer grew over several updates
    user, answer, *sources = messages
    assert user == {"role": "user", "content": escape_md("What is 'Evil Widget'?")}
    assert "<script" not in answer["content"] and "window" in answer["content"]
    assert answer["content"].startswith(f"**{escape_md('Evil Widget')}** (1)")  # the cited product as heading
    assert sources[0]["metadata"]["status"] == "done"  # collapsed
    assert sources[0]["metadata"]["title"].startswith("source (cited) 1")
    assert "uid u3" in sources[0]["metadata"]["title"] and "cosine" in sources[0]["metadata"]["title"]
    assert all("<img" not in m["content"] and "<script" not in m["content"] for m in messages)
    assert last.uid == "u3"


@pytest.mark.parametrize("origin, picked_by, label", [
    ("generated", None, None), ("catalog", "model", "the catalog's description of the product the model picked"),
    ("catalog", "retrieval", "the catalog's description of the best match: search was sure, no model call"),
    ("fallback", None, "the model's answer was citation only")])
def test_where_the_answer_comes_from_is_labelled(docs, origin, picked_by, label):
    qa = FakeQA(docs, origin=origin, picked_by=picked_by)
    _, (messages, _) = run(ChatSession(qa), "What is 'Mog's Kittens'?", [])
    answer = messages[1]["content"]
    assert "A board book about kittens." in answer
    if label:
        assert escape_md(label) in answer
    else:
        assert "catalog" not in answer


def test_followup_is_about_the_last_product(docs):
    qa, chat = FakeQA(docs), ChatSession(FakeQA(docs))
    _, (messages, last) = run(chat, "What is 'Girls Ballet Tutu Neon Pink'?", [])
    _, (messages, last2) = run(chat, "and how long is it?", messages, last=last)
    call = chat.qa.calls[-1]
    assert [h.uid for h in call["hits"]] == ["u1"] and "Girls Ballet Tutu Neon Pink" in call["question"]
    assert last2.uid == "u1" and "30 cm" in messages[-2]["content"]
    # without a previous product the same question is not a follow-up: it abstains
    _, (messages, _) = run(ChatSession(qa), "and how long is it?", [])
    assert NOT_IN_CATALOG.split()[0] in messages[1]["content"]


def test_abstention_is_labelled(docs):
    _, (messages, last) = run(ChatSession(FakeQA(docs)), "What is 'Zorvex Sock Robot'?", [])
    assert messages[1]["content"].startswith("**") and last is None
    assert all(m["metadata"]["title"].startswith("closest") for m in messages[2:])


def test_retrieval_only_does_not_generate(docs):
    qa = FakeQA(docs)
    _, (messages, _) = run(ChatSession(qa), "What is 'Mog's Kittens'?", [], retrieval_only=True)
    assert not qa.calls and messages[1]["content"].startswith("Retrieval only")
    assert "uid u2" in messages[2]["metadata"]["title"]


def test_adapter_switch_is_passed_on(docs):
    qa = FakeQA(docs)
    run(ChatSession(qa), "What is 'Mog's Kittens'?", [], use_adapter=False)
    assert qa.calls[-1]["use_adapter"] is False


@pytest.mark.parametrize("message", ["", "   ", None, "\x00\x01"])
def test_empty_message_gets_a_polite_reply(docs, message):
    qa = FakeQA(docs)
    _, (messages, _) = run(ChatSession(qa), message, [])
    assert messages[-1]["content"] == escape_md(EMPTY_REPLY) and not qa.calls


def test_long_message_is_truncated_with_a_notice(docs):
    _, (messages, _) = run(ChatSession(FakeQA(docs)), "What is 'Mog's Kittens'? " + "x" * 50_000, [])
    assert "truncated" in messages[1]["content"] and len(messages[0]["content"]) < 30_000


def test_an_error_in_one_request_is_reported_not_raised(docs):
    _, (messages, last) = run(ChatSession(FakeQA(docs, fail=True)), "What is 'Mog's Kittens'?", [], last="keep")
    assert messages[-1]["content"] == escape_md(ERROR_REPLY) and last == "keep"


def test_parse_auth(monkeypatch):
    from indexing.errors import UserError

    monkeypatch.delenv("PRODUCTQA_AUTH", raising=False)
    assert parse_auth(None) is None
    assert parse_auth("alice:se:cret") == ("alice", "se:cret")
    monkeypatch.setenv("PRODUCTQA_AUTH", "bob:pw")
    assert parse_auth(None) == ("bob", "pw")
    with pytest.raises(UserError):
        parse_auth("nocolon")


def test_chat_command_refuses_a_taken_port_before_loading_models(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "index").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ui.cli", "chat", "--index", str(tmp_path / "index"), "--port",
                            str(port)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_title_only_products_in_the_chat_said_so_or_drafted_and_labelled():
    """The real Answerer (fake index, scripted model) behind a chat turn: a product without a description is
    said to have none; with the draft setting on, the draft is set apart and labelled as the model's."""
    from tests.conftest import ScriptedAnswerer
    from ui.chat import example_questions

    docs = pd.DataFrame({"uid": ["g1", "t1"], "title": ["Wood Glue, 16 oz", "Girls Ballet Tutu Neon Pink"],
                         "content": ["", "A pink tutu for girls, 30 cm long."]})
    q = "What is 'Wood Glue, 16 oz'?"
    qa = ScriptedAnswerer(docs, {q: "Glue for <b>wood</b>. Dries clear."}, mode="auto")
    session = ChatSession(qa)
    _, (messages, last) = run(session, q, [])
    answer = messages[1]["content"]
    assert "is in the catalog, but the catalog holds no description of it" in answer
    assert "_the product is in the catalog without a description_" in answer and last.uid == "g1"
    assert "uid g1" in messages[2]["metadata"]["title"] and messages[2]["content"] == "(no description)"
    steps, (messages, _) = run(session, q, [], draft=True)
    answer = messages[1]["content"]
    assert len(steps) > 3  # the lead at once, then the draft as it is written
    assert "The catalog has no description of 'Wood Glue, 16 oz'. A draft written by the model" in answer
    assert "\n\n> Glue for &#60;b&#62;wood&#60;/b&#62;. Dries clear." in answer  # set apart, escaped
    assert "drafted by ScriptedLLM (base model) from the title alone" in answer
    # a follow-up about it: a detail, never answered from the draft
    _, (messages, _) = run(session, "and does it work on metal?", messages, last=last)
    assert "holds nothing to answer this from" in messages[-2]["content"]
    assert example_questions(qa.index)[3] == "What is 'Wood Glue, 16 oz'?"


def test_a_comparison_shows_each_product_and_its_own_highlighted_sentence(docs):
    from rag.compare import Side
    from ui.chat import answer_markdown

    hits = FakeIndex(docs).retrieve_many(["Girls Ballet Tutu Neon Pink Mog's Kittens"], k=2)[0]
    tutu, mog = sorted(hits, key=lambda h: h.uid)
    sides = [Side(tutu.uid, tutu.title, "quote", '30 cm: "A pink tutu for girls, 30 cm long."', "size",
                  "A pink tutu for girls, 30 cm long.", (0, 34)),
             Side(mog.uid, mog.title, "not_stated", "The catalog's description of *Mog's Kittens* doesn't say ...")]
    a = Answer("tutu or mog's kittens, which is bigger?", "side by side", [tutu, mog], cited=1, origin="compare",
               compared=sides, latency_ms=3.0)
    md = answer_markdown(a)
    assert md.index(f"**{escape_md(tutu.title)}**") < md.index(f"**{escape_md(mog.title)}**")
    assert "<mark>" + escape_md("A pink tutu for girls, 30 cm long.") + "</mark>" in md
    assert "each answered from its own catalog description" in md and "side by side" not in md


def test_a_followup_is_never_read_as_a_comparison(docs):
    qa = FakeQA(docs)
    session = ChatSession(qa)
    _, (_, last) = run(session, "What is 'Mog's Kittens'?", [])
    run(session, "and is it for toddlers or babies?", [], last=last)
    assert [c["compare"] for c in qa.calls] == [True, False]
