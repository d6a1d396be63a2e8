"""Which FAISS index at full size: recall@10 against exact search and the time of one question at a time,
on the vectors of a full-size index (benchmarks/full_scale.py builds it).

    python benchmarks/ann_full.py [--index /tmp/productqa-bench/index_1370363] [--queries 200]

The vectors are read back from the index's IVF lists (faiss.contrib.inspect_tools), the questions are the
retrieval evaluation's (naming and describing) about products of the index, embedded with its encoders.
For each of titles and passages: the index as built (IVF-Flat, nlist ~sqrt(n)) at several nprobe, with
faiss's default parallelism (over queries: one thread for one question) and parallel_mode 1 (over the
probed lists); a finer IVF (nlist 4x); HNSW (M 32) at several efSearch. Times are one question at a time
(what `ask` and the chat do), p50 over the questions; build times included. Writes
benchmarks/results/ann_full.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def vectors_of(index):
    """(X [n, d] float32, ids [n]) of an IVF-Flat index, list by list."""
    import faiss
    import numpy as np
    from faiss.contrib.inspect_tools import get_invlist

    ivf = faiss.extract_index_ivf(index)
    X, ids = [], []
    for lst in range(ivf.nlist):
        i, codes = get_invlist(ivf.invlists, lst)
        ids.append(np.asarray(i))
        X.append(np.asarray(codes).view("float32").reshape(len(i), ivf.d))
    return np.concatenate(X), np.concatenate(ids)


def one_at_a_time(index, xq, k: int = 10):
    """(I [nq, k], p50 ms) searching the questions one by one."""
    import numpy as np

    I, t = [], []
    for q in xq:
        t0 = time.perf_counter()
        _, i = index.search(q[None], k)
        t.append((time.perf_counter() - t0) * 1000)
        I.append(i[0])
    return np.asarray(I), float(np.percentile(t, 50)), float(np.percentile(t, 95))


def recall(I, I_exact) -> float:
    import numpy as np

    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_exact)]))


def compare(name: str, index, xq, rows: list) -> None:
    import faiss
    import numpy as np

    X, ids = vectors_of(index)
    n, d = X.shape
    exact = faiss.IndexFlatIP(d)
    exact.add(X)
    _, I_exact = exact.search(xq, 10)
    I_exact = ids[I_exact]
    del exact
    ivf = faiss.extract_index_ivf(index)
    for mode in (0, 1):
        ivf.parallel_mode = mode
        for nprobe in (32, 64, 128, 256):
            ivf.nprobe = nprobe
            I, p50, p95 = one_at_a_time(index, xq)
            rows.append((name, f"IVF-Flat nlist {ivf.nlist} (built)", f"nprobe {nprobe}, parallel_mode {mode}",
                         recall(I, I_exact), p50, p95, None))
    ivf.parallel_mode = 0
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(X)
    built = time.perf_counter() - t0
    for ef in (32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        I, p50, p95 = one_at_a_time(hnsw, xq)
        rows.append((name, "HNSW-Flat M 32, efConstruction 40", f"efSearch {ef}", recall(ids[I], I_exact), p50, p95,
                     built))
    del hnsw
    nlist = 4 * ivf.nlist
    t0 = time.perf_counter()
    fine = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    fine.train(X[rng.choice(n, min(n, 64 * nlist), replace=False)])
    fine.add(X)
    built = time.perf_counter() - t0
    fine.parallel_mode = 1
    for nprobe in (64, 128, 256, 512):
        fine.nprobe = nprobe
        I, p50, p95 = one_at_a_time(fine, xq)
        rows.append((name, f"IVF-Flat nlist {nlist}", f"nprobe {nprobe}, parallel_mode 1", recall(ids[I], I_exact),
                     p50, p95, built))


def main() -> None:
    from prepare import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="/tmp/productqa-bench/index_1370363")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()

    from indexing.embed import embed
    from indexing.errors import UserError
    from indexing.questions import make_description_questions, make_eval_questions
    from indexing.search import focus, load_index

    try:
        idx = load_index(args.index)
    except UserError as e:  # no index there (benchmarks/full_scale.py builds it): one line, not a traceback
        raise SystemExit(f"ann_full.py: {e}") from None
    if idx.meta.get("index_type") != "ivf":
        raise SystemExit(f"ann_full.py: {args.index}: its titles are not an IVF index (a catalog over "
                         f"{200_000:,} products has one); build the full catalog with benchmarks/full_scale.py")
    n = args.queries
    qs = [q["question"] for q in make_eval_questions(idx.docs, n // 2, seed=11)][: n // 2]
    qs += [q["question"] for q in make_description_questions(idx.docs, n, seed=11)][: n - len(qs)]
    focused = [focus(q) for q in qs]
    rows = []
    compare("titles", idx._cpu["titles"], embed(idx.model, focused), rows)
    if idx._cpu.get("passages") is not None:
        compare("passages", idx._cpu["passages"], embed(idx.passage_model, focused), rows)
    lines = [f"`python benchmarks/ann_full.py --index {args.index} --queries {n}`: {len(idx):,} products, "
             f"{len(qs)} questions (naming and describing), one at a time, recall@10 against exact search; "
             "this machine, nothing else running.", "",
             "| vectors | index | setting | recall@10 | p50 ms | p95 ms | build s |",
             "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {r:.3f} | {p50:.2f} | {p95:.2f} | {'' if s is None else f'{s:,.0f}'} |"
              for a, b, c, r, p50, p95, s in rows]
    write_result("ann_full.md", "\n".join(lines))


if __name__ == "__main__":
    main()
