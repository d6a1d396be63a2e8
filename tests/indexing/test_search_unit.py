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


def candidates(use=("dense", "bm25", "dense_passage", "bm25_passage", "fuzzy"), cov_p=0.8):
    """One question's candidates: titles 1 and 2 (1 the best by both title retrievers and by cosine), passages
    of 3 and 4 (4 the best by BM25), 5 found by the trigrams alone; the passages cover `cov_p` of the words."""
    from indexing.search import Candidates

    ranks = {"dense": [1, 2], "bm25": [1, 2], "dense_passage": [3], "bm25_passage": [4, 3], "fuzzy": [5]}
    scores = {"dense": {1: 0.9, 2: 0.5}, "bm25": {1: 5.0, 2: 3.0}, "dense_passage": {3: 0.6},
              "bm25_passage": {4: 4.0, 3: 2.0}, "fuzzy": {5: 1.0}}
    keep = lambda d: {n: v for n, v in d.items() if n in use}  # noqa: E731
    return Candidates("q", "q", use, keep(ranks), keep(scores), {}, {1: 0.5, 2: 0.2}, {4: cov_p, 3: 0.3}, {}, {})


def test_the_rule_routes_by_word_coverage_then_by_cosine():
    from indexing.search import route

    assert route(candidates()) == ([4, 3, 1, 2], True)  # the passages hold more of the words
    assert route(candidates(cov_p=0.5)) == ([1, 2, 4, 3], False)  # a tie: the titles' cosine is higher
    assert route(candidates(use=("dense", "bm25"))) == ([1, 2], False)  # titles mode
    assert route(candidates(use=("dense_passage", "bm25_passage"))) == ([4, 3], True)  # descriptions mode
    assert route(candidates(use=("fuzzy",))) == ([5], False)


def test_the_fusions_the_rule_was_measured_against_live_in_the_benchmark():
    from benchmarks.retrieval_choices import route_cosine, rrf_all
    from indexing import search

    assert not hasattr(search, "RRF_WEIGHTS") and not hasattr(search.Index, "_rank")
    assert route_cosine(candidates()) == [1, 2, 4, 3]  # by cosine alone: titles, though the passages hold more words
    assert rrf_all()(candidates()) == [1, 2, 3, 4]  # 2:1:1:1, the trigrams left out
    assert rrf_all({"dense": 0, "bm25": 0})(candidates()) == [3, 4, 1, 2]
    assert rrf_all()(candidates(use=("dense", "bm25"))) == [1, 2]  # one side only: the rule


@pytest.mark.parametrize("question, title, expected", [
    ("eGmini", "Gemini", 1.0),  # an adjacent swap is one edit
    ("Thirts", "Thirst", 1.0),
    ("Flxu", "Flux", 1.0),
    ("mog's kitetns", "Mog's Kittens (Picture Puffin)", 1.0),
    ("cat", "Car Mat", 0.0),  # three letters: no typo forgiven
    ("Zorvex Quantum Hover Skates", "Quantum Physics for Beginners", 0.25),  # only the word it shares
    ("Gmeinix", "Gemini", 0.0),  # two edits in seven letters: not the same word
])
def test_fuzzy_coverage_forgives_a_typo_per_word(question, title, expected):
    from indexing.lexical import fuzzy_coverage

    assert fuzzy_coverage(question, title) == expected


@pytest.mark.parametrize("question, title, expected", [
    ("Explain Cirucs to me.", "Circus", True),  # typo'd, unstemmed: a stemmer cuts "cirucs" to "ciruc"
    ("Pode me dar detalhes de Geimni?", "Gemini", True),
    ("Unless da Carol Shields vale a leitura?", "Unless: A Novel", True),  # the main title, before the colon
    ("Heard good things about The Only. Tell me more.", "The Only Game", False),  # a word of it missing
    ("a book about it", "It", False),  # no word of 4 letters: too easily in any question
    ("Tell me about Mog in the Dark", "Mog in the Dark (Mog)", True),
])
def test_title_in_question_reads_the_main_title_a_typo_forgiven(question, title, expected):
    from indexing.lexical import title_in_question

    assert title_in_question(question, title) is expected
