"""rag/detail.py (the model-free detail reader) and quote mode in rag/answer.py."""

from __future__ import annotations

import json

import pytest

from rag.detail import check_quote, detail_kind, detail_text, is_portuguese, not_stated_text, read_detail, sentences
from tests.conftest import FakeIndex

MOG = ("Judith Kerr's best-selling adventures of that endearing cat Mog have entertained children for more than "
       "30 years. These sturdy little board books are just the thing to delight the very young. Ages 0-3. "
       "Written by Judith Kerr, illustrated by the author. 24 pages.")


@pytest.mark.parametrize("question, kind", [
    ("what age is Mog's Kittens for?", "age"),
    ("Who illustrated Mog's Kittens?", "illustrator"),
    ("who wrote it", "author"),
    ("how many pages does it have?", "pages"),
    ("How much does it weigh?", "weight"),
    ("Quantas páginas tem?", "pages"),
    ("Quem escreveu Mog's Kittens?", "author"),
    ("Para que idade é?", "age"),
    ("Em que cidade se passa?", "setting"),  # "cidade" holds "idade": no age
    ("What grade level is it?", "age"),
    ("Is there an upgrade kit?", None),
    ("Tell me something nice", None),
])
def test_detail_kind_from_the_question(question, kind):
    assert detail_kind(question) == kind


def test_detail_kind_ignores_the_title():
    assert detail_kind("What is The Age of Innocence?") == "age"
    assert detail_kind("What is The Age of Innocence?", "The Age of Innocence") is None


def test_sentences_do_not_split_initials_or_titles():
    text = "In his history, James R. Gaines sets two figures on a course. Mr. Bach composes. Done"
    assert [text[s:e] for s, e in sentences(text)] == [
        "In his history, James R. Gaines sets two figures on a course.", "Mr. Bach composes.", "Done"]


@pytest.mark.parametrize("question, short, quote", [
    ("what age is Mog's Kittens for?", "Ages 0-3", "Ages 0-3."),
    ("How many pages is Mog's Kittens?", "24 pages", "24 pages."),
    ("Who illustrated Mog's Kittens?", None, "Written by Judith Kerr, illustrated by the author."),
    ("Quantas páginas tem Mog's Kittens?", "24 pages", "24 pages."),
])
def test_read_detail_quotes_the_sentence_that_states_it(question, short, quote):
    d = read_detail(question, "Mog's Kittens", MOG)
    assert d.stated and d.quote == quote and MOG[d.span[0]:d.span[1]] == quote
    if short:
        assert d.short == short and detail_text(d) == f'{short}: "{quote}"'


def test_read_detail_not_stated_when_the_description_lacks_the_kind():
    d = read_detail("How much does Mog's Kittens weigh?", "Mog's Kittens", MOG)
    assert d.kind == "weight" and not d.stated and d.quote == "" and d.span is None
    assert not read_detail("Who narrates it?", "Mog's Kittens", MOG).stated
    assert not read_detail("what age is it for?", "Empty", "").stated


# an invented blurb: the inspector is named in three sentences, the village in one
HARBOUR = ("Inspector Marlowe fans will enjoy this 1952 case, read with relish by an old hand. "
           "The inspector travels to the sleepy fishing village of Gull's Reach to look into a drowning. "
           "Marlowe suspects the harbourmaster. Marlowe is not so sure by the end. "
           "During the worst gale in the history of Cornwall, the lifeboat is launched.")


def test_read_detail_weights_question_words_by_how_few_sentences_hold_them():
    d = read_detail("What village does Marlowe go to in Salt Harbour?", "Salt Harbour", HARBOUR)
    assert d.kind == "setting" and "village of Gull's Reach" in d.quote  # not the first "Marlowe" sentence
    d = read_detail("Which gale is Salt Harbour set during?", "Salt Harbour", HARBOUR)
    assert d.quote.startswith("During the worst gale")  # a capitalised "During" is setting evidence too


def test_read_detail_main_character_is_the_name_the_blurb_keeps_using():
    d = read_detail("Who is the hero of Salt Harbour?", "Salt Harbour", HARBOUR)
    assert d.kind == "character" and d.quote.startswith("Inspector Marlowe fans")  # where Marlowe is first named
    d = read_detail("Who is the hero of Marlowe's Return?", "Marlowe's Return", HARBOUR)
    assert not d.quote.startswith("Inspector")  # a title's name is no hero: back to the evidence rule


def test_not_stated_text_in_the_question_language():
    assert is_portuguese("Quanto pesa o livro?") and not is_portuguese("How much does the book weigh?")
    assert not_stated_text("Mog's Kittens", "weight", False) == \
        "The catalog's description of *Mog's Kittens* doesn't say how much it weighs."
    assert not_stated_text("Mog's Kittens", "weight", True) == \
        "A descrição de *Mog's Kittens* no catálogo não diz quanto pesa."


def test_check_quote_accepts_only_the_sources_own_words():
    assert check_quote("ages  0-3.", MOG) == (MOG.index("Ages 0-3."), MOG.index("Ages 0-3.") + len("Ages 0-3."))
    assert check_quote("Ages 4-8.", MOG) is None  # not in the source
    other = "A pink tutu for girls, 30 cm long."
    assert check_quote("30 cm long", other) is not None and check_quote("30 cm long", MOG) is None  # another entry's
    assert check_quote("", MOG) is None



@pytest.fixture
def qa():
    import pandas as pd

    from rag.answer import Answerer

    docs = pd.DataFrame({"uid": ["u1", "u2"], "title": ["Mog's Kittens", "Girls Ballet Tutu"],
                         "content": [MOG, "A pink tutu for girls <b>30 cm</b> long."]})
    class NoModel:  # the engines' interface (complete, stream), failing the test if asked
        def complete(self, *args, **kw):
            raise AssertionError("quote mode must not generate")

        stream = complete

    return Answerer(FakeIndex(docs, threshold=0.05), llm=NoModel(), mode="auto")


def test_auto_answers_detail_questions_with_a_checked_quote(qa):
    a = qa.ask("What age is 'Mog's Kittens' for?")
    assert (a.origin, a.kind, a.quote, a.cited) == ("quote", "age", "Ages 0-3.", 1)
    assert MOG[a.quote_span[0]:a.quote_span[1]] == a.quote and a.text.startswith("Ages 0-3")
    d = a.to_dict()
    assert d["quote"] == "Ages 0-3." and d["quote_span"] == list(a.quote_span) and d["origin"] == "quote"
    json.dumps(d)


def test_auto_says_not_stated_and_keeps_the_source(qa):
    a = qa.ask("How much does 'Mog's Kittens' weigh?")
    assert a.origin == "not_stated" and not a.abstained and a.cited_source.uid == "u1"
    assert a.text == "The catalog's description of *Mog's Kittens* doesn't say how much it weighs."
    a = qa.ask("Quanto pesa 'Mog's Kittens'?")
    assert a.origin == "not_stated" and "não diz quanto pesa" in a.text


def test_batch_of_detail_questions_needs_no_model(qa):
    got = dict(qa.iter_answers(["How many pages is 'Mog's Kittens'?", "How much does 'Mog's Kittens' weigh?"]))
    assert got[0].origin == "quote" and got[0].quote == "24 pages." and got[1].origin == "not_stated"


@pytest.mark.slow
def test_eval_answers_detail_reports_the_sentence_baseline(demo_catalog, demo_index, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    title = "Piano Lullabies for Babies, Vol. 1"
    fixture = tmp_path / "detail.json"
    fixture.write_text(json.dumps([
        {"title": title, "question": f"How long is '{title}'?", "lang": "en", "kind": "length",
         "answers": ["62 minutes"]},
        {"title": title, "question": f"How much does '{title}' weigh?", "lang": "en", "kind": "weight",
         "answers": []}]))
    base = [sys.executable, "-m", "ui.cli", "eval", "answers", "--index", str(demo_index), "--catalog",
            str(demo_catalog), "--out", str(tmp_path / "out"), "--quiet"]
    r = subprocess.run(base + ["--detail", str(fixture)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "detail.json").read_text())
    m = report["systems"]["retrieval+sentence"]["en"]
    assert (m["concise_correct"], m["not_stated"], m["false_not_stated"], m["refused"]) == (1.0, 1.0, 0.0, 0.0)
    assert report["systems"]["retrieval"]["en"]["not_stated"] == 0.0  # a whole description never says "doesn't say"
    assert "retrieval+sentence" in (tmp_path / "out" / "detail.md").read_text()
    fixture.write_text('[{"question": "no title"}]')
    r = subprocess.run(base + ["--detail", str(fixture)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "every item needs a title" in r.stderr and "Traceback" not in r.stderr
    fixture.write_text('[{"title": "x", "question": "how long is x?", "answers": "62 minutes"}]')  # not a list
    r = subprocess.run(base + ["--detail", str(fixture)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "items [0] do not" in r.stderr and "Traceback" not in r.stderr
    fixture.write_text('[{"title": "Not In The Catalog", "question": "how long is it?", "answers": []}]')
    r = subprocess.run(base + ["--detail", str(fixture)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and "warning: 1 title(s) of" in r.stderr and "Not In The Catalog" in r.stderr


DESCRIPTION = ("Mog has four kittens. Illustrated by Judith Kerr. For ages 0-3. A board book of 24 pages. "
               "Unabridged on 2 cassettes, read by Geraldine McEwan.")


@pytest.mark.parametrize("kind,evidence", [("illustrator", "Illustrated by Judith Kerr."), ("age", "For ages 0-3."),
                                           ("pages", "A board book of 24 pages."),
                                           ("narrator", "Unabridged on 2 cassettes, read by Geraldine McEwan.")])
def test_every_phrasing_of_a_kind_finds_its_evidence(kind, evidence):
    """Training questions (rag.detail.QUESTIONS), English and Portuguese, in both title forms: each is
    read as its kind, and the rule reader quotes the sentence that states it."""
    import random

    from rag.detail import QUESTIONS, detail_kind, read_detail

    title = "Mog's Kittens"
    for q in [t.format(t=f) for t in QUESTIONS[kind][0] + QUESTIONS[kind][1] for f in (title, title.lower())]:
        assert detail_kind(q, title) == kind, q
        assert read_detail(q, title, DESCRIPTION).quote == evidence, q
    from rag.detail import detail_example

    rng = random.Random(7)
    got = {detail_example(title, DESCRIPTION, rng, p_not_stated=0.3) for _ in range(200)} - {None}
    assert {q for q in got if q[2] is None} and all(q[2] in DESCRIPTION for q in got if q[2])
    assert all(k in ("weight", "price", "colour", "warranty", "battery", "isbn", "material", "size", "year", "award")
               for _, k, quote in got if quote is None)


def test_all_phrasings_are_read_as_their_kind():
    from rag.detail import QUESTIONS, detail_kind

    for kind, (en, pt) in QUESTIONS.items():
        for t in en + pt:
            assert detail_kind(t.format(t="Wolf Hall"), "Wolf Hall") == kind, t


def test_kind_metrics_score_yes_no_compare_and_unanswerable_apart():
    from rag.evaluate import kind_metrics, question_group, verdict

    assert [verdict(t) for t in ("Yes: it is unabridged.", "Não, ...", "The description says: 'x'", "sim")] == [
        "yes", "no", None, "yes"]
    assert [question_group(it) for it in ({"kind": "age", "answers": ["0-3"]}, {"kind": "who", "answers": ["x"]},
                                          {"kind": "price", "answers": []}, {"kind": "yesno", "answers": []},
                                          {"kind": "compare", "answers": []})] == [
        "detail", "other", "unanswerable", "yesno", "compare"]

    def row(group, **kw):
        return {"group": group, "lang": "en", "contains": False, "words": 10, "not_stated": False,
                "verdict": None, "verdict_gold": None, "compare_right": False, "latency_ms": 5.0, **kw}

    rows = [row("detail", contains=True), row("detail", contains=True, words=80), row("detail", not_stated=True),
            row("yesno", verdict="yes", verdict_gold="yes"), row("yesno", verdict="no", verdict_gold="yes"),
            row("yesno", verdict_gold="no"), row("yesno", verdict="yes"),  # a verdict the description can't back
            row("compare", compare_right=True), row("compare"), row("unanswerable", not_stated=True)]
    m = kind_metrics(rows)
    assert m["detail en"]["concise_correct"] == 1 / 3 and m["detail en"]["false_not_stated"] == 1 / 3
    assert (m["yesno en"]["said"], m["yesno en"]["wrong"], m["yesno en"]["precision"]) == (0.75, 0.5, 1 / 3)
    assert m["compare all"]["right"] == 0.5 and m["unanswerable en"]["not_stated"] == 1.0
    assert "pt" not in " ".join(m)  # no Portuguese rows: no Portuguese groups

    from rag.evaluate import answered_right, format_by_kind

    assert [answered_right(r) for r in rows] == [True, False, False, False, False, False, False, True, False, True]
    assert answered_right(row("yesno", contains=True)) and not answered_right(row("yesno", contains=True, words=90))
    by = {s: [dict(r, part="dev", kind=r["group"]) for r in rows] for s in ("auto", "fine-tuned + RAG (read)")}
    by["fine-tuned + RAG (read)"][1]["words"] = 30  # the model's answer to the second question is concise
    table = format_by_kind({"answers": by})
    assert "| dev | detail | detail | 3 | 1/3 | 2/3 |" in table
    assert "| dev | **all** | | 10 | **3/10** | **4/10** |" in table


@pytest.mark.parametrize("question, expected", [
    ("Is it unabridged?", True), ("does Mog's Kittens come with a CD?", True), ("Can a toddler use it?", True),
    ("O Mog's Kittens tem fotos?", True), ("É para bebês?", True),
    ("What is 'Mog's Kittens'?", False), ("O que é Mog's Kittens?", False), ("Quem escreveu Mog's Kittens?", False),
    ("how many pages does it have?", False)])
def test_is_yes_no(question, expected):
    from rag.detail import is_yes_no

    assert is_yes_no(question) is expected


@pytest.mark.parametrize("question, quote, verdict", [
    ("Is it unabridged?", "Unabridged on 2 cassettes.", "yes"),
    ("does the cookbook have any dessert recipes?", "It omits dessert recipes entirely.", "no"),
    ("do reviewers recommend it?", "Not recommended.", "no"),
    ("Is it abridged?", "Unabridged on 2 cassettes.", None),  # another word: no verdict, the evidence speaks
    ("Does it have photographs of the house?", "With 16 pages of photographs.", None),  # "house" not said
    ("Isn't it unabridged?", "Unabridged on 2 cassettes.", None),  # a negated question: never a bare yes
])
def test_yes_no_says_a_verdict_only_when_the_sentence_settles_it(question, quote, verdict):
    from rag.detail import yes_no

    assert yes_no(question, "Mog's Kittens", quote) == verdict


def test_yes_no_answers_lead_with_the_evidence(qa):
    a = qa.ask("Is Mog's Kittens a board book for the very young?")
    assert (a.origin, a.verdict) == ("quote", "yes") and a.to_dict()["verdict"] == "yes"
    assert a.text == 'Yes. The description says: "These sturdy little board books are just the thing to delight ' \
                     'the very young."'
    a = qa.ask("Does Mog's Kittens have a sound button?")  # the evidence, and no verdict it cannot back
    assert a.verdict is None and a.text.startswith('The description says: "'), a.text
    a = qa.ask("O Mog's Kittens é um livro cartonado para os muito pequenos?")  # English evidence: no verdict
    assert a.verdict is None and a.text.startswith('A descrição diz: "'), a.text


def test_the_product_the_question_names_word_for_word_is_read():
    from indexing.search import Hit
    from rag.answer import named_rank

    hits = [Hit(uid=f"v{i}", title=f"Piano Lullabies for Babies, Vol. {i}", content="", score=0.0) for i in (2, 1, 3)]
    assert named_rank("Is Piano Lullabies for Babies, Vol. 1 suitable for a newborn?", hits) == 2
    assert named_rank("is piano lullabies for babies vol 3 calm?", hits) == 3
    assert named_rank("Are the piano lullabies calm?", hits) == 1  # no whole title: the best hit
    assert named_rank("Is Piano Lullabies for Babies, Vol. 10 calm?", hits) == 1  # "Vol. 1" is not "Vol. 10"


@pytest.mark.parametrize("question, short", [
    ("how many photographers worked on A Day in the Life of China?", "Ninety photographers"),
    ("When were the photos for A Day in the Life of China taken?", "April 15, 1989"),
    ("em que ano saiu A Day in the Life of China?", "1989"),  # "year" reads it: the year alone
])
def test_short_answers_lead_with_the_span(question, short):
    title = "A Day in the Life of China"
    content = ("A portrait of one country. Ninety photographers from around the world took pictures on April 15, "
               "1989. The result is a stunning book.")
    d = read_detail(question, title, content)
    assert d.stated and d.short == short and short in d.quote and content[d.span[0]:d.span[1]] == d.quote


def test_the_short_answer_and_its_span_travel_in_the_json(qa):
    d = qa.ask("What age is 'Mog's Kittens' for?").to_dict()
    s, e = d["short_span"]
    assert d["short"] == "Ages 0-3" == MOG[s:e] and d["quote"] == "Ages 0-3."


def test_a_named_product_without_a_description_says_so():
    from indexing.search import Hit
    from rag.answer import Answer, answer_detail

    hits = [Hit(uid="g2", title="Wood Glue, 32 oz", content="Strong glue for wood, 32 oz bottle.", score=0.0),
            Hit(uid="g1", title="Wood Glue, 16 oz", content="", score=0.0)]
    a = answer_detail(Answer("does Wood Glue, 16 oz work on metal?", "", hits))
    assert (a.origin, a.cited, a.cited_source.uid) == ("no_description", 2, "g1")
    assert "'Wood Glue, 16 oz' is in the catalog, but its entry has no description" in a.text


@pytest.mark.parametrize("question, content, short", [
    ("Who narrates it?", "A gripping tale. Read by Jim Dale, it runs eight hours.", "Read by Jim Dale"),
    ("who did the pictures?", "A bear arrives in London. With line drawings by Peggy Fortnum and maps.",
     "drawings by Peggy Fortnum"),
    ("Where is it set?", "A memoir of building a house. She bought land by the North Platte River in Wyoming and "
     "built.", "in Wyoming"),
    ("What pen name did the author use?", "A thriller. Eminent British author Reginald Hill, writing as Patrick "
     "Ruell, tells a story.", "author Reginald Hill"),
    ("Quem narra?", "A gripping tale. Narrated by Jim Dale.", "Narrated by Jim Dale"),
])
def test_short_span_leads_for_who_and_where(question, content, short):
    d = read_detail(question, "Some Book", content)
    assert d.stated and d.short == short
    assert d.short in d.quote and content[d.span[0]:d.span[1]] == d.quote


def test_a_long_sentence_is_quoted_around_its_evidence_word_for_word():
    from rag.detail import MAX_QUOTE_WORDS

    filler = " ".join(f"word{i}" for i in range(60))
    content = f"An opening line. This long sentence rambles on {filler} and is suitable for ages 4-8 of course."
    d = read_detail("what age is it for?", "Some Book", content)
    assert d.stated and d.short == "ages 4-8"
    assert len(d.quote.split()) <= MAX_QUOTE_WORDS and "ages 4-8" in d.quote
    assert content[d.span[0]:d.span[1]] == d.quote
    text = detail_text(d)
    assert text.startswith('ages 4-8: …"') and len(text.split()) <= 50
