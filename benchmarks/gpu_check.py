"""The GPU figures of a full build, measured in a few minutes on a CUDA machine (benchmarks/gpu_check.sh runs it).

    python benchmarks/gpu_check.py [--device cuda] [--out gpu_check.md] [--quick]

1. MiniLM (all-MiniLM-L6-v2, the packaged model) throughput on titles and on description passages of the
   synthetic catalog's token counts (benchmarks/prepare.py's generator), fp16 as `index build` runs it on CUDA,
   and what it makes of the full build's embedding stage (2,205,328 titles + the passages of 1.37M
   descriptions, the full-scale run's counts);
2. one LoRA fine-tuning step of the base model's architecture (SmolLM2-135M, Llama) in bf16: peft LoRA r=16 on
   every projection, AdamW, a batch of 8 x 512 tokens; the weights are random (the step's time does not depend
   on them, and no weights have to travel to the machine);
3. `productqa index build --device cuda` of a 10,000-line synthetic slice (prepare + build), its stages.

Nothing is downloaded: the packages the machine lacks travel as wheels and the model as an fp16 copy
(`make gpu-wheels`; benchmarks/gpu_check.sh says how they travel).
`--device cpu --quick` runs the same code small on a CPU (tests it here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
FULL_TITLES, FULL_PASSAGES = 2_205_328, 2_214_322  # the full-scale run's products and passages (docs/results.md)
# SmolLM2-135M-Instruct's architecture (its GGUF's metadata: rag/model.py converts it)
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
               tie_word_embeddings=True, rms_norm_eps=1e-5)


def texts(model_dir: Path, n: int, words: int, seed: int) -> list[str]:
    """`n` synthetic texts of `words` words from the model's whole-word vocabulary, Zipf-weighted (as
    benchmarks/prepare.py's generator)."""
    import numpy as np

    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    ws = [w for w, _ in sorted(vocab.items(), key=lambda x: x[1]) if w.isalpha() and w.isascii() and len(w) > 1]
    p = 1 / np.arange(1, len(ws) + 1)
    pool = np.random.default_rng(seed).choice(ws, size=n * words, p=p / p.sum())
    return [" ".join(pool[i * words: (i + 1) * words]) for i in range(n)]


def model_dir(given: str | None) -> Path:
    """The MiniLM folder: --model, else the packaged one, else .gpu-model/ (`make gpu-wheels` writes it)."""
    if given:
        return Path(given)
    try:
        from indexing.embed import default_model_path

        return default_model_path()
    except Exception:  # the package is not installed here: the fp16 copy that travelled
        return ROOT / ".gpu-model"


def throughput(device: str, folder: Path, n_titles: int, n_passages: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from indexing.embed import embed

    model = SentenceTransformer(str(folder), device=device)
    out = {}
    for name, n, words, batch in (("titles", n_titles, 9, 256), ("passages", n_passages, 100, 128)):
        xs = texts(folder, n, words, seed=len(name))
        embed(model, xs[:batch], batch, "auto")  # warm-up (kernels, autotuning)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        embed(model, xs, batch, "auto")
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = n / (time.perf_counter() - t0)
    out["full_embedding_s"] = FULL_TITLES / out["titles"] + FULL_PASSAGES / out["passages"]
    return out


def lora_step(device: str, steps: int, batch: int = 8, tokens: int = 512) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bf16 matmuls crawl on a CPU (the script's check)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2)).to(device=device, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(0, SMOLLM2["vocab_size"], (batch, tokens), device=device)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]
    return {"step_s": step, "tokens_per_s": batch * tokens / step, "batch": batch, "tokens": tokens,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def slice_build(device: str, folder: Path, lines: int) -> dict:
    from prepare import generate

    cli = [sys.executable, "-m", "ui.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "trn.jsonl", lines)
        t0 = time.perf_counter()
        subprocess.run(cli + ["prepare", "--input", str(tmp / "trn.jsonl"), "--out", str(tmp / "cat"), "--quiet"],
                       check=True, cwd=ROOT)
        prepared = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(cli + ["index", "build", "--catalog", str(tmp / "cat"), "--out", str(tmp / "idx"), "--quiet",
                              "--device", device, "--model", str(folder)], check=True, cwd=ROOT)
        built = time.perf_counter() - t0
        v = (tmp / "idx" / "CURRENT").read_text().strip()
        meta = json.loads((tmp / "idx" / "versions" / v / "meta.json").read_text())
    return {"prepare_s": prepared, "build_s": built, "products": meta["count"], "stages": meta["build_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.md"))
    ap.add_argument("--model", help="the MiniLM folder (default: the packaged one, else .gpu-model/)")
    ap.add_argument("--quick", action="store_true", help="small counts (a check of the script, not a measurement)")
    args = ap.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device here (run it where one is, or --device cpu --quick)")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    q = args.quick
    t0 = time.perf_counter()
    folder = model_dir(args.model)
    emb = throughput(args.device, folder, 2_000 if q else 100_000, 200 if q else 20_000)
    print(json.dumps(emb), flush=True)
    step = lora_step(args.device, 2 if q else 10, batch=1 if q else 8, tokens=64 if q else 512)
    print(json.dumps(step), flush=True)
    build = slice_build(args.device, folder, 100 if q else 10_000)
    print(json.dumps(build), flush=True)
    lines = [f"`python benchmarks/gpu_check.py --device {args.device}{' --quick' if q else ''}` on {name} "
             f"(torch {torch.__version__}), {time.perf_counter() - t0:.0f} s in all.", "",
             "| measurement | value |", "|---|---:|",
             f"| MiniLM titles/s ({'fp16' if args.device == 'cuda' else 'bf16 autocast'}, batch 256) | "
             f"{emb['titles']:,.0f} |",
             f"| MiniLM passages/s (~100 words, batch 128) | {emb['passages']:,.0f} |",
             f"| → the full build's embedding ({FULL_TITLES:,} titles + {FULL_PASSAGES:,} passages) | "
             f"{emb['full_embedding_s'] / 60:,.1f} min |",
             f"| LoRA step, SmolLM2-135M architecture, {'bf16' if args.device == 'cuda' else 'fp32'}, "
             f"{step['batch']} x {step['tokens']} tokens | "
             f"{step['step_s'] * 1000:,.0f} ms ({step['tokens_per_s']:,.0f} tokens/s) |",
             f"| `index build --device {args.device}`, {build['products']:,}-product slice | {build['build_s']:,.1f} s "
             f"(prepare {build['prepare_s']:,.1f} s) |",
             "", "Build stages (meta.json `build_seconds`): " + ", ".join(f"{k} {v:,.1f} s"
                                                                           for k, v in build["stages"].items())]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
