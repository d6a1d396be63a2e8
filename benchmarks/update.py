"""Benchmark what an index update costs today, against building the same index, at growing sizes.

    python benchmarks/update.py                       # 1,000 and 4,000 synthetic lines, ~6 min on 2 cores
    python benchmarks/update.py --lines 1000 --change 5

For each size: synthetic trn.json lines (benchmarks/prepare.py's generator: ~62% have a description)
-> `productqa prepare` -> `productqa index build` (timed: the baseline), then `productqa index add`
of --change new products and `productqa index remove` of the same (each timed, its peak RSS, and
the bytes its new version wrote). Every command is a fresh process, run one after another, alone.
The point is the ratio: an update rewrites a whole version (both FAISS indexes, docs, passages, all
BM25 indexes), so its cost grows with the catalog, not with the change; deltas and tombstones are
what would make it flat (issue 21). Writes benchmarks/results/update.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    from prepare import generate, run_measured, write_result

    from indexing.store import live_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, nargs="+", default=[1000, 4000], help="synthetic trn.json lines per size")
    ap.add_argument("--change", type=int, default=5, help="products added, then removed")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "ui.cli"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="productqa-update-") as tmp:
        tmp = Path(tmp)
        for lines in args.lines:
            work = tmp / str(lines)
            work.mkdir()
            generate(work / "trn.json", lines, seed=lines)
            run_measured(cli + ["prepare", "--input", str(work / "trn.json"), "--out", str(work / "cat")])
            index = work / "index"
            t_build, rss_build, _ = run_measured(cli + ["index", "build", "--catalog", str(work / "cat"),
                                                        "--out", str(index), "--quiet"])
            meta = json.loads((live_folder(index) / "meta.json").read_text())
            size = folder_bytes(live_folder(index))
            new = work / "new.jsonl"
            with open(new, "w") as f:
                for i in range(args.change):
                    f.write(json.dumps({"uid": f"NEW{i:07d}", "title": f"Benchmark Marimba Number {i}",
                                        "content": f"A new product added by the update benchmark, number {i}. " * 4})
                            + "\n")
            t_add, rss_add, _ = run_measured(cli + ["index", "add", "--index", str(index), "--input", str(new),
                                                    "--quiet"])
            add_bytes = folder_bytes(live_folder(index))
            t_rm, rss_rm, _ = run_measured(cli + ["index", "remove", "--index", str(index), "--uid",
                                                  *(f"NEW{i:07d}" for i in range(args.change))])
            rm_bytes = folder_bytes(live_folder(index))
            rows.append((lines, meta["count"], meta["passages"]["count"], size, t_build, rss_build, t_add, rss_add,
                         add_bytes, t_rm, rss_rm, rm_bytes))
            print(rows[-1], flush=True)

    mb = 1 / 2 ** 20
    report = [
        f"# Index updates today (`python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`)".rstrip(),
        "",
        f"Synthetic catalogs; `index add` of {args.change} new products, then `index remove` of them; every command a "
        "fresh process (so each time includes loading Python, torch and MiniLM), run alone on this machine.",
        "",
        "| lines | products | passages | index MB | build s | add s | add / build | add wrote MB | remove s "
        "| remove wrote MB | peak RSS build / add / remove MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (lines, n, p, size, tb, rb, ta, ra, ab, tr, rr, rmb) in rows:
        report.append(f"| {lines:,} | {n:,} | {p:,} | {size * mb:.1f} | {tb:.1f} | {ta:.1f} | {ta / tb:.2f} | "
                      f"{ab * mb:.1f} | {tr:.1f} | {rmb * mb:.1f} | {rb * mb:.0f} / {ra * mb:.0f} / {rr * mb:.0f} |")
    report += ["", "An update writes a whole new version (\"add wrote MB\" is the new version's size, about the "
               "index's): its cost follows the catalog's size, not the change's."]
    write_result("update.md", "\n".join(report))


if __name__ == "__main__":
    main()
