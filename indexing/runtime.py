"""Shared by every stage (indexing, finetune, rag, ui): process settings, devices, timestamps, digests.

    from indexing.runtime import quiet_libraries, pick_device, native_bf16, utc_now, digest, publish_folder

It lives in `indexing/` because that is the bottom of the import order (`ui` -> `rag`/`finetune` ->
`indexing`); nothing here imports another ProductQA module except `indexing.errors` (UserError, the
other shared piece: one line on stderr and exit code 2, raised by every stage).
- quiet_libraries: nothing may be fetched from a model hub (models come from local folders and PyPI
  packages), and the libraries' own chatter (bitsandbytes' optional-kernel notice, per-load weight
  progress bars) would drown our progress bars and results.
- cache_dir: the one cache folder of models made once (the converted base model, derived encoders).
- pick_device / native_bf16: one device rule and one bf16 probe for the encoder, training and answering.
- utc_now / digest / fingerprint: what every self-describing artifact records (creation time, file
  checksums, the one fingerprint rule of models, encoders and adapters).
- DTYPES / torch_dtype: the one map from precision names to torch dtypes.
- fsync_dir / fsync_tree / publish_folder: how an artifact folder that others read (a converted or
  merged model) replaces the old one: written beside it, fsynced, swapped in by one atomic exchange,
  so a reader (or a crash) sees the old folder or the new one, never none and never half.
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


def cache_dir() -> Path:
    """Where models made once from packaged ones live (the converted SmolLM2, derived encoders):
    $PRODUCTQA_CACHE or ~/.cache/productqa."""
    return Path(os.environ.get("PRODUCTQA_CACHE", Path.home() / ".cache" / "productqa"))


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


def fingerprint(content=(), sized=()) -> str:
    """The one fingerprint rule of artifacts (embedding models, base models, adapters): blake2b-128 (hex)
    over the bytes of the files `content`, then the name and size of the files `sized` (large weights whose
    neighbours' bytes identify them well enough), in the order given."""
    h = hashlib.blake2b(digest_size=16)
    for p in content:
        with open(p, "rb") as f:
            hashlib.file_digest(f, lambda: h)  # h.update(every byte of the file)
    for p in sized:
        p = Path(p)
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()


DTYPES = ("bf16", "fp16", "fp32")  # the precisions every stage's --dtype / --precision names


def torch_dtype(name: str):
    """torch's dtype for a precision name of DTYPES."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def fsync_dir(folder: str | Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Every file and folder under `folder` on disk, so that a rename published after it is never torn."""
    for here, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(here, f), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(here)


def temp_beside(target: str | Path, kind: str = "tmp") -> Path:
    """Where a writer builds `target`'s replacement: `.NAME.tmp-PID` beside it (leftovers of writers that
    died are removed first)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for p in target.parent.glob(f".{target.name}.*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            _remove(p)
    tmp = target.with_name(f".{target.name}.{kind}-{os.getpid()}")
    _remove(tmp)
    return tmp


def publish_folder(tmp: str | Path, target: str | Path) -> None:
    """Put the finished folder `tmp` (from `temp_beside`) in `target`'s place atomically. Linux swaps the two
    names in one step (renameat2 RENAME_EXCHANGE) and then removes the old folder, now at tmp's name: killed
    at any point, `target` is the old folder or the new one. Where the exchange is not supported, the old
    folder is moved aside first and moved back if the new one cannot go in."""
    import shutil

    tmp, target = Path(tmp), Path(target)
    fsync_tree(tmp)
    if not target.exists() and not target.is_symlink():
        os.replace(tmp, target)
    elif target.is_dir() and not target.is_symlink() and _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # the old folder, under the temp name
    else:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            os.replace(old, target)
            raise
        _remove(old)
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem or kernel without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(p: Path) -> None:
    import shutil

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)
