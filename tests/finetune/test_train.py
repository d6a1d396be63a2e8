"""Real training runs: a tiny random Llama (fast paths: 4-bit, merge, resume) and SmolLM2 in 4-bit on CPU."""

import json
import signal
import subprocess
import sys
import time

import pytest

from finetune.train import TrainConfig, finetune
from tests.conftest import ROOT


def cfg(demo_catalog, demo_index, out, **kw):
    base = dict(catalog=str(demo_catalog), index=str(demo_index), out=str(out), max_products=40, k=1,
                batch_size=2, eval_steps=5, save_steps=5, max_val_examples=4, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_llama_4bit_run_writes_a_complete_adapter(demo_catalog, demo_index, tiny_llama, tmp_path):
    out = tmp_path / "adapter"
    meta = finetune(cfg(demo_catalog, demo_index, out, base_model=str(tiny_llama), max_steps=6, merge=True))
    for f in ("adapter_model.safetensors", "adapter_config.json", "training_meta.json", "loss.png",
              "merged/config.json", "merged/model.safetensors"):
        assert (out / f).exists(), f
    saved = json.loads((out / "training_meta.json").read_text())
    assert saved["global_step"] == 6 and saved["four_bit"] is True
    assert saved["base_model"]["path"] == str(tiny_llama) and len(saved["base_model"]["hash"]) == 32
    from rag.prompt import PROMPT_VERSION

    assert saved["prompt_version"] == PROMPT_VERSION and len(saved["data"]["examples_fingerprint"]) == 32
    assert saved["data"]["held_out_uids"] and set(saved["data"]["val_uids"]) <= set(saved["data"]["held_out_uids"])
    assert saved["hyperparameters"]["lora_r"] == 16 and saved["hyperparameters"]["lr"] == 2e-4
    assert [h["step"] for h in saved["loss_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert any("eval_loss" in h for h in saved["loss_history"])
    assert saved["best_eval_loss"] == min(h["eval_loss"] for h in saved["loss_history"] if "eval_loss" in h)
    assert meta == saved


def test_existing_checkpoints_need_resume(demo_catalog, demo_index, tiny_llama, tmp_path):
    from indexing.errors import UserError

    out = tmp_path / "adapter"
    finetune(cfg(demo_catalog, demo_index, out, base_model=str(tiny_llama), max_steps=5, four_bit=False))
    with pytest.raises(UserError, match="pass --resume"):
        finetune(cfg(demo_catalog, demo_index, out, base_model=str(tiny_llama), max_steps=5, four_bit=False))


def test_ctrl_c_then_resume_continues_without_repeating(demo_catalog, demo_index, tiny_llama, tmp_path):
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "ui.cli", "finetune", "--catalog", str(demo_catalog), "--index", str(demo_index),
           "--out", str(out), "--base-model", str(tiny_llama), "--no-4bit", "--max-steps", "30",
           "--save-steps", "5", "--eval-steps", "5", "--max-products", "40", "--k", "1", "--batch-size", "2",
           "--quiet"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (out / "checkpoints" / "checkpoint-5").exists():
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    state = json.loads(sorted((out / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                              key=lambda f: int(f.parent.name.split("-")[1]))[-1].read_text())
    stopped_at = state["global_step"]
    assert 5 <= stopped_at < 30
    assert not (out / "adapter_model.safetensors").exists()

    r = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "training_meta.json").read_text())
    steps = [h["step"] for h in meta["loss_history"] if "loss" in h]
    assert meta["global_step"] == 30
    assert steps == sorted(set(steps)) and steps[-1] == 30  # each step once: nothing repeated


@pytest.mark.slow
def test_smollm2_4bit_loss_decreases_and_adapter_generates(smol_adapter, smollm2_path):
    out, meta = smol_adapter
    losses = [h["loss"] for h in meta["loss_history"] if "loss" in h]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert meta["four_bit"] and meta["base_model"]["name"] == "SmolLM2-135M-Instruct"
    assert meta["tokens_seen"] > 0 and meta["train_tokens_per_second"] > 0

    # save -> reload -> generate
    import torch
    from peft import PeftModel

    from rag.model import load_model
    from rag.prompt import build_prompt

    model, tok = load_model(smollm2_path, four_bit=True, device="cpu")
    model = PeftModel.from_pretrained(model, str(out))
    prompt = build_prompt("What is 'X'?", [("X", "A thing.")])
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.slow
def test_gradients_survive_an_evaluation_pass_in_4bit_on_cpu(smollm2_path):
    """bitsandbytes on AVX512-BF16 CPUs repacks 4-bit weights on the first no-grad forward; without
    `disable_bnb_cpu_repack` the next backward silently yields no gradient."""
    import torch
    from peft import LoraConfig, get_peft_model

    from rag.model import load_model

    model, tok = load_model(smollm2_path, four_bit=True, device="cpu")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM", init_lora_weights="gaussian"))
    x = tok("Girls Ballet Tutu Neon Pink: high quality 3 layer ballet tutu.", return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad():
        model(input_ids=x)  # the evaluation pass that triggers the repack
        model.generate(input_ids=x, max_new_tokens=2, do_sample=False)
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    norm = sum(p.grad.norm() ** 2 for n, p in model.named_parameters() if p.requires_grad and p.grad is not None) ** 0.5
    assert float(norm) > 0


def test_loss_in_small_chunks_equals_trl_s_default(tiny_llama):
    """`set_loss_chunk` changes how many positions trl's fused LM head scores at once (memory), not the
    loss or its gradient; and it fails this test if a trl release drops the constant it sets."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from finetune.train import set_loss_chunk

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(0)
    x = torch.randint(0, 2000, (1, 300))
    labels = x.clone()
    labels[:, :120] = -100  # the prompt: no loss

    def run():
        model.zero_grad()
        out = model(input_ids=x, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.item(), out.entropy.sum().item(), model.model.embed_tokens.weight.grad.clone()

    default = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    try:
        whole = run()
        assert set_loss_chunk(64) and trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == 64
        chunked = run()
    finally:
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = default
    assert abs(whole[0] - chunked[0]) < 1e-5 and abs(whole[1] - chunked[1]) < 1e-3
    assert torch.allclose(whole[2], chunked[2], atol=1e-6)
