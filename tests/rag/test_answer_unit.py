"""Answering logic without models: input hygiene, stop handling, abstention, batch files and resume."""

import json

import pytest

from indexing.search import Hit
from rag.answer import Answer, Answerer, clean_generation, finish
from rag.batch import run_batch
from rag.prompt import NOT_IN_CATALOG, cut_answer
from tests.conftest import FakeIndex, ScriptedAnswerer, ScriptedLLM


def test_generation_stops_at_next_section_or_entry():
    assert clean_generation("  A tutu.\n\n### Instruction:\nmore") == "A tutu."
    assert clean_generation("") == ""
    overrun = "[1] Tutu\nA pink tutu. Jack Higgins\n\n[2] To Ride Hell's Chasm\nIn this splendid fantasy"
    assert clean_generation(overrun) == "[1] Tutu\nA pink tutu. Jack Higgins"
    # generation stopped on the stop string "\n[" (or max tokens) in the middle of the next label
    assert clean_generation("[1] Tutu\nA pink tutu.\n\n[") == "[1] Tutu\nA pink tutu."
    assert clean_generation("[1] Tutu\nA pink tutu.\n[1") == "[1] Tutu\nA pink tutu."
    assert clean_generation("[1] Tutu\nLearn C#") == "[1] Tutu\nLearn C#"  # a real ending stays
    assert (clean_generation("[1] Box [2] of 3\nA set of boxes [2] and [3].")
            == "[1] Box [2] of 3\nA set of boxes [2] and [3].")


def test_streaming_holds_back_what_may_be_an_end_marker():
    assert cut_answer("[1] Tutu\nA pink", final=False) == ("[1] Tutu\nA pink", False)
    assert cut_answer("[1] Tutu\nA pink tutu.\n", final=False) == ("[1] Tutu\nA pink tutu.", False)
    assert cut_answer("[1] Tutu\nA pink tutu.\n\n[2", final=False) == ("[1] Tutu\nA pink tutu.", False)
    assert cut_answer("[1] Tutu\nA pink tutu ##", final=False) == ("[1] Tutu\nA pink tutu ", False)
    assert cut_answer("[1] Tutu\nA pink tutu.\n\n[2] Other", final=False) == ("[1] Tutu\nA pink tutu.", True)


def hit(score, uid="u", title="t", content="c"):
    return Hit(uid=uid, title=title, content=content, score=0.1, dense_score=score, retrievers=("dense",))


SOURCES = [hit(0.9, "u1", "Girls Ballet Tutu", "A pink tutu for girls, 30 cm long."),
           hit(0.8, "u2", "To Ride Hell's Chasm", "In this splendid fantasy, a princess vanishes.")]


def test_finish_takes_the_citation_off():
    a = finish(Answer("q", "", sources=SOURCES), "[2] To Ride Hell's Chasm\nA princess vanishes.\n### Instruction: x")
    assert ((a.text, a.cited, a.abstained, a.origin, a.cited_source.uid)
            == ("A princess vanishes.", 2, False, "generated", "u2"))
    assert a.to_dict()["cited_uid"] == "u2" and a.to_dict()["origin"] == "generated"
    a = finish(Answer("q", "", sources=SOURCES[:1]), "[3] t\nA pink tutu.")  # cites a source it was not given
    assert a.cited is None and a.text == "A pink tutu."
    a = finish(Answer("q", "", sources=SOURCES), NOT_IN_CATALOG)
    assert a.abstained and a.cited is None and a.origin == "refused"


def test_an_overrun_into_the_next_entry_is_cut():
    a = finish(Answer("q", "", sources=SOURCES),
               "[1] Girls Ballet Tutu\nA pink tutu for girls, 30 cm long.\n\n"
               "[2] To Ride Hell's Chasm\nIn this splendid")
    assert a.text == "A pink tutu for girls, 30 cm long." and a.cited == 1 and a.origin == "generated"


@pytest.mark.parametrize("generated, reason", [
    ("[2] To Ride Hell's Chasm\n", "citation only"),
    ("[2] To Ride Hell's Chasm", "citation only"),  # cut by max_new_tokens inside the title line
    ("[2] To Ride Hell's Chasm\n\n[1] Girls", "citation only"),
    ("", "empty"),
    ("[", "empty"),
    ("[2] To Ride Hell's Chasm\nBrilliant, detailed, and detailed. The details, and detailed, and detailed, "
     "and detailed, and detailed.", "looping"),
])
def test_unusable_answers_fall_back_to_the_cited_catalog_description(generated, reason):
    a = finish(Answer("q", "", sources=SOURCES), generated)
    cited = 1 if reason == "empty" else 2  # nothing cited: the best retrieved product
    assert (a.origin, a.fallback_reason, a.cited) == ("fallback", reason, cited)
    assert a.text == SOURCES[cited - 1].content and not a.abstained
    assert a.to_dict()["origin"] == "fallback" and a.to_dict()["fallback_reason"] == reason


def test_verbatim_answers_are_the_picked_entrys_catalog_text():
    a = finish(Answer("q", "", sources=SOURCES), "[2]", mode="verbatim")
    assert (a.text, a.cited, a.origin) == (SOURCES[1].content, 2, "catalog")
    a = finish(Answer("q", "", sources=SOURCES), "This product is not", mode="verbatim")
    assert a.abstained and a.text == NOT_IN_CATALOG


def _read(generated: str, question="What age is Mog's Kittens for?") -> Answer:
    srcs = [hit(0.9, "m", "Mog's Kittens", "Mog has kittens. For ages 0-3. Illustrated by Judith Kerr."),
            hit(0.5, "w", "Wolf Hall", "A novel of 650 pages. Winner of the Booker Prize.")]
    return finish(Answer(question=question, text="", sources=srcs), generated, "read")


def test_read_mode_shows_only_quotes_that_are_the_cited_entrys_text():
    a = _read("[1] Mog's Kittens\nfor AGES 0-3.")  # case and spacing aside, the cited entry's words
    assert (a.origin, a.cited, a.kind, a.quote, a.quote_span) == ("quote", 1, "age", "For ages 0-3.", (17, 30))
    assert a.text == 'ages 0-3: "For ages 0-3."'
    a = _read("[1] Mog's Kittens\nFor ages 3-5.")  # not in the source: the rule reader's sentence instead
    assert (a.origin, a.fallback_reason, a.quote) == ("fallback", "quote not in the cited entry", "For ages 0-3.")
    a = _read("[1] Mog's Kittens\nWinner of the Booker Prize.", "Did Mog's Kittens win an award?")
    assert (a.origin, a.fallback_reason) == ("fallback", "quote from another entry")  # never another entry's text
    assert "Booker" not in a.text and a.cited == 1
    a = _read("For ages 0-3.")
    assert (a.origin, a.fallback_reason, a.cited) == ("fallback", "no citation", 1)


def test_read_mode_not_stated_keeps_the_product_and_the_language():
    a = _read("[1] Mog's Kittens\nThe description does not say.", "How much does Mog's Kittens weigh?")
    assert (a.origin, a.cited, a.abstained, a.kind, a.quote) == ("not_stated", 1, False, "weight", None)
    assert a.text == "The catalog's description of *Mog's Kittens* doesn't say how much it weighs."
    a = _read("[1] Mog's Kittens\nThe description does not say.", "Quanto pesa Mog's Kittens?")
    assert a.text == "A descrição de *Mog's Kittens* no catálogo não diz quanto pesa."
    a = _read("This product is not in the catalog.")
    assert a.abstained and a.origin == "refused"


def test_abstain_threshold():
    from indexing.search import abstains

    assert abstains([], 0.46)  # no sources: never an answer
    assert abstains([hit(0.30), hit(0.45)], 0.46)
    assert not abstains([hit(0.30), hit(0.47)], 0.46)


def test_answer_mode_follows_the_question():
    from rag.answer import answer_mode

    assert answer_mode("auto", "What is 'Mog's Kittens'?") == "verbatim"
    assert answer_mode("auto", "Qual é a descrição deste produto: mog's kittens?") == "verbatim"
    assert answer_mode("auto", "the picture book where a tiger comes to tea and eats everything") == "verbatim"
    assert answer_mode("auto", "how long is it? (about 'Girls Ballet Tutu')") == "quote"
    assert answer_mode("auto", "e quantas páginas tem?") == "quote"
    assert answer_mode("auto", "what age is Mog's Kittens for?") == "quote"
    # a detail word inside the title asks for no detail
    assert answer_mode("auto", "What is The Age of Innocence?", "The Age of Innocence") == "verbatim"
    assert answer_mode("auto", "What is 'The Age of Innocence'?") == "verbatim"
    assert answer_mode("auto", "Is it any good as a gift?") == "quote"
    assert answer_mode("generate", "What is 'Mog's Kittens'?") == "generate"




@pytest.fixture
def docs():
    import pandas as pd

    return pd.DataFrame({"uid": ["u1", "u2"], "title": ["Girls Ballet Tutu", "Hell's Chasm"],
                         "content": ["A pink tutu for girls, 30 cm long.",
                                     "In this splendid fantasy, a princess vanishes."]})


def test_stream_never_shows_the_next_entry(docs):
    q = "What is 'Girls Ballet Tutu'?"
    qa = ScriptedAnswerer(docs, {q: "[1] Girls Ballet Tutu\nA pink tutu, 30 cm.\n\n"
                                    "[2] Hell's Chasm\nIn this splendid fantasy"})
    *pieces, final = list(qa.stream(q))
    assert "".join(pieces) == "[1] Girls Ballet Tutu\nA pink tutu, 30 cm."
    assert (final.text, final.cited, final.origin) == ("A pink tutu, 30 cm.", 1, "generated")


def test_stream_citation_only_falls_back_and_verbatim_answers_in_one_piece(docs):
    q = "What is 'Girls Ballet Tutu'?"
    final = ScriptedAnswerer(docs, {q: "[1] Girls Ballet Tutu\n"}).ask(q)
    assert (final.text, final.origin, final.fallback_reason) == (docs.content[0], "fallback", "citation only")
    qa = ScriptedAnswerer(docs, {q: "[1]"}, mode="auto")
    *pieces, final = list(qa.stream(q))
    assert pieces == [docs.content[0]] and final.origin == "catalog" and qa.generated == [("verbatim", 1)]


def test_batch_writes_refusals_before_generating_and_resumes(docs, tmp_path):
    out = tmp_path / "answers.jsonl"
    items = [{"id": i, "question": f"What is '{docs.title[i % 2]}'? ({i})"} for i in range(6)]
    items += [{"id": 6 + i, "question": f"What is 'Zorvex Quantum Sock {i}'?"} for i in range(3)]  # not in the catalog
    outputs = {it["question"]: f"[1] {docs.title[it['id'] % 2]}\n{docs.content[it['id'] % 2]}" for it in items}
    seen = []

    def on_generate():  # what is on disk when the model is first asked for anything
        seen.append([json.loads(x) for x in out.read_text().splitlines()] if out.exists() else [])
        if len(seen) == 2:
            raise KeyboardInterrupt  # a crash during the second generate

    qa = ScriptedAnswerer(docs, outputs, on_generate=on_generate)
    with pytest.raises(KeyboardInterrupt):
        run_batch(qa, items, out, batch_size=4, progress=False)
    assert sorted(r["id"] for r in seen[0]) == [6, 7, 8] and all(r["abstained"] for r in seen[0])
    first = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(first) == 3 + 4  # the refusals, then each answer of the finished batch
    with open(out, "a") as f:
        f.write('{"id": 5, "question": "q5", "ans')  # a torn line from a crash mid-write
    qa = ScriptedAnswerer(docs, outputs)
    assert run_batch(qa, items, out, batch_size=4, progress=False) == {"answered": 2, "already_done": 7, "total": 9}
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in rows) == list(range(9))
    assert set(rows[-1]) == {"id", "question", "answer", "abstained", "origin", "fallback_reason", "sources",
                             "cited_uid", "latency_ms", "kind", "quote", "quote_span", "mode", "picked_by",
                             "index_version", "draft", "drafted_by"}
    by_id = {r["id"]: r for r in rows}
    assert by_id[1]["answer"] == docs.content[1] and by_id[1]["cited_uid"] == "u2"
    assert by_id[7]["answer"] == NOT_IN_CATALOG and by_id[7]["origin"] == "refused"
    assert run_batch(qa, items, out, progress=False)["answered"] == 0


def test_loops_detects_a_stuck_generation():
    from rag.answer import loops

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


def test_batch_streamer_sends_each_row_its_own_text_never_half_a_character(smollm2_path):
    import torch
    from transformers import AutoTokenizer

    from rag.batching import Request, rows_streamer

    tok = AutoTokenizer.from_pretrained(str(smollm2_path))
    texts = ["Livro infantil: gatinhos 🐱 e ração.\nSegunda linha", "A pink tutu, 30 cm long"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    n = max(map(len, ids))
    rows = [x + [tok.eos_token_id] * (n + 1 - len(x)) for x in ids]  # a row that ended gets EOS, then padding
    reqs = [Request(p, ("k",), {}) for p in ("p1", "p2")]
    s = rows_streamer(tok, reqs)
    s.put(torch.tensor([[1, 2, 3], [4, 5, 6]]))  # the prompts: skipped
    for step in range(n + 1):
        s.put(torch.tensor([r[step] for r in rows]))
    s.end()
    for r, x in zip(reqs, ids):
        pieces = []
        while not r.pieces.empty():
            pieces.append(r.pieces.get())
        assert "".join(pieces) == tok.decode(x, skip_special_tokens=True)
        assert not any("\ufffd" in p for p in pieces)
        assert pieces[0] == tok.decode(x[:1])  # the first token is out before the first word ends


def test_concurrent_streams_share_generates_and_errors_reach_every_waiter():
    import threading
    import time

    from rag.batching import Batcher, drain

    calls, gate = [], threading.Event()

    def generate(prompts, streamer, **kw):
        calls.append(list(prompts))
        gate.wait(5)  # the first generate runs while the others arrive
        if "boom" in prompts:
            raise RuntimeError("boom")
        return [p.upper() for p in prompts]

    b = Batcher(generate, tok=None)
    out = {}
    threads = [threading.Thread(target=lambda p=p: out.__setitem__(p, drain(b.stream(p, ("k",), {}))))
               for p in ("a", "b", "c", "d")]
    threads[0].start()
    while not calls:
        pass
    for t in threads[1:]:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(5)
    assert out == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert calls[0] == ["a"] and sorted(calls[1]) == ["b", "c", "d"]  # the three waiting went together
    with pytest.raises(RuntimeError, match="boom"):
        drain(b.stream("boom", ("k",), {}))
    assert drain(b.stream("e", ("k",), {})) == "E"  # the worker goes on


def test_eval_counts_mixed_entries_bare_answers_and_right_products():
    from rag.evaluate import bare, mixes, right_product

    other = "In this splendid fantasy, a princess vanishes from the tower at midnight and nobody knows where."
    src = [hit(0.9, "u1", "Girls Ballet Tutu", "A pink tutu for girls with three layers of tulle, 30 cm long."),
           hit(0.8, "u2", "Hell's Chasm", other)]
    overrun = Answer("q", src[0].content + " " + other[:60], sources=src, cited=1)
    assert mixes(overrun, src[0].content)
    assert not mixes(Answer("q", src[0].content, sources=src, cited=1), src[0].content)
    wrong = Answer("q", other, sources=src, cited=2)  # the wrong product, whole: not a mix, a wrong pick
    assert not mixes(wrong, src[0].content) and not right_product(wrong, "u1", "Girls Ballet Tutu")
    assert right_product(Answer("q", src[0].content, sources=src, cited=1), "u1", "Girls Ballet Tutu")
    assert (bare("[1] Girls Ballet Tutu", ["Girls Ballet Tutu"]) and bare("  ", [])
            and bare("girls ballet tutu", ["Girls Ballet Tutu"]))
    assert not bare(src[0].content, ["Girls Ballet Tutu"])


class SureIndex(FakeIndex):
    """A FakeIndex whose retrieval is sure (or not) of every best hit (Index.sure)."""

    def __init__(self, docs, sure: bool):
        super().__init__(docs, threshold=0.05)
        self._sure, self.asked = sure, 0

    def sure(self, hits) -> bool:
        self.asked += 1
        return self._sure


def test_auto_mode_answers_from_the_catalog_when_retrieval_is_sure(docs):
    q, detail = "What is 'Girls Ballet Tutu'?", "how long is the Girls Ballet Tutu?"
    qa = ScriptedAnswerer(docs, {q: "[2]"}, mode="auto")
    qa.index = SureIndex(docs, sure=True)
    *pieces, final = list(qa.stream(q))
    assert qa.generated == [] and pieces == [docs.content[0]]  # no model call at all
    assert (final.origin, final.picked_by, final.cited, final.mode) == ("catalog", "retrieval", 1, "verbatim")
    assert final.to_dict()["picked_by"] == "retrieval"
    assert [a.picked_by for a in qa.ask_many([q, q])] == ["retrieval", "retrieval"] and qa.generated == []
    assert qa.ask(detail).origin in ("quote", "not_stated")  # detail questions: quote mode, as before
    # unsure: the model picks (here the second entry), as verbatim mode always does
    qa = ScriptedAnswerer(docs, {q: "[2]"}, mode="auto")
    qa.index = SureIndex(docs, sure=False)
    final = qa.ask(q)
    assert qa.generated == [("verbatim", 1)] and (final.picked_by, final.cited) == ("model", 2)
    # an explicit --answer-mode verbatim keeps asking the model, sure or not
    qa = ScriptedAnswerer(docs, {q: "[1]"}, mode="verbatim")
    qa.index = SureIndex(docs, sure=True)
    assert qa.ask(q).picked_by == "model" and qa.generated == [("verbatim", 1)] and qa.index.asked == 0


def test_answer_config_is_checked_and_keywords_override_it(docs):
    from indexing.errors import UserError
    from rag.answer import AnswerConfig

    llm = ScriptedLLM({})
    cfg = AnswerConfig(index=FakeIndex(docs), mode="auto")
    assert Answerer(cfg, llm=llm).mode == "auto"
    assert Answerer(cfg, llm=llm, mode="generate").mode == "generate" and cfg.mode == "auto"  # cfg untouched
    with pytest.raises(UserError, match="answer mode 'bogus'"):
        Answerer(cfg, llm=llm, mode="bogus")
    with pytest.raises(TypeError):  # a misspelt setting is an error, not ignored
        Answerer(cfg, llm=llm, modee="generate")
