"""Which FAISS index at full size: recall@10 against exact search and the time of one question at a time,
on the vectors of a full-size index (benchmarks/full_scale.py builds it) or of a build's shards.

    python benchmarks/ann_full.py --index /tmp/productqa-bench/index_2205328 [--queries 200]
    python benchmarks/ann_full.py --shards /tmp/productqa-bench/.index_2205328.build \\
        --catalog /tmp/productqa-bench/catalog     # before the build commits (the embedding's output)

The vectors are the index's exact ones (an "ivfpq" index keeps them by id; an IVF-Flat one is read back from
its lists) or the shards'. The questions are the retrieval evaluation's (half naming, half describing) about
its products, embedded with its encoders (titles: int8 MiniLM, passages: static, as the full-scale build).
For each of titles and passages, one coarse quantizer (k-means, `--nlist` lists) is shared by
- IVF-Flat over its lists at several nprobe (the float vectors scanned), parallel_mode 1;
- the re-ranked types of indexing/vectors.py (what `index build` makes above FLAT_MAX): "ivfpq", 4-bit
  fast-scan product codes (d/2 of them), and "ivfsq", 8-bit scalar codes, at several nprobe, their top
  `rerank` re-scored with the exact vectors (indexing.vectors.Reranked);
and exact search (IndexFlatIP) is the ground truth and the baseline time. Times are one question at a time
(what `ask` and the chat do): p50 and p95 over the questions; build times (k-means, adding) included.
Writes benchmarks/results/ann_full.md.
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
    """(X [n, d] float32, ids [n]) of an index's exact vectors: an ivfpq index's by id, an IVF-Flat one's list
    by list."""
    import faiss
    import numpy as np
    from faiss.contrib.inspect_tools import get_invlist

    from indexing.vectors import Reranked

    if isinstance(index, Reranked):
        ivf = faiss.extract_index_ivf(index.index)
        ids = np.concatenate([np.asarray(get_invlist(ivf.invlists, lst)[0]) for lst in range(ivf.nlist)])
        ids.sort()
        return index.reconstruct_batch(ids), ids
    ivf = faiss.extract_index_ivf(index)
    X, ids = [], []
    for lst in range(ivf.nlist):
        i, codes = get_invlist(ivf.invlists, lst)
        ids.append(np.asarray(i))
        X.append(np.asarray(codes).view("float32").reshape(len(i), ivf.d))
    return np.concatenate(X), np.concatenate(ids)


def from_shards(build: Path, kind: str):
    """(X, ids) of one kind ("titles" or "passages") from a build folder's shards (ids: rows, in order)."""
    import numpy as np

    files = sorted((build / "shards").glob(f"*.{kind}.npy"))
    X = np.concatenate([np.load(f) for f in files if np.load(f, mmap_mode="r").shape[0]])
    return X, np.arange(len(X), dtype=np.int64)


def one_at_a_time(search, xq):
    """(I [nq, 10], p50 ms, p95 ms) searching the questions one by one with `search(x [1, d]) -> I [1, 10]`."""
    import numpy as np

    I, t = [], []
    for q in xq:
        t0 = time.perf_counter()
        i = search(q[None])
        t.append((time.perf_counter() - t0) * 1000)
        I.append(i[0])
    return np.asarray(I), float(np.percentile(t, 50)), float(np.percentile(t, 95))


def recall(I, I_exact) -> float:
    import numpy as np

    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_exact)]))


def compare(name: str, X, ids, xq, nlist: int, rows: list, reranks=(100, 200)) -> None:
    import faiss
    import numpy as np

    from indexing.vectors import RERANKED, Reranked, coarse_codes, set_nprobe

    n, d = X.shape
    exact = faiss.IndexFlatIP(d)
    exact.add(X)
    I_exact, p50, p95 = one_at_a_time(lambda x: exact.search(x, 10)[1], xq)
    I_exact = ids[I_exact]
    rows.append((name, f"exact (IndexFlatIP, {n:,} vectors)", "-", 1.0, p50, p95, None))
    exact.reset()  # its copy of the vectors
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    flat = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    flat.train(X[rng.choice(n, min(n, 64 * nlist), replace=False)])  # what make_faiss_parts samples
    trained = time.perf_counter() - t0
    flat.add_with_ids(X, ids)
    built = time.perf_counter() - t0
    flat.parallel_mode = 1
    for nprobe in (nlist // 16, nlist // 8, nlist // 4):
        flat.nprobe = nprobe
        I, p50, p95 = one_at_a_time(lambda x: flat.search(x, 10)[1], xq)
        rows.append((name, f"IVF-Flat nlist {nlist}", f"nprobe {nprobe}", recall(I, I_exact), p50, p95, built))
    flat.reset()
    exact_by_id = np.zeros((int(ids.max()) + 1, d), dtype=np.float32)
    exact_by_id[ids] = X
    for index_type in RERANKED:
        t0 = time.perf_counter()
        index, codes = coarse_codes(index_type, d, nlist, quantizer)
        index.train(X[rng.choice(n, min(n, 64 * nlist), replace=False)])  # the coarse k-means is already done
        index.add_with_ids(X, ids)
        built = time.perf_counter() - t0 + trained
        r = Reranked(index, exact_by_id)
        for nprobe in (nlist // 16, nlist // 8, nlist // 4, nlist // 2):
            set_nprobe(r, {"index_type": index_type, "nprobe": nprobe})
            for rerank in reranks:
                r.rerank = rerank
                I, p50, p95 = one_at_a_time(lambda x, r=r: r.search(x, 10)[1], xq)
                rows.append((name, f"{index_type}: IVF nlist {nlist}, {codes} codes + exact re-rank",
                             f"nprobe {nprobe}, re-rank {rerank}", recall(I, I_exact), p50, p95, built))
        index.reset()


def main() -> None:
    import numpy as np
    from prepare import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", help="a full-size index (benchmarks/full_scale.py)")
    ap.add_argument("--shards", help="a build folder (.INDEX.build) whose shards hold the vectors")
    ap.add_argument("--catalog", help="with --shards: the catalog the build reads")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nlist", type=int, nargs=2, default=None, metavar=("TITLES", "PASSAGES"),
                    help="lists of the coarse quantizer (default: what index build picks for that many vectors)")
    args = ap.parse_args()

    from indexing.embed import embed, encoder_identity, load_kind
    from indexing.errors import UserError
    from indexing.questions import make_description_questions, make_eval_questions
    from indexing.search import focus, load_index

    if bool(args.index) == bool(args.shards) or (args.shards and not args.catalog):
        raise SystemExit("ann_full.py: give --index DIR, or --shards BUILD_DIR with --catalog DIR")
    if args.shards and not any((Path(args.shards) / "shards").glob("*.titles.npy")):
        raise SystemExit(f"ann_full.py: {args.shards}: no embedded shards (a build folder, .INDEX.build, holds them)")
    n = args.queries
    if args.index:
        try:
            idx = load_index(args.index)
        except UserError as e:  # no index there (benchmarks/full_scale.py builds it): one line, not a traceback
            raise SystemExit(f"ann_full.py: {e}") from None
        if idx.meta.get("index_type") not in ("ivf", "ivfpq"):
            raise SystemExit(f"ann_full.py: {args.index}: its titles are not an IVF index (a catalog over "
                             f"{200_000:,} products has one); build the full catalog with benchmarks/full_scale.py")
        docs, models = idx.docs, (idx.model, idx.passage_model)
        sources = (lambda: vectors_of(idx._cpu["titles"]),
                   lambda: vectors_of(idx._cpu["passages"]) if idx._cpu.get("passages") is not None else None)
    else:
        from indexing.build import BuildConfig, load_docs

        docs = load_docs(BuildConfig(catalog=args.catalog, out=""))  # in build order: shard rows are its rows
        embedded = sum(np.load(f, mmap_mode="r").shape[0] for f in (Path(args.shards) / "shards").glob("*.titles.npy"))
        docs = docs.iloc[:embedded]  # a build still embedding: its products so far
        models = tuple(load_kind(encoder_identity(k, None), "cpu") for k in ("minilm-int8", "static"))
        sources = (lambda: from_shards(Path(args.shards), "titles"), lambda: from_shards(Path(args.shards), "passages"))
    qs = [q["question"] for q in make_eval_questions(docs, n // 2, seed=11)][: n // 2]
    qs += [q["question"] for q in make_description_questions(docs, n, seed=11)][: n - len(qs)]
    focused = [focus(q) for q in qs]
    rows = []
    for i, (name, model, source) in enumerate(zip(("titles", "passages"), models, sources)):
        got = source()
        if got is None or model is None:
            continue
        X, ids = got
        nlist = args.nlist[i] if args.nlist else int(2 ** round(np.log2(max(np.sqrt(len(X)), 16))))
        compare(name, X, ids, embed(model, focused), nlist, rows)
        del X, ids
    what = f"--index {args.index}" if args.index else f"--shards {args.shards} --catalog {args.catalog}"
    lines = [f"`python benchmarks/ann_full.py {what} --queries {n}`: {len(docs):,} products, {len(qs)} questions "
             "(naming and describing), one at a time, recall@10 against exact search; this machine.", "",
             "| vectors | index | setting | recall@10 | p50 ms | p95 ms | build s |",
             "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {r:.3f} | {p50:.2f} | {p95:.2f} | {'' if s is None else f'{s:,.0f}'} |"
              for a, b, c, r, p50, p95, s in rows]
    write_result("ann_full.md", "\n".join(lines))


if __name__ == "__main__":
    main()
