"""BM25 over product texts (bm25s), with the question words of both languages removed.

    bm = build_bm25(["Girls Ballet Tutu Neon Pink", ...]); S, I = bm25_search(bm, tokenize(["tutu pink"]), k=10)

English stemming (titles are English); English + Portuguese stop words and the words of the
project's question phrasings are dropped from queries and documents alike, so "Qual é a descrição
deste produto: mog's kittens?" is searched as "mog kitten".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Words of the question phrasings (indexing/questions.py) that carry no product information.
QUESTION_WORDS = {
    "what", "describe", "description", "tell", "give", "product", "products", "about", "please",
    "qual", "descrição", "descricao", "deste", "desse", "produto", "produtos", "fale", "descreva", "sobre", "que",
}


_GRAM_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


@lru_cache(maxsize=1)
def _stopwords() -> list[str]:
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_PORTUGUESE

    return sorted(set(STOPWORDS_EN) | set(STOPWORDS_PORTUGUESE) | QUESTION_WORDS)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], progress: bool = False) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords=_stopwords(), stemmer=_stemmer(), return_ids=False,
                          show_progress=progress)


def build_bm25(texts: list[str], progress: bool = False):
    """A bm25s index over `texts`: what `bm25s.BM25().index(bm25s.tokenize(texts, ...))` builds (the same tokens,
    scores and layout: tests/indexing/test_lexical.py), in array operations (`tokenize_corpus`, `index_arrays`);
    bm25s loops over documents and tokens in Python, ~5x slower at full size (docs/results.md). Its vocabulary is
    numbered in sorted order: bm25s numbers tokens in set-iteration order, which changes from process to process,
    and a resumed index build must write the same files as an uninterrupted one."""
    return index_arrays(*tokenize_corpus(texts, progress))


# bm25s.tokenize's default pattern, r"(?u)\b\w\w+\b", without its word boundaries: a greedy run of word
# characters starts and ends at one anyway, so both find the same tokens, 3.5x faster (tests/indexing/test_lexical.py)
TOKEN = re.compile(r"\w\w+")
CHUNK = 50_000  # texts per step of the corpus tokenizer (bounds its Python objects in memory)


def tokenize_corpus(texts: list[str], progress: bool = False) -> tuple["np.ndarray", "np.ndarray", list[str]]:
    """(token ids [all tokens] into `words`, tokens per text [n], words in sorted order): `tokenize` of every text
    (bm25s.tokenize: lower-cased, split by its pattern, stop words
    dropped, then stemmed), with the words numbered once per corpus instead of once per token."""
    from itertools import chain

    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    split, ids = TOKEN.findall, {}
    flat, lengths = [], np.zeros(len(texts), dtype=np.int64)
    for a in tqdm(range(0, len(texts), CHUNK), desc="bm25 words", unit="chunk", disable=not progress, leave=False):
        toks = [split(t.lower()) for t in texts[a: a + CHUNK]]
        lengths[a: a + len(toks)] = [len(t) for t in toks]
        codes, uniq = pd.factorize(np.fromiter(chain.from_iterable(toks), dtype=object, count=int(
            lengths[a: a + len(toks)].sum())))
        flat.append(np.fromiter((ids.setdefault(w, len(ids)) for w in uniq), np.int64, len(uniq))[codes])
    surface = list(ids)
    stop = set(_stopwords())
    kept = np.fromiter((w not in stop for w in surface), dtype=bool, count=len(surface))
    stems = _stemmer().stemWords([w for w, k in zip(surface, kept) if k])
    words = sorted(set(stems))
    number = {w: i for i, w in enumerate(words)}
    stem_of = np.full(len(surface), -1, dtype=np.int64)
    stem_of[kept] = [number[w] for w in stems]
    tok = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    keep = kept[tok]
    return stem_of[tok[keep]], np.bincount(doc[keep], minlength=len(texts)).astype(np.int64), words


def index_arrays(tok: "np.ndarray", lengths: "np.ndarray", words: list[str], k1: float = 1.5, b: float = 0.75):
    """A bm25s.BM25 (lucene, bm25s's defaults) over documents given as one array of token ids `tok` (into `words`)
    and their `lengths`: the scores, CSC layout (rows ascending in each column) and vocabulary that
    `bm25s.BM25().index(Tokenized(ids, vocab))` makes, computed per token array instead of per document."""
    import bm25s
    import numpy as np

    bm = bm25s.BM25(k1=k1, b=b)
    n, n_words = len(lengths), len(words)
    avg = float(lengths.mean()) if n else 0.0
    rows, cols, tfs = [], [], []
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for a in range(0, n, 200_000):  # (document, word) pairs with their counts, documents in order
        z = min(a + 200_000, n)
        doc = np.repeat(np.arange(a, z, dtype=np.int64), lengths[a:z])
        key, tf = _unique(doc * max(n_words, 1) + tok[starts[a]: starts[z]], counts=True)
        rows.append((key // max(n_words, 1)).astype(np.int32))
        cols.append((key % max(n_words, 1)).astype(np.int32))
        tfs.append(tf.astype(np.float32))
    rows, cols, tf = (np.concatenate(x) if x else np.zeros(0, t) for x, t in
                      ((rows, np.int32), (cols, np.int32), (tfs, np.float32)))
    df = np.bincount(cols, minlength=n_words)
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)  # bm25s keeps idf as float32
    tfc = tf / (k1 * ((1 - b) + b * lengths[rows] / avg) + tf) if len(tf) else tf
    order = np.argsort(cols, kind="stable")  # by word, then document: CSC
    bm.scores = {"data": (idf[cols] * tfc)[order].astype(np.float32), "indices": rows[order],
                 "indptr": np.concatenate([[0], np.cumsum(df)]).astype(np.int64), "num_docs": n}
    vocab = {w: i for i, w in enumerate(words)}
    if "" not in vocab:  # bm25s adds the empty token (scores nothing) to every vocabulary it builds
        vocab[""] = n_words
    bm.vocab_dict = vocab
    bm.unique_token_ids_set = set(vocab.values())
    bm.nonoccurrence_array = None  # lucene has none (what bm25s's index sets)
    return bm


def edits_allowed(word: str) -> int:
    """Typos forgiven in a word of this length: none up to 3 characters, one up to 8, then two (as Lucene's
    fuzzy AUTO, one step stricter: "Flxu" is "Flux", "cat" is not "car")."""
    return 0 if len(word) <= 3 else 1 if len(word) <= 8 else 2


def fuzzy_coverage(question: str, title: str) -> float:
    """Share of the question's distinct words (tokenized as searched) that are in the title or within
    `edits_allowed` edits (adjacent swaps count once) of one of its words. The "not in the catalog" evidence
    reads it (indexing/search.py `Hit.coverage`): "Tell me about eGmini." names *Gemini* though no word of it
    is in any title, and an invented product's words are rarely one typo away from a title's."""

    q, t = tokenize([question, title])
    words, found = set(q), set(t)
    if not words:
        return 0.0
    return sum(near(w, found) for w in words) / len(words)


def near(word: str, words: set) -> bool:
    """Is `word` in `words`, or `edits_allowed` edits (OSA: an adjacent swap counts once) from one of them?"""
    from rapidfuzz.distance import OSA

    k = edits_allowed(word)
    return word in words or any(OSA.distance(word, x, score_cutoff=k) <= k for x in words)


_MAIN_TITLE = re.compile(r"\s*(?::|\(|\[| - | -- ).*$", re.S)


def title_in_question(question: str, title: str) -> bool:
    """Does the question hold every word of the title's main part (before a colon, a parenthesis or a dash), each
    as written or `edits_allowed` edits away (adjacent swaps count once), one of them of 4 letters or more? "Explain
    Cirucs to me." holds *Circus*, "Unless da Carol Shields vale a leitura?" holds *Unless: A Novel*. Words are
    compared unstemmed: a stemmer cuts a typo'd word differently ("cirucs" -> "ciruc", "circus" stays)."""
    words = _GRAM_WORDS.findall(_MAIN_TITLE.sub("", title).casefold())
    asked = set(_GRAM_WORDS.findall(question.casefold()))
    return bool(words) and max(map(len, words)) >= 4 and all(near(w, asked) for w in words)


GRAM = 3  # characters per gram of the typo-tolerant title index


def char_grams(texts: list[str]) -> list[list[str]]:
    """Each text's distinct character trigrams, word by word ("#" marks a word's edges), casefolded:
    "Paddington's Suticase" and "Paddington's Suitcase" share most of theirs, where their words differ."""
    out = []
    for t in texts:
        grams = set()
        for w in _GRAM_WORDS.findall(t.casefold()):
            w = f"#{w}#"
            grams.update(w[i: i + GRAM] for i in range(max(1, len(w) - GRAM + 1)))
        out.append(sorted(grams))
    return out


def build_char_bm25(titles: list[str], progress: bool = False):
    """bm25s over the titles' character trigrams (`char_grams`): the typo-tolerant title retriever.
    Search it with `bm25_search(bm, char_grams(questions), k)`. The grams are cut in arrays (`gram_ids`): the
    same vocabulary and documents as `char_grams`, ~10x faster at full size."""
    return index_arrays(*gram_ids(titles, progress))


def _unique(a, counts: bool = False):
    """np.unique by sorting: numpy 2's hash-based unique took ~10x longer on these packed int64 keys."""
    import numpy as np

    a = np.sort(a)
    first = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a) else np.zeros(0, dtype=np.int64)
    return (a[first], np.diff(np.r_[first, len(a)])) if counts else a[first]


def gram_ids(titles: list[str], progress: bool = False) -> tuple["np.ndarray", "np.ndarray", list[str]]:
    """(gram ids [all grams] into `grams`, distinct grams per title [n], grams in sorted order): `char_grams` of
    every title, as arrays. Each title becomes "#word#word#" (casefolded words); a trigram is a word's when its
    middle character is not "#", and titles are joined by "\0", which no gram may hold."""
    import numpy as np
    from tqdm import tqdm

    parts = []
    for a in tqdm(range(0, len(titles), CHUNK), desc="title grams", unit="chunk", disable=not progress, leave=False):
        text = "\0".join("#" + "#".join(_GRAM_WORDS.findall(t.casefold())) + "#" for t in titles[a: a + CHUNK])
        c = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        doc = np.cumsum(c == 0)[: max(len(c) - 2, 0)] + a  # the title each gram starts in
        c0, c1, c2 = c[:-2], c[1:-1], c[2:]
        ok = (c0 != 0) & (c1 != 0) & (c2 != 0) & (c1 != ord("#"))
        parts.append((doc[ok], (c0[ok] << 42) | (c1[ok] << 21) | c2[ok]))  # 21 bits a code point
    doc = np.concatenate([d for d, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    code = np.concatenate([g for _, g in parts]) if parts else np.zeros(0, dtype=np.int64)
    vocab = _unique(code)  # numeric order of (c0, c1, c2) == the strings' order
    gid = np.searchsorted(vocab, code)
    pair = _unique(doc * max(len(vocab), 1) + gid)  # a title's distinct grams, titles in order
    doc, gid = pair // max(len(vocab), 1), pair % max(len(vocab), 1)
    lengths = np.bincount(doc, minlength=len(titles)).astype(np.int64)
    grams = ["".join(map(chr, (int(v) >> 42, (int(v) >> 21) & 0x1FFFFF, int(v) & 0x1FFFFF))) for v in vocab]
    return gid, lengths, grams


def bm25_search(bm, tokens: list[list[str]], k: int):
    """Top-k rows per tokenized query (`tokenize`) -> (S [nq, k] float32, I [nq, k] int64 with -1
    padding), faiss's order. Rows with score 0 (no query word in the product) are not hits.
    bm25s's numba backend scores and selects the top k in compiled code: 10-30x faster than its numpy
    one on a 100,000-product index here, with the same scores (benchmarks/results/full_scale.md)."""
    import numpy as np

    n_docs = int(bm.scores["num_docs"])
    kk = max(1, min(k, n_docs))
    I = np.full((len(tokens), k), -1, dtype=np.int64)
    S = np.zeros((len(tokens), k), dtype=np.float32)
    vocab = bm.vocab_dict
    ids = [[vocab[w] for w in q if w in vocab] for q in tokens]  # words no product has score nothing
    asked = [i for i, q in enumerate(ids) if q]
    if n_docs == 0 or not asked:
        return S, I
    bm.backend = "numba" if _numba() else "numpy"
    docs, scores = bm.retrieve([ids[i] for i in asked], k=kk, show_progress=False, n_threads=1)
    hit = scores > 0
    I[asked, :kk] = np.where(hit, docs, -1)
    S[asked, :kk] = np.where(hit, scores, 0)
    return S, I


@lru_cache(maxsize=1)
def _numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:  # bm25s falls back to numpy: slower, the same results
        return False
    return True


def coverage(bm, tokens: list[list[str]], rows, weighted: bool = False) -> "np.ndarray":
    """Share of each tokenized query's distinct words (stemmed, stop words dropped, as searched) that occur in each
    of its candidate rows: C [nq, n] for rows I [nq, n] (-1 rows get 0). A quoted or paraphrased
    description shares most of its words with its passage and few with an unrelated one; cosines of
    short texts do not separate those cases as well (benchmarks/retrieval_choices.py).
    `weighted`: each word counts by its BM25 idf in `bm` (a word no document has counts as the rarest), so
    "football referee" weighs more than "recommend" or "like"."""
    import numpy as np

    rows = np.asarray(rows)
    C = np.zeros(rows.shape, dtype=np.float32)
    indptr, indices, vocab = bm.scores["indptr"], bm.scores["indices"], bm.vocab_dict
    n_docs = int(bm.scores["num_docs"])
    top = float(np.log(1 + (n_docs + 0.5) / 0.5))  # idf of a word no document has
    for qi, words in enumerate(tokens):
        words = {w for w in words if w}
        if not words:
            continue
        found = np.zeros(rows.shape[1], dtype=np.float64)
        asked = rows[qi].astype(indices.dtype)
        total = 0.0
        for w in words:
            t = vocab.get(w)
            df = 0 if t is None else int(indptr[t + 1] - indptr[t])
            weight = (float(np.log(1 + (n_docs - df + 0.5) / (df + 0.5))) if df else top) if weighted else 1.0
            total += weight
            if df:  # a word no product has covers nothing, but still counts as asked
                post = indices[indptr[t]: indptr[t + 1]]  # the rows holding the word, ascending
                # binary search (a common word's list holds millions of rows at full size), in the list's own
                # dtype: given int64 rows, numpy converts the whole int32 list first, every call
                at = np.minimum(np.searchsorted(post, asked), df - 1)
                found += weight * (post[at] == asked)
        C[qi] = np.where(rows[qi] >= 0, found / total, 0.0)
    return C


_LANG_WORDS = re.compile(r"[^\W_]+", re.U)
# Portuguese words frequent in questions that bm25s' Portuguese stop words lack
_PT_QUESTION_WORDS = {"quanto", "quanta", "quantos", "quantas", "qual", "quais", "quem", "onde", "quando", "como",
                      "pesa", "custa", "tem", "livro", "escreveu", "idade"}


@lru_cache(maxsize=1)
def _language_words() -> tuple[frozenset, frozenset]:
    """(words only Portuguese uses, words only English uses), from bm25s' stop-word lists."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_PORTUGUESE

    pt, en = set(STOPWORDS_PORTUGUESE) - set(STOPWORDS_EN), set(STOPWORDS_EN) - set(STOPWORDS_PORTUGUESE)
    en -= {"s", "t"}  # "Mog's", "don't": the apostrophe's leftovers say nothing about the language
    return frozenset(pt | _PT_QUESTION_WORDS), frozenset(en)


def is_portuguese(text: str) -> bool:
    """More Portuguese-only words than English-only ones, or, at a tie, Portuguese accents."""
    pt, en = _language_words()
    words = [w.lower() for w in _LANG_WORDS.findall(text)]
    n_pt, n_en = sum(w in pt for w in words), sum(w in en for w in words)
    return n_pt > n_en or (n_pt == n_en and bool(re.search(r"[ãõçêâá]", text.lower())))
