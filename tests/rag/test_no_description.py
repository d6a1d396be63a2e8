"""Products the catalog holds without a description: answered as such (origin "no_description"), or with a
draft the model writes from the title (origin "drafted", labelled), never as catalog text. The real
Answerer around a fake index and a scripted model."""

import pandas as pd
import pytest

from indexing.search import Hit
from rag.answer import Answer, clean_draft, finish, trim_loops
from rag.prompt import build_draft_prompt, build_draft_response
from tests.conftest import ScriptedAnswerer

GLUE = "What is 'Wood Glue, 16 oz'?"
DRAFT = "Strong wood glue for furniture repairs and woodworking. Dries clear in 30 minutes."


@pytest.fixture
def docs():
    return pd.DataFrame({"uid": ["g1", "t1"], "title": ["Wood Glue, 16 oz", "Girls Ballet Tutu Neon Pink"],
                         "content": ["", "A pink tutu for girls, 30 cm long."]})


def test_a_title_only_product_is_in_the_catalog_without_a_description(docs):
    qa = ScriptedAnswerer(docs, {}, mode="auto")  # no output scripted: any model call fails the test
    a = qa.ask(GLUE)
    assert (a.origin, a.abstained, a.cited, a.cited_source.uid) == ("no_description", False, 1, "g1")
    assert a.text == "'Wood Glue, 16 oz' is in the catalog, but the catalog holds no description of it."
    d = a.to_dict()
    assert (d["origin"], d["cited_uid"], d["draft"], d["drafted_by"]) == ("no_description", "g1", None, None)
    assert qa.generated == []
    pt = qa.ask("Qual é a descrição deste produto: wood glue, 16 oz?")
    assert pt.origin == "no_description" and pt.text.startswith("'Wood Glue, 16 oz' está no catálogo")


def test_a_detail_question_says_there_is_nothing_to_answer_from(docs):
    qa = ScriptedAnswerer(docs, {}, mode="auto", draft_missing=True)  # never a draft for a detail question
    a = qa.ask("Does the Wood Glue, 16 oz work on metal?")
    assert (a.origin, a.mode, a.cited_source.uid) == ("no_description", "quote", "g1")
    assert a.text.endswith("has no description: the catalog holds nothing to answer this from.")
    assert qa.generated == []


def test_a_draft_is_streamed_after_its_label_and_never_passes_for_catalog_text(docs):
    qa = ScriptedAnswerer(docs, {GLUE: DRAFT + "\n\n### Instruction: more"}, mode="auto")
    pieces = list(qa.stream(GLUE, draft=True))
    *text, a = pieces
    assert text[0].startswith("The catalog has no description of 'Wood Glue, 16 oz'. A draft written by the model")
    assert len(text) > 3 and "".join(text) == a.text  # the lead at once, then the draft as it is written
    assert (a.origin, a.mode, a.draft, a.cited_source.uid) == ("drafted", "draft", DRAFT, "g1")
    assert a.text == text[0] + DRAFT and a.quote is None and a.quote_span is None
    assert a.drafted_by == {"model": "ScriptedLLM", "base_hash": None, "adapter": None, "adapter_hash": None}
    assert qa.generated == [("draft", 1)]
    assert qa.ask(GLUE).origin == "no_description"  # drafts only when asked for
    # a described product is answered from the catalog whatever the switch says
    tutu = qa.ask("What is 'Girls Ballet Tutu Neon Pink'?", draft=True, mode="quote")
    assert tutu.origin != "drafted" and tutu.draft is None


def test_unusable_drafts_fall_back_to_no_description(docs):
    loop = "Wood glue. Wood glue. Wood glue."
    qa = ScriptedAnswerer(docs, {GLUE: "\n\n", "Describe the product Wood Glue, 16 oz.": loop}, mode="auto",
                          draft_missing=True)
    a = qa.ask(GLUE)
    assert (a.origin, a.fallback_reason, a.draft) == ("no_description", "draft empty", None)
    b = qa.ask("Describe the product Wood Glue, 16 oz.")
    assert (b.origin, b.draft) == ("drafted", "Wood glue.")  # cut where it starts repeating itself
    assert trim_loops("Good glue. Dries fast. Good glue. Good glue.") == "Good glue. Dries fast."
    assert clean_draft("glue glue glue glue glue glue glue glue glue") == ("", "draft looping")


def test_batches_answer_title_only_products_and_batch_the_drafts(docs):
    qs = [GLUE, "What is 'Zorvex Levitating Sock Robot'?", "Qual é a descrição deste produto: Wood Glue, 16 oz?",
          "What is 'Girls Ballet Tutu Neon Pink'?"]
    outputs = {qs[0]: DRAFT, qs[2]: "Cola de madeira.", qs[3]: "[1]"}
    qa = ScriptedAnswerer(docs, outputs, mode="auto")
    answers = qa.ask_many(qs)
    assert [a.origin for a in answers] == ["no_description", "refused", "no_description", "catalog"]
    qa = ScriptedAnswerer(docs, outputs, mode="auto", draft_missing=True)
    answers = qa.ask_many(qs)
    assert [a.origin for a in answers] == ["drafted", "refused", "drafted", "catalog"]
    assert answers[2].text.startswith("O catálogo não tem descrição de 'Wood Glue, 16 oz'")
    assert answers[2].draft == "Cola de madeira."
    assert sorted(qa.generated) == [("draft", 2), ("verbatim", 1)]  # both drafts in one generate


def test_a_cited_entry_without_a_description_is_never_shown_as_an_answer():
    srcs = [Hit(uid="t1", title="Tutu", content="A pink tutu.", score=0.1, dense_score=0.9),
            Hit(uid="g1", title="Wood Glue", content="", score=0.1, dense_score=0.8)]
    a = finish(Answer("What is 'Wood Glue'?", "", sources=srcs), "[2]", mode="verbatim")
    assert (a.origin, a.cited, a.text) == ("no_description", 2, "'Wood Glue' is in the catalog, but the catalog "
                                                                 "holds no description of it.")
    a = finish(Answer("Who made 'Wood Glue'?", "", sources=srcs), "[2] Wood Glue\nThe description does not say.",
               mode="read")
    assert (a.origin, a.cited) == ("no_description", 2)


def test_draft_prompt_and_response():
    p = build_draft_prompt("Descreva o produto Wood Glue.", "Wood Glue")
    assert "Question: Descreva o produto Wood Glue." in p and p.endswith("Title: Wood Glue\n\n### Response:\n")
    long = "First sentence here. " * 40
    r = build_draft_response(long.strip())
    assert len(r) <= 600 and r.endswith("here.")
    assert build_draft_response("Short.") == "Short."


def test_ask_and_batch_commands_answer_a_title_only_product(demo_index, tmp_path, capsys):
    """`productqa ask` / `productqa batch` on the demo index (real MiniLM, the base SmolLM2): the README
    tour's Wood Glue is in the catalog without a description; with --draft-missing, the model's draft."""
    import json

    from ui.cli import main

    assert main(["ask", GLUE, "--index", str(demo_index), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert (a["origin"], a["cited_uid"], a["abstained"]) == ("no_description", "B00UX401AU", False)
    assert a["answer"] == "'Wood Glue, 16 oz' is in the catalog, but the catalog holds no description of it."
    questions = tmp_path / "q.txt"
    questions.write_text(f"{GLUE}\nDoes Wood Glue, 16 oz work on metal?\nWhat is 'Zorvex Levitating Sock Robot'?\n")
    out = tmp_path / "answers.jsonl"
    assert main(["batch", "--index", str(demo_index), "--questions", str(questions), "--out", str(out),
                 "--draft-missing", "--max-new-tokens", "48", "--quiet"]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    # greedy decoding: the base model's draft of the Wood Glue is usable (measured), so it is drafted
    assert [rows[i]["origin"] for i in (1, 2, 3)] == ["drafted", "no_description", "refused"]
    glue = rows[1]
    assert glue["answer"].startswith("The catalog has no description of 'Wood Glue, 16 oz'. A draft written")
    assert glue["answer"].endswith(glue["draft"]) and glue["drafted_by"]["model"] == "SmolLM2-135M-Instruct"
    assert glue["cited_uid"] == "B00UX401AU" and glue["mode"] == "draft"
    # the source is the catalog's entry, matched by title: no passage, and never the draft
    assert glue["sources"][0]["uid"] == "B00UX401AU" and glue["sources"][0]["match"] == "title"
    assert "passage" not in glue["sources"][0] and glue["draft"] not in json.dumps(glue["sources"])
    assert rows[2]["kind"] is None or rows[2]["draft"] is None
    assert "nothing to answer this from" in rows[2]["answer"] and rows[2]["draft"] is None
