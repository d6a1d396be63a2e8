"""Ray Data against the default single process, same catalog slice, same run.

    python benchmarks/ray_embed.py [--products 50000] [--workdir /tmp/productqa-bench]

Takes the first `--products` products of the full-size synthetic catalog (benchmarks/full_scale.py
prepares it) and builds the index twice: `--engine local` (this process) and `--engine ray` (a local
Ray, 2 workers on this machine's CPUs, inside a loopback-only network namespace: `unshare -n`, so
run as root). Also measures what starting and stopping an empty local Ray costs. Wall time and peak
RSS (process tree) per build; embedding seconds from each index's meta.json. Writes
benchmarks/results/ray_embed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from prepare import run_measured, write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=50_000)
    ap.add_argument("--workdir", default="/tmp/productqa-bench")
    args = ap.parse_args()
    work = Path(args.workdir)
    catalog = work / "catalog" / "catalog.parquet"
    if not catalog.exists():
        raise SystemExit(f"{catalog} is missing: run benchmarks/full_scale.py (or benchmarks/prepare.py) first")
    import pyarrow.parquet as pq

    sliced = work / f"catalog_{args.products}"
    sliced.mkdir(exist_ok=True)
    if not (sliced / "catalog.parquet").exists():
        pq.write_table(pq.read_table(catalog).slice(0, args.products), sliced / "catalog.parquet")
    ns = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    py = [sys.executable]
    rows = []
    start = ("import time, sys; sys.path.insert(0, %r); t = time.perf_counter(); "
             "from indexing.ray_embed import start_ray; ray = start_ray(None); ray.shutdown(); "
             "print(time.perf_counter() - t)" % str(ROOT))
    secs, peak, out = run_measured(ns + py + ["-c", start])
    rows.append(("local Ray: start + stop, nothing else", float(out.strip().splitlines()[-1]), peak, None))
    for engine in ("local", "ray"):
        out_dir = work / f"index_{args.products}_{engine}"
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = py + ["-m", "ui.cli", "index", "build", "--catalog", str(sliced), "--out", str(out_dir), "--quiet",
                    "--engine", engine]
        secs, peak, _ = run_measured((ns if engine == "ray" else []) + cmd)
        meta = json.loads((out_dir / "meta.json").read_text())
        rows.append((f"index build --engine {engine}", secs, peak, meta["build_seconds"]["embed"]))
    base = rows[1][1]
    lines = [f"First {args.products:,} products of the synthetic full-size catalog ({os.cpu_count()} CPUs, no GPU); "
             f"titles and description passages. Command: `python benchmarks/ray_embed.py --products {args.products}`",
             "", "| run | wall time (s) | embedding (s) | peak RSS (MB) | vs local |", "|---|---:|---:|---:|---:|"]
    for name, secs, peak, emb in rows:
        lines.append(f"| {name} | {secs:,.1f} | {'-' if emb is None else f'{emb:,.1f}'} | {peak / 2**20:,.0f} | "
                     + ("-" if emb is None else f"{base / secs:.2f}x") + " |")
    write_result("ray_embed.md", "\n".join(lines))


if __name__ == "__main__":
    main()
