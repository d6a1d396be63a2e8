"""Full-size rehearsal: the catalog's real size through prepare -> index build -> search -> ask.

    python benchmarks/full_scale.py [--products 20000] [--workdir /tmp/productqa-bench]

1. the synthetic trn.json of the real size (2,248,619 lines; benchmarks/prepare.py makes it once)
2. `productqa prepare` of all of it (~1.37M products)
3. `productqa index build` (titles + description passages, sharded, calibrated) of the first
   `--products` products: embedding the descriptions of all 1.37M takes hours on this 2-core CPU, so
   the slice is measured and the full build is extrapolated from its measured rates (said so in the
   table); `--products 0` builds everything (resumable: run it again after an interruption)
4. 1,000 searches (one question at a time, hybrid titles + descriptions) on that index: p50 / p95
5. `productqa ask` (base model, default answer mode) on 3 questions

Each stage runs in its own process; wall time and peak RSS (the process tree, polled) per stage.
Writes benchmarks/results/full_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
FULL_PRODUCTS = 1_370_282  # what `productqa prepare` keeps of the full synthetic trn.json


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def searches(index: str, n: int) -> dict:
    """Run in a child process: n one-at-a-time hybrid searches; latency percentiles in ms."""
    import numpy as np

    from indexing.questions import make_description_questions, make_eval_questions
    from indexing.search import load_index

    idx = load_index(index)
    qs = [q["question"] for q in make_eval_questions(idx.docs, n // 2, seed=7)]
    qs += [q["question"] for q in make_description_questions(idx.docs, n, seed=7)]
    qs = qs[:n]
    idx.retrieve(qs[0], k=5)
    t = []
    for q in qs:
        t0 = time.perf_counter()
        idx.retrieve(q, k=5)
        t.append((time.perf_counter() - t0) * 1000)
    return {"n": len(qs), "p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95))}


def main() -> None:
    from prepare import FULL_LINES, generate, run_measured, write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=20_000, help="products to index (0 = all)")
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--workdir", default="/tmp/productqa-bench")
    ap.add_argument("--search-only", metavar="INDEX", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.search_only:
        print(json.dumps(searches(args.search_only, args.searches)))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"trn_synth_{FULL_LINES}.jsonl"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data.with_suffix(".tmp"), FULL_LINES)
        os.replace(data.with_suffix(".tmp"), data)
    cli = [sys.executable, "-m", "ui.cli"]
    rows = []

    catalog = work / "catalog"
    secs, peak, _ = run_measured(cli + ["prepare", "--input", str(data), "--out", str(catalog), "--quiet"])
    n_all = json.loads((catalog / "stats.json").read_text())["records"]
    rows.append(("prepare", f"{FULL_LINES:,} lines -> {n_all:,} products", secs, peak, ""))

    import pyarrow.parquet as pq

    n = args.products or n_all
    sliced = work / f"catalog_{n}"
    if n < n_all:
        sliced.mkdir(exist_ok=True)
        pq.write_table(pq.read_table(catalog / "catalog.parquet").slice(0, n), sliced / "catalog.parquet")
    else:
        sliced = catalog
    index = work / f"index_{n}"
    shutil.rmtree(index, ignore_errors=True)
    secs, peak, _ = run_measured(cli + ["index", "build", "--catalog", str(sliced), "--out", str(index), "--quiet"])
    meta = json.loads((index / "meta.json").read_text())
    size = du(index)
    per_product = meta["build_seconds"]["embed"] / n
    rows.append(("index build", f"{n:,} products, {meta['passages']['count']:,} passages", secs, peak,
                 f"embedding {meta['build_seconds']['embed']:.0f} s = {n / meta['build_seconds']['embed']:.1f} "
                 f"products/s; {size / 2**20:,.0f} MB on disk"))
    if n < n_all:
        rows.append(("index build, all products (extrapolated)", f"{n_all:,} products", per_product * n_all,
                     None, f"from the slice's rates; about {size / n * n_all / 2**30:.1f} GB on disk"))

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--search-only", str(index), "--searches", str(args.searches)],
                         capture_output=True, text=True, check=True).stdout
    s = json.loads(out.strip().splitlines()[-1])
    rows.append(("search (one question at a time)", f"{s['n']:,} questions on {n:,} products",
                 time.perf_counter() - t0, None, f"p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms (hybrid, k=5)"))

    docs = pq.read_table(sliced / "catalog.parquet", columns=["title"]).slice(0, 3).to_pandas()
    for title in docs["title"]:
        secs, peak, out = run_measured(cli + ["ask", f"What is '{title}'?", "--index", str(index), "--json"])
        ans = json.loads(out.strip().splitlines()[-1])
        rows.append(("ask (base model)", title[:40], secs, peak,
                     f"answer latency {ans['latency_ms']:.0f} ms in a process that took {secs:.0f} s to load"))

    lines = [f"Synthetic catalog of the real size (benchmarks/prepare.py), this machine ({os.cpu_count()} CPUs, no "
             f"GPU). Command: `python benchmarks/full_scale.py --products {args.products}`", "",
             "| stage | scope | wall time (s) | peak RSS (MB) | notes |", "|---|---|---:|---:|---|"]
    for stage, scope, secs, peak, note in rows:
        lines.append(f"| {stage} | {scope} | {secs:,.1f} | {'-' if peak is None else f'{peak / 2**20:,.0f}'} | {note} |")
    write_result("full_scale.md", "\n".join(lines))


if __name__ == "__main__":
    main()
