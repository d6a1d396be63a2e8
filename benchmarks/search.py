"""Benchmark FAISS search as the product builds it: latency and recall@10 of IVF against exact search.

    python benchmarks/search.py                               # 100k and 1.4M vectors, two data sets, ~10 min on 2 cores
    python benchmarks/search.py --sizes 100000 --queries 500  # quicker

The vectors are SYNTHETIC (no catalog has been embedded at 1.4M here), dim 384, float32,
L2-normalised, seeded. Uniform random vectors would make IVF recall meaningless (every point about
equally far from every other), so they have the structure of sentence embeddings: a shared mean
direction (random-pair cosine ~0.1; real all-MiniLM-L6-v2 title vectors: 0.14), anisotropic noise,
and n/500 clusters of log-normally varying size, so a vector's nearest neighbour has cosine ~0.7-0.85.
How recall responds to nprobe depends on how those clusters sit, so two structures bracket reality:

- "clusters": cluster centres spread over all 384 directions, clusters barely overlap; matches the
  real vectors' random-pair cosine spread and participation ratio (~90), but IVF cells end up
  holding whole clusters: the easy case.
- "manifold": the clusters overlap in a 24-d latent space mapped into 384-d, plus full-dimensional
  noise: a continuum of low intrinsic dimension where cell borders cut through dense regions: the
  hard case (its participation ratio, ~27, is lower than real vectors').

Queries are database vectors moved by noise of the same shape, at two distances, because the
distance decides how often a query's neighbours straddle IVF cells: "EN-like" at cosine ~0.92 to
their product and "PT-like" at ~0.75, the medians measured between real titles and the English and
Portuguese question phrasings of indexing/questions.py.

For each size and structure: the IVF index is built by the product's own
`indexing.vectors.make_faiss(X, ids, "ivf")` (nlist and training sample as shipped), the ground truth
by an exact `faiss.IndexFlatIP` (batched search, once). Then, for exact and for IVF at each nprobe:
recall@10 against exact, latency of one query at a time (p50/p99 over --single queries) and of
batches of 64 (ms per batch, queries/s), with faiss's default OpenMP threads. Prints Markdown tables
and the smallest nprobe reaching --target recall, and writes benchmarks/results/search.md.

    python benchmarks/search.py --slice 10000 [--searches 300]    # end to end, with title-only products
    python benchmarks/search.py --slice 10000 --multilingual       # end to end, without and with the 2nd stage

`--slice N` instead measures whole searches (`Index.retrieve`, k=3 as answering asks, the learned fusion)
on N described products of the synthetic catalog (benchmarks/prepare.py's generator, prepared with
`productqa prepare`), built twice in one run: as the catalog was before title-only products were kept (N
described products), and with the title-only products added at the real rate (38% of all products: N *
38/62 more, titles only). The same naming questions about the described products are timed on both,
alternating one question at a time; the second index is also asked about its title-only products
(hit@1 and "not in the catalog" reported). Writes benchmarks/results/search_title_only.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: `indexing` is imported from this checkout

DIM = 384
K = 10
BATCH = 64
PER_CLUSTER = 500  # mean vectors per cluster: n/500 clusters (both structures)
SPECTRUM_ALPHA = 0.25  # per-direction std ~ i^-alpha: participation ratio ~100 of 384, like real titles
MEAN_WEIGHT = 0.4  # weight of the shared direction: random-pair cosine ~0.1
CLUSTER_SPREAD = (0.45, 0.85)  # "clusters": per-cluster noise norm; nearest-neighbour cosine ~0.7-0.85
LATENT_DIM = 24  # "manifold": intrinsic dimension of the latent space the clusters live in
LATENT_SPREAD = (0.5, 1.0)  # "manifold": per-cluster std in latent units (centres ~N(0, I)): clusters overlap
RESIDUAL = 0.5  # "manifold": norm of the full-dimensional noise added to the latent part
STRUCTURES = ("clusters", "manifold")
QUERY_SETS = {  # name -> noise norm t; cos(query, its product) ~ 1/sqrt(1+t^2)
    "EN-like": 0.43,  # ~0.92: median cosine of English phrasings to their title (real records)
    "PT-like": 0.88,  # ~0.75: median cosine of Portuguese phrasings to their title
}
# all-MiniLM-L6-v2 vectors of the 500 real titles in ../shared/data/amazontitles, measured once with
# indexing.embed (fp32): what the synthetic sets are compared with in the report.
REAL_STATS = "random-pair cosine 0.14 (sd 0.10); participation ratio 91; nearest neighbour within the 500: p50 0.51"
CHUNK = 100_000  # rows generated at a time, so temporaries stay small


def _unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


class Synth:
    """Seeded generator of unit vectors with embedding-like structure, and of queries near them.

    "clusters": n/500 clusters whose centres are spread over all 384 directions; clusters hardly
    overlap, so an IVF cell tends to hold whole clusters (the easy case for IVF).
    "manifold": the same number of clusters, but in a 24-dimensional latent space where they overlap,
    mapped linearly into 384-d plus full-dimensional noise: a continuum of low intrinsic dimension,
    so IVF cell borders cut through dense regions (the hard case). Real text embeddings have a low
    intrinsic dimension and no clean cluster gaps, so their behaviour should lie between the two."""

    def __init__(self, n: int, structure: str, seed: int):
        self.rng = rng = np.random.default_rng(seed)
        self.n, self.structure = n, structure
        spec = np.arange(1, DIM + 1, dtype=np.float64) ** -SPECTRUM_ALPHA
        spec /= np.sqrt((spec ** 2).sum())  # so |g @ A| ~ 1 for g ~ N(0, I)
        basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        self.A = (spec[:, None] * basis.T).astype(np.float32)
        self.mean = MEAN_WEIGHT * _unit(rng.standard_normal((1, DIM))).astype(np.float32)
        self.k = k = max(1, n // PER_CLUSTER)
        w = rng.lognormal(0.0, 1.0, k)  # uneven cluster sizes, as categories are
        self.assign = rng.choice(k, size=n, p=w / w.sum())
        if structure == "clusters":
            self.centres = _unit(self.mean + self.noise(k))
            self.spread = rng.uniform(*CLUSTER_SPREAD, k).astype(np.float32)
        elif structure == "manifold":
            self.centres = rng.standard_normal((k, LATENT_DIM)).astype(np.float32)
            self.spread = rng.uniform(*LATENT_SPREAD, k).astype(np.float32)
            # latent -> 384-d, |z @ W| ~ |z| / sqrt(LATENT_DIM), i.e. ~1 for a typical point
            self.W = (rng.standard_normal((LATENT_DIM, DIM)) / np.sqrt(DIM * LATENT_DIM)).astype(np.float32)
        else:
            raise ValueError(f"unknown structure {structure!r}")

    def noise(self, m: int) -> np.ndarray:
        """m anisotropic noise vectors of norm ~1, float32."""
        return self.rng.standard_normal((m, DIM), dtype=np.float32) @ self.A

    def vectors(self) -> np.ndarray:
        X = np.empty((self.n, DIM), dtype=np.float32)
        for s in range(0, self.n, CHUNK):
            c = self.assign[s: s + CHUNK]
            if self.structure == "clusters":
                X[s: s + len(c)] = _unit(self.centres[c] + self.spread[c, None] * self.noise(len(c)))
            else:
                z = self.centres[c] + self.spread[c, None] * self.rng.standard_normal((len(c), LATENT_DIM),
                                                                                    dtype=np.float32)
                X[s: s + len(c)] = _unit(self.mean + z @ self.W + RESIDUAL * self.noise(len(c)))
        return X

    def queries(self, X: np.ndarray, m: int, t: float) -> tuple[np.ndarray, np.ndarray]:
        """m queries = normalize(x + t * noise) for random database rows x; returns (queries, rows)."""
        rows = self.rng.choice(len(X), size=m, replace=False)
        return _unit(X[rows] + t * self.noise(m)), rows


def recall_at_k(I: np.ndarray, gt: np.ndarray) -> float:
    """Mean fraction of the exact top-k ids found in the approximate top-k."""
    return float(np.mean([len(np.intersect1d(a, b)) / gt.shape[1] for a, b in zip(I, gt)]))


def latency(index, Q: np.ndarray, n_single: int) -> dict:
    """p50/p99 ms of one-query searches, and ms per batch of 64 / queries per second."""
    import faiss  # noqa: F401  (index methods need the module loaded)

    index.search(Q[:BATCH], K)  # warm-up: page in the index, start the OpenMP pool
    single = []
    for q in Q[:n_single]:
        t = time.perf_counter()
        index.search(q[None], K)
        single.append(time.perf_counter() - t)
    batches = []
    for s in range(0, len(Q) - BATCH + 1, BATCH):  # full batches only, so every one is comparable
        t = time.perf_counter()
        index.search(Q[s: s + BATCH], K)
        batches.append(time.perf_counter() - t)
    single_ms, batch_ms = np.array(single) * 1e3, np.array(batches) * 1e3
    return {"p50": np.percentile(single_ms, 50), "p99": np.percentile(single_ms, 99),
            "batch_ms": np.median(batch_ms), "qps": BATCH * len(batches) / (batch_ms.sum() / 1e3)}


def data_stats(X: np.ndarray, flat, queries: dict, rng) -> str:
    """One line describing a synthetic set, in the terms REAL_STATS uses for real embeddings."""
    sample = X[rng.choice(len(X), size=500, replace=False)]
    D, _ = flat.search(sample, 2)  # [:, 0] is the vector itself
    C = sample @ sample.T
    pairs = C[np.triu_indices(len(sample), 1)]
    np.fill_diagonal(C, -1.0)
    ev = np.linalg.eigvalsh(np.cov(sample.T.astype(np.float64)))
    p10, p50, p90 = np.percentile(D[:, 1], [10, 50, 90])
    parts = [f"nearest-neighbour cosine p10/p50/p90 {p10:.2f}/{p50:.2f}/{p90:.2f}",
             f"random-pair cosine {pairs.mean():.2f} (sd {pairs.std():.2f})",
             f"participation ratio {ev.sum() ** 2 / (ev ** 2).sum():.0f}",
             f"nearest neighbour within 500 sampled: p50 {np.median(C.max(1)):.2f}"]
    for name, (Q, rows) in queries.items():
        parts.append(f"{name} query-to-product cosine p50 {np.median((Q * X[rows]).sum(1)):.2f}")
    return "; ".join(parts)


def bench_size(n: int, structure: str, n_queries: int, nprobes: list[int], n_single: int, seed: int) -> dict:
    import faiss

    from indexing.vectors import FLAT_MAX, make_faiss

    tag = f"[{n:,} {structure}]"
    t = time.perf_counter()
    gen = Synth(n, structure, seed)
    X = gen.vectors()
    queries = {name: gen.queries(X, n_queries, t_) for name, t_ in QUERY_SETS.items()}
    print(f"{tag} generated {n:,} vectors in {gen.k:,} clusters + {len(queries)}x{n_queries} queries "
          f"in {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(X)
    flat_build = time.perf_counter() - t
    t = time.perf_counter()
    ivf, info = make_faiss(X, np.arange(n, dtype=np.int64), "ivf")  # exactly what `index build` does above FLAT_MAX
    ivf_build = time.perf_counter() - t
    print(f"{tag} built exact in {flat_build:.1f} s, IVF (nlist {info['nlist']}) in {ivf_build:.1f} s", flush=True)
    stats = data_stats(X, flat, queries, gen.rng)
    print(f"{tag} data: {stats}", flush=True)

    # Ground truth once, batched (BLAS): one-at-a-time exact search for every query would cost
    # minutes at 1.4M; single-query timings below use only --single queries.
    t = time.perf_counter()
    gt = {name: flat.search(Q, K)[1] for name, (Q, _) in queries.items()}
    print(f"{tag} exact ground truth in {time.perf_counter() - t:.0f} s", flush=True)
    Q_lat = queries["EN-like"][0]  # latency hardly depends on the query distance; one set is timed

    rows = []
    lat = latency(flat, Q_lat, n_single)
    rows.append({"index": "exact (IndexFlatIP)", "nprobe": "-", "recall": {q: 1.0 for q in queries}, **lat})
    print(f"{tag} exact: {lat['p50']:.1f} ms/query p50", flush=True)
    del X, flat  # free ~1.5 GB per million vectors before the IVF runs
    gc.collect()
    ivf_params = faiss.extract_index_ivf(ivf)
    for nprobe in nprobes:
        if nprobe > info["nlist"]:
            continue
        ivf_params.nprobe = nprobe
        rec = {name: recall_at_k(ivf.search(Q, K)[1], gt[name]) for name, (Q, _) in queries.items()}
        lat = latency(ivf, Q_lat, n_single)
        rows.append({"index": f"IVF-Flat, nlist {info['nlist']:,}", "nprobe": nprobe, "recall": rec, **lat})
        print(f"{tag} nprobe {nprobe}: recall@10 " + ", ".join(f"{q} {v:.3f}" for q, v in rec.items())
              + f"; {lat['p50']:.2f} ms/query p50", flush=True)
    del ivf
    gc.collect()
    return {"n": n, "structure": structure, "k": gen.k, "flat_build": flat_build, "ivf_build": ivf_build,
            "nlist": info["nlist"], "stats": stats, "rows": rows,
            "product_index": "exact (flat)" if n <= FLAT_MAX else "IVF"}


def smallest_nprobe(result: dict, target: float) -> int | None:
    """Smallest nprobe whose recall@10 reaches `target` for every query set."""
    for r in result["rows"]:
        if r["nprobe"] != "-" and min(r["recall"].values()) >= target:
            return r["nprobe"]
    return None


def report(results: list[dict], args, command: str, seconds: float, load: tuple) -> str:
    import faiss

    from indexing.vectors import FLAT_MAX, IVF_NPROBE

    qnames = list(QUERY_SETS)
    lines = [f"Command: `{command}`", "",
             f"SYNTHETIC vectors (see the docstring of benchmarks/search.py), dim {DIM}, float32, "
             f"L2-normalised, seed {args.seed}; {args.queries:,} queries per query set (EN-like: cosine ~0.92 "
             f"to their product, PT-like: ~0.75). faiss {faiss.__version__}, {faiss.omp_get_max_threads()} "
             f"OpenMP threads, {os.cpu_count()} CPUs, no GPU. Load average {load[0]:.1f} at start, "
             f"{os.getloadavg()[0]:.1f} at end (other work shared the machine). Total {seconds / 60:.1f} min.", "",
             "Data structures: **clusters** = n/500 well-separated Gaussian clusters (easy for IVF); "
             f"**manifold** = n/500 overlapping clusters in a {LATENT_DIM}-d latent space, mapped into {DIM}-d plus "
             "noise (a continuum, hard for IVF). Real all-MiniLM-L6-v2 title vectors (500 real records): "
             f"{REAL_STATS}.", ""]
    for r in results:
        lines.append(f"- {r['n']:,} vectors, {r['structure']}, {r['k']:,} clusters: {r['stats']}.")
    lines += ["", "Build time (IVF: `indexing.vectors.make_faiss(X, ids, \"ivf\")`, i.e. k-means on 64 x nlist "
              "training vectors, then adding all; exact: `IndexFlatIP.add`).", "",
              "| vectors | data | index | nlist | build time (s) | product uses (auto) |",
              "|---:|---|---|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['n']:,} | {r['structure']} | exact (IndexFlatIP) | - | {r['flat_build']:.1f} | "
                     f"{r['product_index']} |")
        lines.append(f"| {r['n']:,} | {r['structure']} | IVF-Flat | {r['nlist']:,} | {r['ivf_build']:.1f} | "
                     f"{r['product_index']} |")
    lines += ["", f"Search, k = {K}. Recall@10 against exact search; latency of one query at a time "
              f"({args.single} queries, p50/p99) and of batches of {BATCH} (EN-like queries).", "",
              "| vectors | data | index | nprobe | " + " | ".join(f"recall@10 {q}" for q in qnames)
              + f" | 1 query p50 (ms) | 1 query p99 (ms) | batch of {BATCH} (ms) | batched queries/s |",
              "|---:|---|---|---:|" + "---:|" * len(qnames) + "---:|---:|---:|---:|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['n']:,} | {r['structure']} | {row['index']} | {row['nprobe']} | "
                         + " | ".join(f"{row['recall'][q]:.3f}" for q in qnames)
                         + f" | {row['p50']:.2f} | {row['p99']:.2f} | {row['batch_ms']:.1f} | {row['qps']:,.0f} |")
    n_max = max(r["n"] for r in results)
    lines += ["", f"Smallest nprobe with recall@10 >= {args.target} for both query sets at {n_max:,} vectors:", ""]
    needed = []
    for r in results:
        if r["n"] == n_max:
            best = smallest_nprobe(r, args.target)
            needed.append(best)
            lines.append(f"- {r['structure']} (nlist {r['nlist']:,}): "
                         f"**{best if best is not None else 'not reached by nprobe ' + args.nprobe}**")
    worst = None if None in needed else max(needed)
    lines += ["", f"Both structures: **{worst if worst is not None else 'not reached'}**. The product's "
              f"`indexing.vectors.IVF_NPROBE` is {IVF_NPROBE} (IVF is used above FLAT_MAX = {FLAT_MAX:,} products)."]
    return "\n".join(lines)


def title_only_slice(n: int, searches: int, command: str) -> str:
    """The `--slice` report (see the module docstring)."""
    import tempfile

    import pyarrow.parquet as pq

    from indexing.build import BuildConfig, build_index
    from indexing.evaluate import evaluate_retrieval
    from indexing.questions import VARIANTS, make_chat_questions, make_eval_questions
    from indexing.search import load_index

    t_start, load0 = time.time(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pqa-title-only-"))
    described, title_only = slice_catalog(n, tmp)
    builds, idx = {}, {}
    for name, table in (("described", described), ("with title-only", pa_concat(described, title_only))):
        (tmp / name).mkdir()
        pq.write_table(table, tmp / name / "catalog.parquet")
        builds[name] = build_index(BuildConfig(catalog=str(tmp / name), out=str(tmp / f"{name}-index"),
                                               progress=False))
        idx[name] = load_index(tmp / f"{name}-index")
    docs = idx["described"].docs
    qs = [q["question"] for q in make_eval_questions(docs, searches // 2 + 1, seed=7)
          + make_chat_questions(docs, searches // 2 + 1, seed=7)][:searches]
    times = {name: [] for name in idx}
    for i in idx.values():
        i.retrieve(qs[0], k=3)
    for q in qs:
        for name, i in idx.items():  # alternating: the machine's state is the same for both
            t0 = time.perf_counter()
            i.retrieve(q, k=3)
            times[name].append((time.perf_counter() - t0) * 1000)
    big = idx["with title-only"]
    tdocs = big.docs[big.docs["content"] == ""]
    tq = make_eval_questions(tdocs, min(len(tdocs), 200), seed=3) + make_chat_questions(tdocs, min(len(tdocs), 200),
                                                                                       seed=3)
    quality = evaluate_retrieval(big, tq)["hybrid"]
    templates = evaluate_retrieval(big, [q for q in tq if q["variant"] in VARIANTS])["hybrid"]["all"]
    lines = [f"Command: `{command}`. Search end to end (`Index.retrieve`, k=3, learned fusion), one question at a "
             f"time, {len(qs)} naming questions about the described products (templates and held-out "
             f"conversational frames), the two indexes alternating in one process.", "",
             "| index | products | of them title-only | passages | search p50 (ms) | p95 (ms) | p50 ratio "
             "| build (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    base = float(np.percentile(times["described"], 50))
    for name, i in idx.items():
        p50, p95 = float(np.percentile(times[name], 50)), float(np.percentile(times[name], 95))
        lines.append(f"| {name} | {len(i):,} | {int((i.docs['content'] == '').sum()):,} | {len(i.passages):,} | "
                     f"{p50:.1f} | {p95:.1f} | {p50 / base:.2f}x | {builds[name]['build_seconds']['total']:.0f} |")
    lines += ["", f"The title-only products of the second index asked about by name ({quality['all']['n']:,} "
              f"questions about {min(len(tdocs), 200)} of them, the same kinds): hit@1 {quality['all']['hit@1']:.3f}, "
              f"\"not in the catalog\" {quality['all']['refused']:.1%}; in the fine-tuning templates (exact, lower, "
              f"partial, typo, Portuguese) hit@1 {templates['hit@1']:.3f}, \"not in the catalog\" "
              f"{templates['refused']:.1%}.",
              f"{os.cpu_count()} CPUs, no GPU; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
              f"{(time.time() - t_start) / 60:.1f} min."]
    return "\n".join(lines)


def slice_catalog(n: int, tmp: Path):
    """(n described products, n * 38/62 title-only ones) of the synthetic catalog (benchmarks/prepare.py's
    generator, prepared with `productqa prepare` in `tmp`), as arrow tables."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prepare import generate

    from indexing.prepare import prepare

    m = round(n * 38 / 62)
    generate(tmp / "synth.jsonl", int((n + m) * 1.15) + 200)  # ~2% duplicates, ~38% title-only
    prepare([tmp / "synth.jsonl"], tmp / "synth", progress=False)
    t = pq.read_table(tmp / "synth" / "catalog.parquet")
    described = t.filter(t["has_description"]).slice(0, n)
    title_only = t.filter(pc.invert(t["has_description"])).slice(0, m)
    if described.num_rows < n or title_only.num_rows < m:
        raise SystemExit(f"the synthetic catalog holds {described.num_rows} + {title_only.num_rows} products")
    return described, title_only


def multilingual_slice(n: int, searches: int, command: str) -> str:
    """The `--slice N --multilingual` report: the slice (title-only products at the real rate) built without
    and with the multilingual second stage (indexing/multilingual.py) in one run; the same naming and
    describing questions timed on both, alternating one question at a time; build time per stage."""
    import tempfile

    import pyarrow.parquet as pq

    from indexing.build import BuildConfig, build_index
    from indexing.questions import (
        make_chat_description_questions,
        make_chat_questions,
        make_description_questions,
        make_eval_questions,
    )
    from indexing.search import load_index

    t_start, load0 = time.time(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pqa-multilingual-"))
    (tmp / "cat").mkdir()
    pq.write_table(pa_concat(*slice_catalog(n, tmp)), tmp / "cat" / "catalog.parquet")
    builds, idx = {}, {}
    for name in ("none", "use"):
        builds[name] = build_index(BuildConfig(catalog=str(tmp / "cat"), out=str(tmp / name), progress=False,
                                               multilingual=name))
        idx[name] = load_index(tmp / name)
    docs = idx["none"].docs
    described = docs[docs["content"] != ""]
    half = searches // 2 + 1
    sets = {"naming": [q["question"] for q in make_eval_questions(docs, half, seed=7)
                       + make_chat_questions(docs, half, seed=7)][:searches],
            "describing": [q["question"] for q in make_description_questions(described, half, seed=7)
                           + make_chat_description_questions(described, half, seed=7)][:searches]}
    times, read = {(s, name): [] for s in sets for name in idx}, {s: 0 for s in sets}
    for i in idx.values():
        i.retrieve(sets["naming"][0], k=3)
    for s, qs in sets.items():
        for q in qs:
            for name, i in idx.items():  # alternating: the machine's state is the same for both
                t0 = time.perf_counter()
                hits = i.retrieve(q, k=3)
                times[s, name].append((time.perf_counter() - t0) * 1000)
                read[s] += name == "use" and any(h.multilingual is not None for h in hits)
    lines = [f"Command: `{command}`. Search end to end (`Index.retrieve`, k=3, learned fusion), one question at a "
             f"time, {len(idx['none']):,} products ({int((docs['content'] == '').sum()):,} title-only), built "
             f"without (`--multilingual none`, as before the stage) and with it (`use`); the same questions on "
             f"both, alternating in one process.", "",
             "| questions | n | read by the stage | without: p50 (ms) | p95 | with: p50 (ms) | p95 | p50 ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, qs in sets.items():
        a, b = np.array(times[s, "none"]), np.array(times[s, "use"])
        lines.append(f"| {s} | {len(qs)} | {read[s] / len(qs):.0%} | "
                     f"{np.percentile(a, 50):.1f} | {np.percentile(a, 95):.1f} | "
                     f"{np.percentile(b, 50):.1f} | {np.percentile(b, 95):.1f} | "
                     f"{np.percentile(b, 50) / np.percentile(a, 50):.2f}x |")
    stages = sorted(set(builds["none"]["build_seconds"]) | set(builds["use"]["build_seconds"]))
    lines += ["", "| build stage | without (s) | with (s) |", "|---|---:|---:|"]
    took = {name: b["build_seconds"] for name, b in builds.items()}
    lines += [f"| {st} | {took['none'].get(st, 0):.0f} | {took['use'].get(st, 0):.0f} |" for st in stages]
    lines += ["", f"{os.cpu_count()} CPUs, no GPU; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at "
              f"end; {(time.time() - t_start) / 60:.1f} min."]
    return "\n".join(lines)


def pa_concat(a, b):
    import pyarrow as pa

    return pa.concat_tables([a, b])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1400000", help="database sizes, comma-separated")
    ap.add_argument("--structures", default=",".join(STRUCTURES), help="synthetic data structures, comma-separated")
    ap.add_argument("--queries", type=int, default=1000, help="queries per query set")
    ap.add_argument("--nprobe", default="8,16,32,64,128", help="IVF nprobe values, comma-separated")
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 the recommended nprobe must reach")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search.md"))
    ap.add_argument("--slice", type=int, metavar="N",
                    help="instead: whole searches on N described products, with and without title-only ones added")
    ap.add_argument("--searches", type=int, default=300, help="with --slice: questions timed")
    ap.add_argument("--multilingual", action="store_true",
                    help="with --slice: the slice without and with the multilingual second stage")
    args = ap.parse_args()
    if args.slice:
        command = shlex.join(["python", "benchmarks/search.py", *sys.argv[1:]])
        if args.multilingual:
            text, out = multilingual_slice(args.slice, args.searches, command), "search_multilingual.md"
        else:
            text, out = title_only_slice(args.slice, args.searches, command), "search_title_only.md"
        print(text)
        out = ROOT / "benchmarks" / "results" / out
        out.write_text(text + "\n")
        return
    if args.queries < BATCH or args.single > args.queries:
        ap.error(f"--queries must be >= {BATCH} and >= --single")
    if set(args.structures.split(",")) - set(STRUCTURES):
        ap.error(f"--structures: choose from {', '.join(STRUCTURES)}")

    command = shlex.join(["python", "benchmarks/search.py", *sys.argv[1:]])
    load, t0 = os.getloadavg(), time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    nprobes = sorted(int(s) for s in args.nprobe.split(","))
    structures = args.structures.split(",")
    results = [bench_size(n, st, args.queries, nprobes, args.single, args.seed) for n in sizes for st in structures]
    text = report(results, args, command, time.perf_counter() - t0, load)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
