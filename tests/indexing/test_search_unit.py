"""Search logic without models: question focusing, rank fusion, BM25 wrapper."""

import pytest

from indexing.search import focus, rrf


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What is 'Girls Ballet Tutu Neon Pink'?", "Girls Ballet Tutu Neon Pink"),
        ("Qual é a descrição deste produto: mog's kittens?", "mog's kittens"),
        ("Qual é a descrição deste produto: Mog's Kittens", "Mog's Kittens"),
        ("Tell me about Wood Glue, 16 oz.", "Wood Glue, 16 oz"),
        ("describe the product   cast iron skillet", "cast iron skillet"),
        ('O que é "Tea Light Candles"?', "Tea Light Candles"),
        ("Do you sell tutus for adults?", "Do you sell tutus for adults?"),  # no known framing: as is
    ],
)
def test_focus_extracts_the_title(question, expected):
    assert focus(question) == expected


def test_rrf_fuses_ranks_and_breaks_ties_by_cosine():
    # row 7 is first for dense, row 3 first for BM25; row 5 second in both -> 5 wins overall
    fused = rrf({"dense": [7, 5, 1], "bm25": [3, 5]}, k=60)
    assert [r for r, _ in fused][:1] == [5]
    # equal sums are ordered by the tiebreak score (cosine)
    fused = rrf({"dense": [7], "bm25": [3]}, tiebreak={7: 0.9, 3: 0.2})
    assert [r for r, _ in fused] == [7, 3]
    fused = rrf({"dense": [7], "bm25": [3]}, tiebreak={7: 0.1, 3: 0.2})
    assert [r for r, _ in fused] == [3, 7]


def test_rrf_weights():
    fused = rrf({"dense": [1, 2], "bm25": [2, 1]}, weights={"dense": 2.0, "bm25": 1.0})
    assert [r for r, _ in fused] == [1, 2]
    assert fused[0][1] == pytest.approx(2 / 61 + 1 / 62)


def test_bm25_ignores_question_words_and_pads():
    from indexing.lexical import bm25_search, build_bm25, tokenize

    bm = build_bm25(["Girls Ballet Tutu Neon Pink", "Mog's Kittens", "Wood Glue 16 oz"])
    S, I = bm25_search(bm, tokenize(["Qual é a descrição deste produto: mog's kittens?", "what is it?"]), k=5)
    assert I.shape == (2, 5)
    assert I[0, 0] == 1 and S[0, 0] > 0 and (I[0, 1:] == -1).all()
    assert (I[1] == -1).all()  # only question/stop words: no hit rather than a random one


def test_coverage_is_the_share_of_question_words_a_row_holds():
    from indexing.lexical import build_bm25, coverage, tokenize

    bm = build_bm25(["red apple pie", "green apple", "blue sky"])
    C = coverage(bm, tokenize(["What is a red apple?", "apple zebra", "the"]), [[0, 1, -1], [0, 1, 2], [0, 1, 2]])
    assert C.tolist() == [[1.0, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]  # "zebra" is asked, found nowhere


def test_a_blurb_several_products_share_is_found_in_each():
    from indexing.questions import holds_span

    bio = "Doris Lessing was born in Persia. She has also published two volumes of her autobiography."
    assert holds_span("About the author: " + bio, "has also published two volumes of autobiography")  # "her" dropped
    assert not holds_span(bio, "published three volumes of her autobiography")
    assert not holds_span("autobiography of her two volumes published also has", "has also published two volumes")


def test_evidence_adds_word_coverage_to_the_cosine():
    from indexing.search import Hit

    assert Hit("u", "t", "c", 0.1, dense_score=0.5, coverage=0.75).evidence == 1.25
    assert Hit("u", "t", "c", 0.1, coverage=0.5).evidence == 0.5  # found by words only
