"""The BM25 indexes built in arrays (indexing.lexical.build_bm25, build_char_bm25) equal what bm25s's own
tokenize + index build from the same texts: tokens, vocabulary, scores and layout."""

import json

import numpy as np
import pytest

from indexing import lexical
from tests.conftest import DEMO_RAW

EDGES = ["", "the of and", "!!!", "Ação Straße ß ﬁsh", "a b c", "Tutu tutu PINK pink 2024", "Mog's Kittens",
         "x" * 40, "co-op re-entry naïve café", "Ｆｕｌｌ ｗｉｄｔｈ", "emoji 😀 fish", "日本語 テキスト"]


def bm25s_reference(texts: list[str]):
    """bm25s's own path (the code before the array one): tokenize, number the vocabulary in sorted order, index."""
    import bm25s

    tok = bm25s.tokenize(texts, stopwords=lexical._stopwords(), stemmer=lexical._stemmer(), show_progress=False)
    words = sorted(tok.vocab)
    remap = np.empty(len(words), dtype=np.int64)
    remap[[tok.vocab[w] for w in words]] = np.arange(len(words))
    return reference_index([remap[np.asarray(d, dtype=np.int64)].tolist() for d in tok.ids], words)


def reference_index(ids: list[list[int]], words: list[str]):
    import bm25s

    bm = bm25s.BM25()
    bm.index(bm25s.tokenization.Tokenized(ids=ids, vocab={w: i for i, w in enumerate(words)}), show_progress=False)
    return bm


def same(a, b) -> None:
    assert a.vocab_dict == b.vocab_dict
    assert a.scores["num_docs"] == b.scores["num_docs"]
    for key in ("indptr", "indices"):
        assert np.array_equal(a.scores[key], b.scores[key]), key
    assert np.allclose(a.scores["data"], b.scores["data"], rtol=1e-6, atol=0)


def texts() -> list[str]:
    rows = []
    for line in DEMO_RAW.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the demo file holds malformed lines on purpose
            continue
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("title"), str)]
    return EDGES + [r["title"] for r in rows] + [r["content"] for r in rows if isinstance(r.get("content"), str)]


def test_bm25_in_arrays_equals_bm25s():
    t = texts()
    same(lexical.build_bm25(t), bm25s_reference(t))
    empty = lexical.build_bm25(EDGES[:3])  # nothing but stop words and empty texts (bm25s's own index fails on it)
    S, I = lexical.bm25_search(empty, lexical.tokenize(["the tutu"]), 3)
    assert empty.scores["num_docs"] == 3 and (I == -1).all()


def test_chunks_do_not_change_the_index(monkeypatch):
    t = texts()
    whole = lexical.build_bm25(t)
    monkeypatch.setattr(lexical, "CHUNK", 7)
    same(lexical.build_bm25(t), whole)
    same(lexical.build_char_bm25(t), reference_index(*gram_reference(t)))


def gram_reference(titles: list[str]):
    grams = lexical.char_grams(titles)
    vocab = sorted({g for gs in grams for g in gs})
    num = {g: i for i, g in enumerate(vocab)}
    return [[num[g] for g in gs] for gs in grams], vocab


def test_char_grams_in_arrays_equal_char_grams():
    t = texts()
    ids, vocab = gram_reference(t)
    gid, lengths, grams = lexical.gram_ids(t)
    assert grams == vocab
    starts = np.concatenate([[0], np.cumsum(lengths)])
    assert [sorted(gid[a:b].tolist()) for a, b in zip(starts[:-1], starts[1:])] == [sorted(x) for x in ids]
    same(lexical.build_char_bm25(t), reference_index(ids, vocab))


@pytest.mark.parametrize("query", ["tutu pink", "mog kittens", "fsih", "café"])
def test_searches_agree(query):
    t = texts()
    a, b = lexical.build_bm25(t), bm25s_reference(t)
    Sa, Ia = lexical.bm25_search(a, lexical.tokenize([query]), 5)
    Sb, Ib = lexical.bm25_search(b, lexical.tokenize([query]), 5)
    assert np.allclose(Sa, Sb) and (Ia == Ib).all()
