"""The on-disk index: one folder that describes itself.

    INDEX_DIR/
      meta.json      what made it: embedding model (name + content hash), dim, metric, index type,
                     product count, catalog fingerprint, creation time, package version, file sizes
      index.faiss    dense vectors (FAISS; ids = docs.parquet `id` column)
      docs.parquet   id, uid, title, content of every indexed product, in BM25 order
      bm25/          bm25s lexical index over the same rows

Folders are written beside the target and renamed into place (`write_atomically`), so a build or
update killed halfway leaves the previous index intact and loadable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from indexing.errors import UserError

FORMAT_VERSION = 1
FILES = ("meta.json", "index.faiss", "docs.parquet", "bm25")


@contextmanager
def write_atomically(target: str | Path):
    """Yield a fresh temp folder beside `target`; on success it replaces `target` in two renames."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale(target: Path) -> None:
    """Temp folders left by builds that were killed (their process is gone) are garbage."""
    for p in target.parent.glob(f".{target.name}.*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(p, ignore_errors=True)


def write_meta(folder: Path, meta: dict) -> dict:
    """Complete and write meta.json (sizes of the files, so truncation is caught on load)."""
    from indexing import __version__

    meta = dict(meta)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    meta["format_version"] = FORMAT_VERSION
    meta["productqa_version"] = __version__
    meta["file_sizes"] = {f: (folder / f).stat().st_size for f in ("index.faiss", "docs.parquet")}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_meta(folder: str | Path) -> dict:
    """meta.json of an index, after checking every piece is there and has the size it was written with."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no index here (build one with `productqa index build`)")
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise UserError(f"{folder}: incomplete index, missing {', '.join(missing)} (rebuild it)")
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{folder}/meta.json: corrupt ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{folder}: index format {meta.get('format_version')} is not {FORMAT_VERSION} (rebuild it)")
    for f, size in meta.get("file_sizes", {}).items():
        actual = (folder / f).stat().st_size
        if actual != size:
            raise UserError(f"{folder}/{f}: {actual:,} bytes, meta.json says {size:,}: truncated or corrupt (rebuild it)")
    return meta


def read_faiss(folder: Path, meta: dict):
    import faiss

    try:
        index = faiss.read_index(str(folder / "index.faiss"))
    except RuntimeError as e:
        raise UserError(f"{folder}/index.faiss: corrupt ({str(e).splitlines()[0][:200]})") from None
    if index.ntotal != meta["count"] or index.d != meta["dim"]:
        raise UserError(f"{folder}/index.faiss: holds {index.ntotal:,} vectors of dim {index.d}, meta.json says "
                        f"{meta['count']:,} of dim {meta['dim']} (rebuild it)")
    return index


def read_docs(folder: Path, meta: dict):
    import pyarrow.parquet as pq

    try:
        docs = pq.read_table(folder / "docs.parquet").to_pandas()
    except Exception as e:
        raise UserError(f"{folder}/docs.parquet: corrupt ({type(e).__name__}: {e})") from None
    if len(docs) != meta["count"]:
        raise UserError(f"{folder}/docs.parquet: {len(docs):,} rows, meta.json says {meta['count']:,} (rebuild it)")
    return docs


def write_docs(folder: Path, docs) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(docs[["id", "uid", "title", "content"]], preserve_index=False),
                   folder / "docs.parquet", compression="zstd")
