"""Shopper questions of each kind on the real records (../shared), English and Portuguese, through the
Answerer as `ask` runs it (auto mode: no model for these): the short answer, the quote and both spans, yes/no
verdicts, two products side by side, "doesn't say"."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def qa(real_index):
    from rag.answer import Answerer

    return Answerer(real_index[0], reload_seconds=0)


def _checked(a):
    src = a.sources[a.cited - 1].content
    assert src[a.quote_span[0]:a.quote_span[1]] == a.quote
    if a.short_span:
        assert src[a.short_span[0]:a.short_span[1]] == a.short
    return src


@pytest.mark.parametrize("question, kind, short", [
    ("when did the illustrated man first come out", "when", "1951"),
    ("quantos fotógrafos participaram do A Day in the Life of China?", "count", "Ninety photographers"),
    ("what age is Mog's Kittens for?", "age", None),
    ("Para que idade é Mog's Kittens?", "age", None),
    ("who wrote ordinary person's guide to empire?", "author", "author Roy"),
    ("where was jill barklem born", "setting", None),
])
def test_detail_questions_lead_with_their_span(qa, question, kind, short):
    a = qa.ask(question)
    assert a.origin == "quote" and a.kind == kind
    _checked(a)
    if short:
        assert a.short == short and a.text.startswith(short)
    assert len(a.text.split()) <= 50


def test_where_answer_holds_the_place(qa):
    a = qa.ask("where was jill barklem born")
    assert "Epping" in a.quote


@pytest.mark.parametrize("question, verdict, lead", [
    ("is rare air michael on michael any good? do reviewers recommend it", "no", "No. The description says"),
    ("a Element Encyclopedia of Witchcraft tem bibliografia?", "yes", "Sim. A descrição diz"),
    ("would the neon pink tutu fit an adult?", None, "The description says"),
])
def test_yes_no_leads_with_the_evidence_and_a_verdict_only_when_settled(qa, question, verdict, lead):
    a = qa.ask(question)
    assert a.verdict == verdict and a.text.startswith(lead)
    _checked(a)


@pytest.mark.parametrize("question, frame", [
    ("a day in the life of israel vs a day in the life of ireland, which used more photographers?",
     "The two products, side by side"),
    ("Qual saiu primeiro, Taken at the Flood ou Evil Under the Sun?", "Os dois produtos, lado a lado"),
])
def test_two_products_answered_side_by_side_with_both_sources(qa, question, frame):
    a = qa.ask(question)
    assert a.origin == "compare" and a.text.startswith(frame)
    assert len(a.compared) == 2 and len({s.uid for s in a.compared}) == 2
    cited = {s.uid for s in a.sources}
    assert all(s.uid in cited for s in a.compared)


def test_photographers_compare_quotes_a_fact_from_each(qa):
    a = qa.ask("a day in the life of israel vs a day in the life of ireland, which used more photographers?")
    quotes = " | ".join(s.quote for s in a.compared)
    assert "50 of the world" in quotes and "more than 75" in quotes


@pytest.mark.parametrize("question, says", [
    ("what fabric is the neon pink tutu made of?", "doesn't say what it is made of"),
    ("quanto pesa o A Day in the Life of Italy?", "não diz quanto pesa"),
])
def test_unanswerable_says_the_description_does_not_say(qa, question, says):
    a = qa.ask(question)
    assert a.origin == "not_stated" and says in a.text
