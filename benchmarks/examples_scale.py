"""Building training examples from the full-size catalog: memory stays flat as the sample grows.

    python benchmarks/examples_scale.py [--sizes 2000,100000] [--workdir /tmp/productqa-bench]

Runs `productqa examples --sample N` (stratified, streamed, written chunk by chunk) over the full-size
synthetic catalog (1.37M products; benchmarks/full_scale.py or benchmarks/prepare.py makes it) for
each N, retrieving every example's context from the largest index there is (the 50,000-product index
that benchmarks/ray_embed.py builds, by default: a full 1.37M index takes ~7.7 h to build on this
machine). Products outside that index still get their examples (their own description is the
oracle; the index supplies the distractors). Reports wall time, products/s and peak RSS of the
process per N. Writes benchmarks/results/examples_scale.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from prepare import run_measured, write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,100000", help="comma-separated sample sizes")
    ap.add_argument("--workdir", default="/tmp/productqa-bench")
    ap.add_argument("--index", help="index folder (default: WORKDIR/index_50000_local)")
    args = ap.parse_args()
    work = Path(args.workdir)
    catalog, index = work / "catalog", Path(args.index or work / "index_50000_local")
    for need, how in ((catalog / "catalog.parquet", "benchmarks/full_scale.py"),
                      (index / "meta.json", "benchmarks/ray_embed.py")):
        if not need.exists():
            raise SystemExit(f"{need} is missing: run {how} first")
    products = json.loads((catalog / "stats.json").read_text())["records"]
    indexed = json.loads((index / "meta.json").read_text())["count"]
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        out = work / f"examples_{n}"
        shutil.rmtree(out, ignore_errors=True)
        secs, peak, _ = run_measured([str(Path(sys.executable).parent / "productqa"), "examples", "--catalog",
                                      str(catalog), "--index", str(index), "--out", str(out), "--sample", str(n),
                                      "--quiet"])
        meta = json.loads((out / "examples.json").read_text())
        rows.append((n, secs, peak, meta))
        print(n, f"{secs:.1f} s", f"{peak / 2**20:.0f} MB", meta["examples"], flush=True)
    lines = [f"`productqa examples --sample N` over the full-size synthetic catalog ({products:,} products, "
             f"{(catalog / 'catalog.parquet').stat().st_size / 2**20:,.0f} MB Parquet), contexts retrieved from a "
             f"{indexed:,}-product index (titles + description passages, hybrid), chunks of 2,048 products, "
             f"CPU (2 cores), each run alone. Command: `python benchmarks/examples_scale.py --sizes {args.sizes}`", "",
             "| products sampled | examples (train / validation) | wall time (s) | products/s | peak RSS (MB) "
             "| examples on disk (MB) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, secs, peak, meta in rows:
        size = sum((work / f"examples_{n}" / f).stat().st_size for f in ("train.jsonl", "val.jsonl"))
        lines.append(f"| {n:,} | {meta['examples']['train']:,} / {meta['examples']['val']:,} | {secs:,.1f} | "
                     f"{n / secs:,.1f} | {peak / 2**20:,.0f} | {size / 2**20:,.0f} |")
    write_result("examples_scale.md", "\n".join(lines))


if __name__ == "__main__":
    main()
