"""Merged model: a LoRA adapter folded into its base model's weights, saved as a plain Hugging Face
folder that vLLM (or transformers) loads with no peft at all.

    productqa export-model --adapter data/adapter --out data/model            # merged, bf16 safetensors
    productqa serve --model data/model                                        # vLLM serves it

    from rag.merge import export_model, read_model_meta
    export_model("data/adapter", "data/model")

The folder describes itself in `productqa_model.json`: which adapter (path, its training_meta.json
fingerprint, prompt version) and which base (name, path, hash) made it, in what dtype, when and by
what version. `productqa serve` refuses a merged model whose prompt version is not the one this
ProductQA builds prompts with. Merging is exact: base weights load in fp32, the LoRA update is added
(peft's merge_and_unload), and only then is the result cast to `--dtype`. The folder is written
beside its destination and renamed into place, so a crash never leaves half a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import DTYPES
from rag.model import ADAPTER_CONFIG, TRAINING_META

MODEL_META = "productqa_model.json"  # the metadata file of a merged model folder


def read_model_meta(folder: str | Path) -> dict | None:
    """A merged model's metadata, or None for a folder that is not one (a plain base model)."""
    f = Path(folder) / MODEL_META
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise UserError(f"{f}: not valid JSON ({e}); export the model again") from None


def adapter_fingerprint(adapter: Path) -> str:
    """Identifies an adapter's weights and training run: a changed adapter means a stale merge."""
    from indexing.runtime import fingerprint

    return fingerprint(content=[adapter / TRAINING_META, adapter / ADAPTER_CONFIG],
                       sized=sorted(adapter.glob("adapter_model.*")))


def is_current(model_dir: Path, adapter: Path) -> bool:
    """Is `model_dir` a merge of this very adapter (same fingerprint) for this prompt version?"""
    from rag.prompt import PROMPT_VERSION

    try:
        meta = read_model_meta(model_dir)
    except UserError:
        return False
    return bool(meta) and meta.get("prompt_version") == PROMPT_VERSION and \
        meta.get("adapter", {}).get("fingerprint") == adapter_fingerprint(adapter)


def export_model(adapter: str | Path, out: str | Path, base_model: str | Path | None = None,
                 dtype: str = "bf16", progress: bool = True) -> dict:
    """Merge `adapter` into its base and save the result to `out`; returns the metadata written."""
    from indexing import __version__
    from indexing.runtime import quiet_libraries, torch_dtype, utc_now
    from rag.model import load_model, read_adapter, resolve_base_for

    adapter, out = Path(adapter), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    ameta = read_adapter(adapter)
    base, ident = resolve_base_for(ameta, base_model, progress)
    quiet_libraries()
    from peft import PeftModel

    if progress:
        print(f"merging {adapter} into {ident['name']} ({base})", file=sys.stderr)
    model, tok = load_model(base, four_bit=False, device="cpu", dtype="fp32")  # exact merge, then cast
    import warnings

    with warnings.catch_warnings():  # peft's merge calls a transformers API deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(torch_dtype(dtype))
    from indexing.runtime import publish_folder, temp_beside

    tmp = temp_beside(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    meta = {"kind": "merged LoRA adapter", "prompt_version": ameta["prompt_version"], "dtype": dtype,
            "adapter": {"path": str(adapter.resolve()), "fingerprint": adapter_fingerprint(adapter),
                        "global_step": ameta.get("global_step"), "created": ameta.get("created")},
            "base_model": ident, "created": utc_now(), "productqa_version": __version__}
    (tmp / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n")
    publish_folder(tmp, out)  # a vLLM server started meanwhile loads the old model or the new one, never none
    if progress:
        print(f"wrote {out} ({dtype}; {MODEL_META} says what made it)", file=sys.stderr)
    return meta


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", required=True, metavar="ADAPTER_DIR", help="LoRA adapter (productqa finetune)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write the merged model to")
    p.add_argument("--base-model", metavar="PATH",
                   help="base model folder (default: the one the adapter was trained on)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="weights' dtype (default bf16: what vLLM serves)")


def main(args: argparse.Namespace) -> int:
    export_model(args.adapter, args.out, args.base_model, args.dtype)
    return 0
