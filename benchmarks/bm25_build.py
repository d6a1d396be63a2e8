"""BM25 index building: ProductQA's array path (indexing.lexical) against bm25s's own fastest path, on the
synthetic full-size catalog's first N products (benchmarks/prepare.py makes it; benchmarks/full_scale.py prepares it).

    python benchmarks/bm25_build.py [--products 200000] [--catalog /tmp/productqa-bench/catalog]

bm25s's fastest path: `bm25s.tokenize` (stop words, PyStemmer, ids; its `Tokenizer` class gives a text without
a token the empty token, another index) and `BM25(backend="numba")`, whose CSC builder is compiled by numba (its
`index` still loops over documents in Python), the vocabulary renumbered in sorted order, as ProductQA needs (a
resumed build writes the same files). The array path:
`lexical.build_bm25` / `build_char_bm25` (the same tokens, scores and layout: tests/indexing/test_lexical.py).
Titles, the titles' character trigrams, and the description passages' texts (split by characters, as the
full-scale build). Both paths in one process, alone; the results are checked equal. Writes
benchmarks/results/bm25_build.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def bm25s_fastest(texts: list[str]):
    import bm25s
    import numpy as np

    from indexing import lexical

    tok = bm25s.tokenize(texts, stopwords=lexical._stopwords(), stemmer=lexical._stemmer(), show_progress=False)
    words = sorted(tok.vocab)
    remap = np.empty(len(words), dtype=np.int64)
    remap[[tok.vocab[w] for w in words]] = np.arange(len(words))
    return index_fastest([remap[np.asarray(d, dtype=np.int64)].tolist() for d in tok.ids], words)


def index_fastest(ids: list[list[int]], words: list[str]):
    import bm25s

    bm = bm25s.BM25(backend="numba")  # compiles its CSC builder
    bm.index(bm25s.tokenization.Tokenized(ids=ids, vocab={w: i for i, w in enumerate(words)}), show_progress=False)
    return bm


def grams_fastest(titles: list[str]):
    from indexing import lexical

    grams = lexical.char_grams(titles)
    vocab = sorted({g for gs in grams for g in gs})
    num = {g: i for i, g in enumerate(vocab)}
    return index_fastest([[num[g] for g in gs] for gs in grams], vocab)


def same(a, b) -> bool:
    import numpy as np

    layout = all(np.array_equal(a.scores[k], b.scores[k]) for k in ("indptr", "indices"))
    return a.vocab_dict == b.vocab_dict and layout and bool(np.allclose(a.scores["data"], b.scores["data"], rtol=1e-6))


def main() -> None:
    import pandas as pd
    from prepare import write_result

    from indexing import lexical
    from indexing.texts import Splitter, passage_texts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=200_000)
    ap.add_argument("--catalog", default="/tmp/productqa-bench/catalog")
    args = ap.parse_args()
    f = Path(args.catalog) / "catalog.parquet"
    if not f.exists():
        raise SystemExit(f"bm25_build.py: no catalog at {args.catalog} (python benchmarks/full_scale.py prepares one)")
    docs = pd.read_parquet(f, columns=["title", "content"]).iloc[: args.products].reset_index(drop=True)
    passages = Splitter(128, None, "chars").split_many(pd.Series(range(len(docs))), docs["content"], progress=False)
    texts = {"titles": docs["title"].tolist(), "descriptions (passages)":
             passage_texts(dict(zip(range(len(docs)), docs["content"])), passages)}
    index_fastest([[0]], ["warm"])  # numba compiles once per process: not in the first measurement
    rows = []
    for name, fast, ours, xs in (("titles", bm25s_fastest, lexical.build_bm25, texts["titles"]),
                                 ("title trigrams", grams_fastest, lexical.build_char_bm25, texts["titles"]),
                                 ("descriptions (passages)", bm25s_fastest, lexical.build_bm25,
                                  texts["descriptions (passages)"])):
        t0 = time.perf_counter()
        a = fast(xs)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = ours(xs)
        t_ours = time.perf_counter() - t0
        rows.append((name, len(xs), t_fast, t_ours, same(a, b)))
        print(rows[-1], flush=True)
    lines = [f"`python benchmarks/bm25_build.py --products {args.products}`: the synthetic full-size catalog's first "
             f"{len(docs):,} products, both paths in one process, alone on this machine.", "",
             "| index | texts | bm25s's fastest path s | array path s | speed-up | same index |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {n} | {k:,} | {a:.1f} | {b:.1f} | {a / b:.1f}x | {'yes' if ok else 'NO'} |"
              for n, k, a, b, ok in rows]
    write_result("bm25_build.md", "\n".join(lines))


if __name__ == "__main__":
    main()
