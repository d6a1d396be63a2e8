"""Shared by every stage (indexing, finetune, rag, ui): process settings, devices, timestamps, digests.

    from indexing.runtime import quiet_libraries, pick_device, native_bf16, utc_now, digest

It lives in `indexing/` because that is the bottom of the import order (`ui` -> `rag`/`finetune` ->
`indexing`); nothing here imports another ProductQA module except `indexing.errors` (UserError, the
other shared piece: one line on stderr and exit code 2, raised by every stage).
- quiet_libraries: nothing may be fetched from a model hub (models come from local folders and PyPI
  packages), and the libraries' own chatter (bitsandbytes' optional-kernel notice, per-load weight
  progress bars) would drown our progress bars and results.
- pick_device / native_bf16: one device rule and one bf16 probe for the encoder, training and answering.
- utc_now / digest: what every self-describing artifact records (creation time, file checksums).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from functools import lru_cache
from pathlib import Path

from indexing.errors import UserError


@lru_cache(maxsize=1)
def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes logs a warning at import on AVX512-BF16 CPUs when the optional `kernels` package is
    # absent; its portable fallback is what we use anyway.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def pick_device(device: str | None = None) -> str:
    """cpu or cuda: the one asked for (refused when absent), else cuda when torch sees a GPU."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch")
    return device


def native_bf16(device: str = "cpu") -> bool:
    """True when `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 / AMX (elsewhere bf16 would be emulated, and slow)."""
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def digest(path: str | Path) -> str:
    """blake2b-128 of a file's bytes (hex): the checksum manifests and fingerprints record."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
