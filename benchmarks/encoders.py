"""Which encoders embed titles and description passages, and how passages are cut: retrieval quality
on the real records against today's index, and embedding throughput, in one run.

    python benchmarks/encoders.py [--combos minilm/minilm,minilm/static,...] [--workdir /tmp/productqa-enc]

1. Quality: for each title encoder / passage encoder [/ passage split, default tokens],
   `productqa index build` of the real records
   (../shared, prepared as docs/data.md says; the learned fusion trained on that index as usual), then
   `productqa eval retrieval --modes hybrid` with the hand-written questions: hit@1 per kind, about the
   products the ranker never trained on. The bounds (issue 22) against minilm/minilm, today's index:
   every naming kind within 0.01, every describing kind within 0.02, hand-written description questions
   (hand_desc, handwritten) within 0.05.
2. Speed: each encoder over the real titles and the real description passages (repeated to a few
   thousand texts), texts/s and the ratio to minilm, same process, one after the other, nothing else running.

Writes benchmarks/results/encoders.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "amazontitles"
EXTRA = ["tests/indexing/data/description_questions.json", "tests/indexing/data/heldout_questions.json"]
COMBOS = ("minilm/minilm,minilm/minilm-int8,minilm/static,minilm/none,minilm-int8/static,static/static,"
          "minilm/static/chars,static/static/chars,static/none/chars")
HAND_DESC = ("hand_desc", "handwritten")


def bound(kind: str) -> float:
    from indexing.evaluate import DESCRIBING

    return 0.05 if kind in HAND_DESC else 0.02 if kind in DESCRIBING else 0.01


def quality(work: Path, combos: list[str]) -> dict:
    cli = [sys.executable, "-m", "ui.cli"]
    catalog = work / "catalog"
    if not (catalog / "catalog.parquet").exists():
        subprocess.run(cli + ["prepare", "--input", str(SHARED / "trn_first500_title_content_alpaca.json"),
                              "--input", str(SHARED / "trn_raw_lines_from_readme.jsonl"), "--out", str(catalog),
                              "--quiet"], check=True)
    out = {}
    for combo in combos:
        t, p, split = (combo.split("/") + ["tokens"])[:3]
        name = f"{t}_{p}" + ("" if split == "tokens" else f"_{split}")
        index = work / f"index_{name}"
        if not (index / "CURRENT").exists():
            t0 = time.time()
            subprocess.run(cli + ["index", "build", "--catalog", str(catalog), "--out", str(index), "--quiet",
                                  "--title-encoder", t, "--passage-encoder", p, "--passage-split", split],
                           check=True, stdout=subprocess.DEVNULL)
            print(f"{combo}: built in {time.time() - t0:.0f} s", flush=True)
        report = work / f"eval_{name}.json"
        if not report.exists():
            subprocess.run(cli + ["eval", "retrieval", "--index", str(index), "--catalog", str(catalog), "--modes",
                                  "hybrid", "--json", str(report)] + [a for e in EXTRA for a in ("--extra", e)],
                           check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        meta = json.loads((index / "versions" / (index / "CURRENT").read_text().strip() / "meta.json").read_text())
        out[combo] = {"report": json.loads(report.read_text())["report"]["hybrid"], "build": meta["build_seconds"]}
    return out


def speed(work: Path, kinds: list[str], n_titles: int, n_passages: int) -> dict:
    import numpy as np
    import pandas as pd

    from indexing.embed import embed, encoder_identity, load_kind
    from indexing.texts import Splitter, passage_texts

    docs = pd.read_parquet(work / "catalog" / "catalog.parquet")
    docs = docs[docs["content"].str.len() > 0].reset_index(drop=True)
    parts = Splitter().split_many(np.arange(len(docs)), docs["content"])
    passages = passage_texts(dict(enumerate(docs["content"])), parts)
    titles = (docs["title"].tolist() * (n_titles // len(docs) + 1))[:n_titles]
    passages = (passages * (n_passages // len(passages) + 1))[:n_passages]
    out = {}
    for kind in kinds:
        model = load_kind(encoder_identity(kind))
        embed(model, titles[:64])
        row = {}
        for name, texts in (("titles", titles), ("passages", passages)):
            t0 = time.perf_counter()
            embed(model, texts)
            row[name] = len(texts) / (time.perf_counter() - t0)
        out[kind] = row
        print(kind, {k: round(v) for k, v in row.items()}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--combos", default=COMBOS, help="title/passage encoder pairs, comma-separated")
    ap.add_argument("--workdir", default="/tmp/productqa-enc")
    ap.add_argument("--titles", type=int, default=4000, help="titles embedded per encoder for the speed table")
    ap.add_argument("--passages", type=int, default=1000, help="passages embedded per encoder for the speed table")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is missing: this benchmark needs the real records")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    combos = [c.strip() for c in args.combos.split(",") if c.strip()]
    q = quality(work, combos)
    s = speed(work, ["minilm", "minilm-int8", "static"], args.titles, args.passages)

    from indexing.evaluate import DESCRIBING, KINDS, NAMING

    base = q[combos[0]]["report"]
    kinds = [k for k in KINDS if k in base]
    lines = [f"Real records (498 products), this machine ({os.cpu_count()} CPUs, no GPU), nothing else running. "
             f"Command: `python benchmarks/encoders.py --combos {args.combos}`", "",
             "## Retrieval, hit@1 per kind (hybrid, learned fusion; products the ranker never trained on)", "",
             f"Bounds against {combos[0]}: naming kinds within 0.01, describing within 0.02, hand-written description "
             "questions (hand_desc, handwritten) within 0.05. A cell in bold is outside its bound.", "",
             "| titles / passages [/ split] | " + " | ".join(kinds) + " | by name | by description | within bounds |",
             "|---|" + "---:|" * (len(kinds) + 3)]
    for combo in combos:
        r = q[combo]["report"]
        cells, ok = [], True
        for k in kinds:
            bad = base[k]["hit@1"] - r[k]["hit@1"] > bound(k) + 1e-9
            ok &= not bad
            cells.append(f"**{r[k]['hit@1']:.3f}**" if bad else f"{r[k]['hit@1']:.3f}")
        lines.append(f"| {combo} | " + " | ".join(cells) + f" | {r['names']['hit@1']:.3f} | "
                     f"{r['descriptions']['hit@1']:.3f} | {'yes' if ok else 'no'} |")
    lines += ["", f"naming kinds: {', '.join(k for k in kinds if k in NAMING or k == 'hand_name')}; describing: "
              f"{', '.join(k for k in kinds if k in DESCRIBING)}; hand-written description: {', '.join(HAND_DESC)}.",
              "", "## Embedding throughput (texts/s, same process, one after the other)", "",
              f"Real titles repeated to {args.titles:,}; real description passages (≤ 128 tokens) repeated to "
              f"{args.passages:,}.", "", "| encoder | titles/s | ratio | passages/s | ratio |",
              "|---|---:|---:|---:|---:|"]
    for kind, row in s.items():
        lines.append(f"| {kind} | {row['titles']:,.0f} | {row['titles'] / s['minilm']['titles']:.2f}x | "
                     f"{row['passages']:,.0f} | {row['passages'] / s['minilm']['passages']:.2f}x |")
    report = "\n".join(lines)
    print(report)
    (ROOT / "benchmarks" / "results" / "encoders.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
