"""Benchmark index updates (deltas, tombstones, compaction) against rebuilding the same catalog.

    python benchmarks/update.py                          # 20,000 synthetic lines (~12k products), ~15 min on 2 cores
    python benchmarks/update.py --lines 4000 --adds 10 200 --remove 200     # quicker

Synthetic trn.json lines (benchmarks/prepare.py's generator) -> `productqa prepare` -> `productqa index
build` (the base). Then, each a fresh `productqa` process, one after another, alone on the machine:
`index add --no-compact` of each --adds batch of new products, `index remove --no-compact` of
--remove of them, `index compact`; and a full `index build` of the final catalog (the baseline the
issue compares with). For each: wall time, peak RSS, and the bytes the command wrote (files of the
new version whose inode the previous version did not have: the rest are shared hard links).
In this process (an `indexing.follow.Follower` polling every second): how long after an add's commit
a serving process answers from the new version, and search p50 over --queries questions with the
deltas before and after compaction. Writes benchmarks/results/update.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def files(folder: Path) -> dict:
    return {p.stat().st_ino: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def new_products(path: Path, start: int, n: int) -> list[str]:
    uids = [f"NEW{i:07d}" for i in range(start, start + n)]
    with open(path, "w") as f:
        for i, u in zip(range(start, start + n), uids):
            f.write(json.dumps({"uid": u, "title": f"Benchmark Marimba Number {i} in Quartz",
                                "content": f"A new product added by the update benchmark, number {i}: a wooden "
                                           f"marimba with {i % 17 + 5} quartz bars, for ages {i % 5 + 2} and up."})
                    + "\n")
    return uids


def p50_search(index, questions: list[str]) -> float:
    index.retrieve_many(questions[:8], k=5)  # warm
    times = []
    for q in questions:
        t0 = time.perf_counter()
        index.retrieve(q, k=5)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    from prepare import generate, run_measured, write_result

    from indexing.follow import Follower
    from indexing.search import load_index
    from indexing.store import current_version, live_folder, read_meta

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20_000, help="synthetic trn.json lines of the base catalog")
    ap.add_argument("--adds", type=int, nargs="+", default=[10, 1000], help="products per add, in order")
    ap.add_argument("--remove", type=int, default=1000, help="products removed afterwards (from the added ones)")
    ap.add_argument("--queries", type=int, default=200, help="questions for the search p50")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "ui.cli"]
    rows, notes = [], []
    mb = 1 / 2 ** 20
    with tempfile.TemporaryDirectory(prefix="productqa-update-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "trn.json", args.lines, seed=1)
        run_measured(cli + ["prepare", "--input", str(tmp / "trn.json"), "--out", str(tmp / "cat")])
        index = tmp / "index"

        def step(name: str, cmd: list[str]):
            before = files(live_folder(index)) if (index / "CURRENT").exists() else {}
            secs, rss, out = run_measured(cli + cmd)
            now = files(live_folder(index))
            wrote = sum(size for ino, size in now.items() if ino not in before)
            meta = read_meta(index)
            rows.append((name, secs, rss, wrote, sum(now.values()), meta["count"]))
            print(rows[-1], flush=True)
            return out

        step("index build (the base)",
             ["index", "build", "--catalog", str(tmp / "cat"), "--out", str(index), "--quiet"])
        base_meta = read_meta(index)
        swaps = []  # (wall time, version) of each swap the serving side made
        follower = Follower(index, reload_seconds=1.0,
                            log=lambda m: swaps.append((time.time(), follower.current.version)))
        questions = [f"What is '{t}'?" for t in follower.current.docs["title"].sample(
            min(args.queries, len(follower)), random_state=0)]
        added, start = [], 0
        for n in args.adds:
            uids = new_products(tmp / f"add{n}.jsonl", start, n)
            start += n
            added += uids
            step(f"index add --no-compact: {n:,} products",
                 ["index", "add", "--index", str(index), "--input", str(tmp / f"add{n}.jsonl"), "--quiet",
                  "--no-compact"])
            t0, v = time.perf_counter(), current_version(index)
            while follower.current.version != v and time.perf_counter() - t0 < 120:
                time.sleep(0.05)
            committed = (index / "CURRENT").stat().st_mtime  # the commit point: CURRENT replaced
            served = next((t for t, ver in swaps if ver == v), float("nan"))
            notes.append(f"after the {n:,}-product add: a Follower polling every 1 s served version {v} "
                         f"{served - committed:.1f} s after its commit (poll wait + loading and merging the version)")
        step(f"index remove --no-compact: {args.remove:,} products",
             ["index", "remove", "--index", str(index), "--no-compact", "--uid", *added[: args.remove]])
        with_deltas = load_index(index)
        d_meta = read_meta(index)
        p50_d = p50_search(with_deltas, questions)
        del with_deltas
        step("index compact", ["index", "compact", "--index", str(index)])
        compacted = load_index(index)
        p50_c = p50_search(compacted, questions)
        final = compacted.docs
        with open(tmp / "final.jsonl", "w") as f:
            for u, t, c in zip(final["uid"], final["title"], final["content"]):
                f.write(json.dumps({"uid": u, "title": t, "content": c}) + "\n")
        del compacted
        follower.close()
        run_measured(cli + ["prepare", "--input", str(tmp / "final.jsonl"), "--out", str(tmp / "final_cat")])
        index = tmp / "rebuilt"
        step("index build of the final catalog (baseline)",
             ["index", "build", "--catalog", str(tmp / "final_cat"), "--out", str(index), "--quiet"])

    rebuild_s, rebuild_bytes = rows[-1][1], rows[-1][3]
    report = [
        f"# Index updates: deltas, tombstones, compaction (`python benchmarks/{Path(__file__).name}"
        f" {shlex.join(sys.argv[1:])}`)".replace(" `)", "`)"),
        "",
        f"Synthetic catalog: {args.lines:,} trn.json lines -> a {base_meta['count']:,}-product base "
        f"({base_meta['passages']['count']:,} passages). Every command a fresh process (its time includes loading "
        "Python, torch and MiniLM), one after another, alone on this 2-core machine. \"wrote\": bytes of the new "
        "version's files that the previous version did not have (the rest are hard links to it).",
        "",
        "| command | s | vs rebuild | wrote MB | vs rebuild | version MB | products after | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, secs, rss, wrote, size, count in rows:
        report.append(f"| {name} | {secs:.1f} | {secs / rebuild_s:.1%} | {wrote * mb:.2f} "
                      f"| {wrote / rebuild_bytes:.1%} | {size * mb:.1f} | {count:,} | {rss * mb:.0f} |")
    report += ["", *[f"- {n}" for n in notes],
               f"- search p50 over {len(questions)} naming questions (hybrid, k=5, one at a time): {p50_d:.1f} ms with "
               f"{len(d_meta.get('deltas', []))} deltas and {d_meta.get('tombstones', 0):,} tombstones, {p50_c:.1f} ms "
               "after compaction"]
    write_result("update.md", "\n".join(report))


if __name__ == "__main__":
    main()
