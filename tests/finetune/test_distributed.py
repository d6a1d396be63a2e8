"""Training with several processes: real 2-process DDP runs over gloo on this CPU (accelerate launch,
started by `productqa finetune --num-processes 2`), and the shipped accelerate configs."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def ddp_finetune(demo_catalog, demo_index, base, out, *extra, timeout=900):
    cmd = [sys.executable, "-m", "ui.cli", "finetune", "--catalog", str(demo_catalog), "--index", str(demo_index),
           "--out", str(out), "--base-model", str(base), "--num-processes", "2", "--max-products", "40", "--k", "1",
           "--batch-size", "2", "--max-val-examples", "4", "--quiet", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def adapters_written(root):
    """Every adapter folder under `root`, trainer checkpoints aside."""
    return sorted(f.parent for f in root.rglob("adapter_model.safetensors") if "checkpoints" not in f.parts)


def generates(base, adapter):
    import torch
    from peft import PeftModel

    from rag.model import load_model
    from rag.prompt import build_prompt

    model, tok = load_model(base, four_bit=True, device="cpu")
    model = PeftModel.from_pretrained(model, str(adapter))
    ids = tok(build_prompt("What is 'X'?", [("X", "A thing.")]), return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return gen.shape[1] > ids["input_ids"].shape[1]


def mean(xs):
    return sum(xs) / len(xs)


def test_two_process_ddp_tiny_llama_4bit_then_resume(demo_catalog, demo_index, tiny_llama, tmp_path):
    out = tmp_path / "adapter"
    r = ddp_finetune(demo_catalog, demo_index, tiny_llama, out, "--max-steps", "16", "--eval-steps", "8",
                     "--save-steps", "8", "--lr", "5e-3", "--warmup-steps", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "process 0 of 2" in r.stderr and "process 1 of 2" in r.stderr  # both joined the gloo group
    assert r.stdout.count("adapter: ") == 1  # process 0 reports, once
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["world_size"] == 2 and meta["effective_batch_size"] == 2 * 2 * 1
    assert meta["four_bit"] and meta["global_step"] == 16
    losses = [h["loss"] for h in meta["loss_history"] if "loss" in h]
    evals = [h["eval_loss"] for h in meta["loss_history"] if "eval_loss" in h]
    assert mean(losses[-4:]) < mean(losses[:4]) and evals[-1] < evals[0], (losses, evals)
    assert adapters_written(tmp_path) == [out]  # one adapter folder, written once
    assert generates(tiny_llama, out)

    # --resume under DDP: continues from the latest checkpoint (step 16) to step 24, no step repeated
    r = ddp_finetune(demo_catalog, demo_index, tiny_llama, out, "--max-steps", "24", "--eval-steps", "8",
                     "--save-steps", "8", "--lr", "5e-3", "--warmup-steps", "0", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "training_meta.json").read_text())
    steps = [h["step"] for h in meta["loss_history"] if "loss" in h]
    assert meta["global_step"] == 24 and meta["world_size"] == 2
    assert steps == list(range(1, 25)), steps


@pytest.mark.slow
@pytest.mark.long  # 230 s; two processes are covered by the tiny-Llama run, SmolLM2 4-bit by test_train
def test_two_process_ddp_smollm2_4bit_loss_decreases(demo_catalog, demo_index, smollm2_path, tmp_path):
    out = tmp_path / "adapter"
    r = ddp_finetune(demo_catalog, demo_index, smollm2_path, out, "--max-steps", "12", "--eval-steps", "6",
                     "--save-steps", "6", "--lr", "1e-3", "--warmup-steps", "2", "--max-products", "12")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "process 0 of 2" in r.stderr and "process 1 of 2" in r.stderr
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["world_size"] == 2 and meta["four_bit"] and meta["base_model"]["name"] == "SmolLM2-135M-Instruct"
    losses = [h["loss"] for h in meta["loss_history"] if "loss" in h]
    assert len(losses) == 12 and mean(losses[-4:]) < 0.8 * mean(losses[:4]), losses
    assert adapters_written(tmp_path) == [out]
    assert generates(smollm2_path, out)


def test_launch_errors_are_one_line(demo_catalog, demo_index, tmp_path):
    base = [sys.executable, "-m", "ui.cli", "finetune", "--catalog", str(demo_catalog), "--index", str(demo_index),
            "--out", str(tmp_path / "a"), "--quiet"]
    (tmp_path / "scalar.yaml").write_text("hello\n")
    for extra, says in ((["--num-processes", "2", "--accelerate-config", "nope"], "no such file"),
                        (["--num-processes", "2", "--accelerate-config", str(tmp_path / "scalar.yaml")],
                         "not an accelerate config file"),
                        (["--examples", str(tmp_path)], "not an examples folder"),
                        (["--num-processes", "0", "--accelerate-config", "ddp_cpu"], "must be >= 1"),
                        (["--num-processes", "2", "--save-steps", "7", "--eval-steps", "5"], "multiple of")):
        r = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- the shipped accelerate configs: read by accelerate itself, and what they make `finetune` do

def launcher_env(name: str) -> dict:
    """The environment `accelerate launch --config_file <shipped NAME>` gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    from finetune.train import ACCELERATE_CONFIGS

    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE_CONFIGS[name]), "-m", "ui.cli"])
    args, _, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ""
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


@pytest.mark.parametrize("name, kind, sharded", [
    ("ddp_cpu", "MULTI_GPU", False),  # accelerate's torchrun launcher; use_cpu -> gloo (see the file)
    ("ddp_gpu", "MULTI_GPU", False),
    ("fsdp_qlora", "FSDP", True),
    ("deepspeed_zero2", "DEEPSPEED", False),
    ("deepspeed_zero3", "DEEPSPEED", True),
])
def test_shipped_configs(name, kind, sharded, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    from finetune.train import ACCELERATE_CONFIGS, sharded_training

    c = load_config_from_file(str(ACCELERATE_CONFIGS[name]))
    assert c.distributed_type.name == kind and c.num_machines == 1
    assert c.use_cpu == (name == "ddp_cpu")
    try:
        env = launcher_env(name)
    except (ImportError, ModuleNotFoundError) as e:  # DeepSpeed's launcher wants deepspeed installed
        pytest.skip(f"{name}: {e}")
    for k in [k for k in env if k.startswith("ACCELERATE_")]:
        monkeypatch.setenv(k, env[k])
    assert sharded_training() is sharded


def test_sharded_4bit_weights_are_stored_in_the_compute_dtype(tiny_llama):
    """FSDP-QLoRA: FSDP shards one float dtype, so the 4-bit weights are kept in bf16/fp32 storage."""
    import torch

    from rag.model import load_model

    model, _ = load_model(tiny_llama, four_bit=True, device="cpu", sharded=True)
    q = model.model.layers[0].self_attn.q_proj.weight
    assert q.__class__.__name__ == "Params4bit" and q.dtype == torch.float32
    model, _ = load_model(tiny_llama, four_bit=True, device="cpu")
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.uint8


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_command_stops_every_training_process(sig, demo_catalog, demo_index, tiny_llama, tmp_path):
    import signal
    import time

    import psutil

    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "ui.cli", "finetune", "--catalog", str(demo_catalog), "--index", str(demo_index),
           "--out", str(out), "--base-model", str(tiny_llama), "--num-processes", "2", "--max-products", "40",
           "--k", "1", "--batch-size", "2", "--max-steps", "100000", "--quiet"]
    # the command runs as a foreground job of a terminal does: SIGINT at its default. A test run started
    # in the background by a non-interactive shell (`make test &`, nohup, some CI runners) inherits
    # SIGINT *ignored*, and Python then never raises KeyboardInterrupt: Ctrl-C cannot reach such a job
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def mine():
        return [q for q in psutil.process_iter(["cmdline"]) if str(out) in " ".join(q.info["cmdline"] or [])
                and q.pid != p.pid]

    try:
        deadline = time.time() + 300
        while time.time() < deadline and len([q for q in mine() if "-u" in q.info["cmdline"]]) < 2:
            time.sleep(0.5)
        assert len(mine()) >= 2  # the launcher and its training processes are up
        time.sleep(3)
        p.send_signal(getattr(signal, sig))  # SIGINT: what Ctrl-C sends
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130 and "--resume" in err.splitlines()[-1] and "Traceback" not in err, err[-2000:]
        deadline = time.time() + 60
        while time.time() < deadline and mine():
            time.sleep(0.5)
        assert not mine()
    finally:  # a failure must not leave training processes slowing every later test
        for q in mine():
            q.kill()
        p.kill()
