"""Two products in one question: the parse proposes splits, the catalog decides (rag/compare.py)."""

import pytest

from rag.compare import compare_splits, pick_pair


@pytest.mark.parametrize("question, split", [
    ("Which of these two is for younger children, Mog's Kittens or Mog in the Dark?",
     ("Mog's Kittens", "Mog in the Dark")),
    ("Mog's Kittens vs. Mog in the Dark", ("Mog's Kittens", "Mog in the Dark")),
    ("compare Mog's Kittens with Mog in the Dark", ("Mog's Kittens", "Mog in the Dark")),
    ("Wood Glue, 16 oz or Tape Measure 16 Ft, which is cheaper?", ("Wood Glue, 16 oz", "Tape Measure 16 Ft")),
    ("Qual é a diferença entre Mog's Kittens e Mog in the Dark?", ("Mog's Kittens", "Mog in the Dark")),
    ("Are Mog's Kittens and Mog in the Dark by the same author?", ("Are Mog's Kittens",
                                                                   "Mog in the Dark by the same author")),
    ("difference between Glamorous Powers and Ultimate Prizes? who is each one about",
     ("Glamorous Powers", "Ultimate Prizes")),
    # the second named by what differs: completed from the first
    ("Qual é melhor para um bebê, Piano Lullabies for Babies, Vol. 1 ou Vol. 2?",
     ("Piano Lullabies for Babies, Vol. 1", "Piano Lullabies for Babies, Vol. 2")),
])
def test_compare_splits_propose_the_two_names(question, split):
    assert split in compare_splits(question)


def test_every_separator_is_a_candidate_when_titles_hold_and():
    splits = compare_splits("What is the difference between Pride and Prejudice and Emma?")
    assert ("Pride and Prejudice", "Emma") in splits and ("Pride", "Prejudice and Emma") in splits


@pytest.mark.parametrize("question", ["What is 'War or Peace'?", "How long is it?",
                                      "Is Ferment It! Kimchi, Kraut and Kombucha any good?"])
def test_no_split_inside_a_quote_or_without_a_separator(question):
    assert compare_splits(question) == []


@pytest.fixture(scope="module")
def index(demo_index):
    from indexing.search import load_index

    return load_index(demo_index)


@pytest.mark.parametrize("question, titles", [
    ("Piano Lullabies for Babies, Vol. 1 or Vol. 2: which is better for a newborn?",
     {"Piano Lullabies for Babies, Vol. 1", "Piano Lullabies for Babies, Vol. 2"}),
    ("Compare the Pirate Captain Hat and Eye Patch Set with the Superhero Cape and Mask Set for Kids",
     {"Pirate Captain Hat and Eye Patch Set", "Superhero Cape and Mask Set for Kids, 4 Pack"}),
    ("Small Animal Hay Feeder for Rabbits and Guinea Pigs or Freeze-Dried Chicken Treats for Dogs and Cats?",
     {"Small Animal Hay Feeder for Rabbits and Guinea Pigs", "Freeze-Dried Chicken Treats for Dogs and Cats, 3 oz"}),
])
def test_the_catalog_picks_the_split_naming_two_products(index, question, titles):
    whole = index.retrieve(question, k=3)
    pair = pick_pair(question, compare_splits(question), index, whole)
    assert pair is not None and {h[0].title for h in pair.hits} == titles, pair


@pytest.mark.parametrize("question", [
    "Is Piano Lullabies for Babies, Vol. 1 good for toddlers or babies?",
    "Is the Pirate Captain Hat and Eye Patch Set for kids or adults?",
    "Does the Webcam 1080p with Privacy Cover and Microphone work on Mac or Windows?"])
def test_one_product_with_an_or_is_not_a_comparison(index, question):
    whole = index.retrieve(question, k=3)
    assert pick_pair(question, compare_splits(question), index, whole) is None


def test_a_comparison_is_answered_side_by_side_from_each_description(demo_index):
    from rag.answer import Answerer
    from tests.conftest import ScriptedLLM

    qa = Answerer(str(demo_index), llm=ScriptedLLM({}), reload_seconds=0)  # no model call may happen
    q = "Piano Lullabies for Babies, Vol. 1 or Vol. 2: which one is longer?"
    for a in (qa.ask(q), qa.ask_many([q])[0]):
        d = a.to_dict()
        assert d["origin"] == "compare" and not d["abstained"], d
        assert [s["title"] for s in d["sources"]] == [s["title"] for s in d["compared"]] == [
            "Piano Lullabies for Babies, Vol. 1", "Piano Lullabies for Babies, Vol. 2"]
        for side, src in zip(d["compared"], a.sources):
            assert side["uid"] == src.uid and side["title"] in a.text
            if side["origin"] == "quote":  # word for word its own description, never the other's
                s, e = side["quote_span"]
                assert src.content[s:e] == side["quote"] and side["quote"] in a.text
        assert any(side["origin"] == "quote" and side["kind"] == "length" for side in d["compared"])
    one = qa.ask("How long is Piano Lullabies for Babies, Vol. 1?")
    assert one.origin == "quote" and one.compared is None and len({h.uid for h in one.sources[:1]}) == 1


def test_a_chat_followup_compares_the_last_product_with_the_one_it_names(demo_index):
    from rag.answer import Answerer
    from tests.conftest import ScriptedLLM
    from ui.chat import ChatSession

    qa = Answerer(str(demo_index), llm=ScriptedLLM({}), reload_seconds=0)
    session = ChatSession(qa)
    *_, (messages, last) = session.respond("How long is Piano Lullabies for Babies, Vol. 1?", [])
    assert last.title == "Piano Lullabies for Babies, Vol. 1"
    *_, (messages, last) = session.respond("how does it compare with Piano Lullabies for Babies, Vol. 2?",
                                           messages, last=last)
    answer = messages[-3]["content"]  # the answer, then its two sources
    assert [m["metadata"]["title"].split(":")[0] for m in messages[-2:]] == ["source (cited) 1", "source (cited) 2"]
    assert "Vol. 1" in messages[-2]["metadata"]["title"] and "Vol. 2" in messages[-1]["metadata"]["title"]
    from ui.chat import escape_md

    assert answer.count("<mark>") == 2
    assert escape_md("20 gentle solo piano arrangements") in answer  # each one's own sentence
    assert escape_md("The follow-up to Vol. 1 with 18 more soft piano lullabies") in answer
    *_, (messages, _) = session.respond("is it unabridged?", messages, last=last)  # no product named: no pair
    assert "source (cited) 2" not in " ".join(m.get("metadata", {}).get("title", "") for m in messages[-3:])
