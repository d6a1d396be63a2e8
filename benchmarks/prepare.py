"""Benchmark `productqa prepare` against the usual notebook recipe, on a trn.json-sized file.

    python benchmarks/prepare.py                 # 2,248,619 lines (full size), ~1.2 GB file in /tmp
    python benchmarks/prepare.py --lines 200000  # quicker

Generates (once, cached) a synthetic file shaped like the real trn.json: title and description
lengths drawn from log-normals fitted to the published statistics (title median 54 / mean 61,
description median 398 / mean 619 characters), words drawn Zipf-wise from the embedding model's
vocabulary plus made-up words (brand and character names), so a text holds as many model tokens per
character as the real ones, a little more (the 498 real records: titles 0.23, descriptions 0.22 model
tokens per character; this generator: titles 0.25, descriptions 0.24; the first generator's random letter strings gave
titles ~0.58, which made every embedding benchmark ~2.4x too slow), ~38% empty descriptions, ~1.7% duplicate records,
HTML entities in ~18% of descriptions, Amazon edition footers in ~24% and stray double spaces in
~18% (the rates measured on the 500 real records in ../shared), and target_ind lists.

Then, in the same run, measures wall time, records/s and peak RSS (the whole process tree, polled)
of `productqa prepare` and of the baseline: `json.loads` every line into a list, `pandas.DataFrame`,
`dropna`, strip-filter, `drop_duplicates`. Prints a Markdown table and writes it to
benchmarks/results/prepare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FULL_LINES = 2_248_619
GENERATOR = 2  # bump when generate() changes: cached files carry it in their name (synth_file)
ROOT = Path(__file__).resolve().parent.parent


def synth_file(work: Path, lines: int) -> Path:
    """Where the cached synthetic file of `lines` lines lives in `work`."""
    return Path(work) / f"trn_synth_v{GENERATOR}_{lines}.jsonl"


def word_pool(rng, n_words: int, made_up: float) -> str:
    """n_words words: the embedding model's whole-word vocabulary, Zipf-weighted in its order (roughly by
    frequency), and a share `made_up` of 3,000 invented words (several tokens each, like names)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from indexing.embed import default_model_path

    vocab = json.loads((default_model_path() / "tokenizer.json").read_text())["model"]["vocab"]
    words = [w for w, _ in sorted(vocab.items(), key=lambda x: x[1]) if w.isalpha() and w.isascii() and len(w) > 1]
    made = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=n)) for n in rng.integers(4, 11, 3000)]
    p = 1 / np.arange(1, len(words) + 1)
    p = np.concatenate([p / p.sum() * (1 - made_up), np.full(len(made), made_up / len(made))])
    return " ".join(rng.choice(words + made, size=n_words, p=p))


def generate(path: Path, lines: int, seed: int = 0) -> None:
    """Write a trn.json-like file of `lines` lines (vectorised: slices of big random texts)."""
    import numpy as np
    import orjson

    rng = np.random.default_rng(seed)
    pool = word_pool(rng, 4_000_000, made_up=0.1)  # descriptions: 0.24 tokens per character (real 0.22)
    titles = word_pool(rng, 1_000_000, made_up=0.1)  # titles: 0.25 (real 0.23)
    n_pool = len(pool)
    entities = ["&#8217;", "&#x2019;", "&#8220;", "&#8221;", "&mdash;", "&amp;", "&#151;", "&quot;", "&#160;", "&copy;"]
    footers = ["--This text refers to thePaperbackedition.", "--This text refers to theHardcoveredition.",
               "--This text refers to an out of print or unavailable edition of this title."]

    # log-normal(mu, sigma) with median exp(mu) and mean exp(mu + sigma^2 / 2)
    t_len = np.clip(rng.lognormal(np.log(54), np.sqrt(2 * np.log(61 / 54)), lines), 4, 400).astype(int)
    c_len = np.clip(rng.lognormal(np.log(398), np.sqrt(2 * np.log(619 / 398)), lines), 5, 20_000).astype(int)
    empty = rng.random(lines) < 0.38
    t_off = rng.integers(0, len(titles) - 500, lines)
    c_off = rng.integers(0, n_pool - 20_001, lines)
    u = rng.random((lines, 4))
    n_targets = rng.integers(1, 30, lines)
    prev = []
    with open(path, "wb") as f:
        for i in range(lines):
            if prev and u[i, 3] < 0.017:  # duplicate of an earlier record, under a new uid
                title, content = prev[int(u[i, 0] * len(prev))]
            else:
                title = titles[t_off[i]: t_off[i] + t_len[i]].strip().capitalize()
                if empty[i]:
                    content = ""
                else:
                    content = pool[c_off[i]: c_off[i] + c_len[i]]
                    if u[i, 0] < 0.18:
                        k = len(content) // 2
                        content = content[:k] + entities[i % len(entities)] + content[k:]
                    if u[i, 1] < 0.18:
                        content = content.replace(" ", "  ", 1)
                    if u[i, 2] < 0.24:
                        content += footers[i % len(footers)]
                if len(prev) < 100_000:
                    prev.append((title, content))
                elif i % 7 == 0:
                    prev[i % 100_000] = (title, content)
            targets = list(range(i % 1000, i % 1000 + int(n_targets[i])))
            f.write(orjson.dumps({"uid": f"{i:010d}", "title": title, "content": content,
                                  "target_ind": targets, "target_rel": [1.0] * len(targets)}))
            f.write(b"\n")


def baseline(path: str) -> int:
    """The usual notebook recipe; returns the number of records kept."""
    import pandas as pd

    records = []
    with open(path) as f:
        for line in f:
            records.append(json.loads(line))
    df = pd.DataFrame(records)
    df = df.dropna(subset=["title", "content"])
    df = df[df["title"].str.strip() != ""]
    df = df[df["content"].str.strip() != ""]
    df = df.drop_duplicates(subset=["title", "content"])
    return len(df)


def write_result(name: str, report: str) -> Path:
    """Print a benchmark's table and write it to benchmarks/results/NAME (what the README quotes)."""
    print(report)
    out = Path(__file__).resolve().parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    return out


def run_measured(cmd: list[str], peaks: dict | None = None) -> tuple[float, int, str]:
    """Run `cmd`, polling the RSS of it and its children; return (seconds, peak RSS bytes, stdout).
    `peaks`, when given, receives {pid: (command line, peak RSS bytes)} of every process in the tree."""
    import psutil

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc, peak = psutil.Process(p.pid), 0
    while p.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = {c.pid: c.memory_info().rss for c in procs}
            peak = max(peak, sum(rss.values()))
            if peaks is not None:
                for c in procs:
                    old = peaks.get(c.pid, ("", 0))[1]
                    peaks[c.pid] = (" ".join(c.cmdline()), max(old, rss[c.pid]))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = p.stdout.read()
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed with exit code {p.returncode}")
    return secs, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=FULL_LINES, help="lines in the synthetic trn.json")
    ap.add_argument("--workdir", default="/tmp/productqa-bench", help="where the synthetic file and catalog go")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-only", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_only:
        print(baseline(args.baseline_only))
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = synth_file(work, args.lines)
    if not data.exists():
        print(f"generating {data} ({args.lines:,} lines) ...", flush=True)
        t = time.perf_counter()
        generate(data.with_suffix(".tmp"), args.lines)
        os.replace(data.with_suffix(".tmp"), data)
        print(f"  {time.perf_counter() - t:.0f} s, {data.stat().st_size / 1e9:.2f} GB", flush=True)

    rows = []
    exe = [sys.executable, "-m", "ui.cli", "prepare", "--input", str(data), "--out", str(work / "catalog"), "--quiet"]
    secs, peak, out = run_measured(exe)
    stats = json.loads((work / "catalog" / "stats.json").read_text())
    rows.append(("productqa prepare", secs, peak, stats["records"]))
    print(out.strip().splitlines()[-3], flush=True)
    if not args.skip_baseline:
        secs, peak, out = run_measured([sys.executable, __file__, "--baseline-only", str(data)])
        rows.append(("baseline (json.loads + pandas)", secs, peak, int(out.strip())))

    base = rows[-1][1] if len(rows) > 1 else None
    lines = [f"Input: synthetic trn.json, {args.lines:,} lines, {data.stat().st_size / 1e9:.2f} GB; "
             f"{os.cpu_count()} CPUs. Command: `python benchmarks/prepare.py --lines {args.lines}`", "",
             "| pipeline | wall time (s) | records/s | peak RSS (MB) | records kept | speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, secs, peak, kept in rows:
        ratio = f"{base / secs:.2f}x" if base else "n/a"
        lines.append(f"| {name} | {secs:.1f} | {args.lines / secs:,.0f} | {peak / 2**20:,.0f} | {kept:,} | {ratio} |")
    write_result("prepare.md", "\n".join(lines))


if __name__ == "__main__":
    main()
