"""The on-disk index: one folder that describes itself. This module alone knows its layout.

    INDEX_DIR/
      meta.json          what made it: embedding model (name + content hash), dim, metric, index type,
                         what is embedded (fields, passage size, counts), catalog fingerprint, creation
                         time, package version, file sizes
      index.faiss        title vectors (FAISS; ids = docs.parquet `id`)
      docs.parquet       id, uid, title, content of every indexed product, in BM25 order
      bm25/              bm25s lexical index over titles, same rows as docs.parquet
      passages.faiss     description passage vectors (ids = passages.parquet `pid`)      (format 2)
      passages.parquet   pid, id (product), start, end: character offsets into the description
      bm25_passages/     bm25s over the passages, same rows as passages.parquet
      bm25_chars/        bm25s over the titles' character trigrams (typo-tolerant titles)   (meta "fuzzy")
      ranker.txt         the learned fusion (LightGBM text model; indexing/rank.py)          (meta "ranker")

    INDEX_DIR's build folder (.INDEX_DIR.build/, beside it, while a build runs):
      build.json         the settings the shards were made with (a resume must match them)
      products.parquet   id, title, content in build order
      passages.parquet   the passages, as above
      shards/            NNNNN.titles.npy, NNNNN.passages.npy: vectors of products [NNNNN*S, (NNNNN+1)*S)
      manifest.jsonl     one line per finished shard: file names, sizes, blake2b digests

Folders are written beside the target and renamed into place (`write_atomically`), so a build or
update killed halfway leaves the previous index intact and loadable; the build folder survives a
crash so that the next run continues from its last finished shard.

Format 1 (before descriptions were embedded) has no passage files: it still loads and searches
titles only, with a notice to rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import digest, utc_now

FORMAT_VERSION = 2
META, TITLES, DOCS, BM25 = "meta.json", "index.faiss", "docs.parquet", "bm25"
PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES = "passages.faiss", "passages.parquet", "bm25_passages"
FILES = {1: (META, TITLES, DOCS, BM25), 2: (META, TITLES, DOCS, BM25, PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES)}
BM25_CHARS, RANKER = "bm25_chars", "ranker.txt"  # optional: present when meta.json has "fuzzy" / "ranker"
SIZED = (TITLES, DOCS, PASSAGE_VECTORS, PASSAGES, RANKER)  # their sizes go into meta.json: truncation is caught on load
OPTIONAL = {"fuzzy": BM25_CHARS, "ranker": RANKER}
REBUILD_HINT = "rebuild with `productqa index build` to search descriptions"


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


# --------------------------------------------------------------------------- the index folder


def write_meta(folder: Path, meta: dict) -> dict:
    """Complete and write meta.json (sizes of the files, so truncation is caught on load)."""
    from indexing import __version__

    meta = dict(meta)
    meta.setdefault("created", utc_now())
    meta["format_version"] = FORMAT_VERSION
    meta["productqa_version"] = __version__
    meta["file_sizes"] = {f: (folder / f).stat().st_size for f in SIZED if (folder / f).exists()}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_meta(folder: str | Path) -> dict:
    """meta.json of an index, after checking every piece is there and has the size it was written with."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no index here (build one with `productqa index build`)")
    if not (folder / META).exists():
        raise UserError(f"{folder}: incomplete index, missing {META} (rebuild it)")
    try:
        meta = json.loads((folder / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{folder}/{META}: corrupt ({e})") from None
    version = meta.get("format_version")
    if version not in FILES:
        raise UserError(f"{folder}: index format {version} is not one this ProductQA reads "
                        f"({', '.join(map(str, FILES))}): rebuild it")
    missing = [f for f in (*FILES[version], *(f for key, f in OPTIONAL.items() if meta.get(key)))
               if not (folder / f).exists()]
    if missing:
        raise UserError(f"{folder}: incomplete index, missing {', '.join(missing)} (rebuild it)")
    for f, size in meta.get("file_sizes", {}).items():
        actual = (folder / f).stat().st_size
        if actual != size:
            raise UserError(f"{folder}/{f}: {actual:,} bytes, meta.json says {size:,}: truncated or corrupt (rebuild it)")
    if version == 1:
        print(f"note: {folder} searches titles only (built before descriptions were indexed); {REBUILD_HINT}",
              file=sys.stderr)
    return meta


def has_passages(meta: dict) -> bool:
    return meta.get("format_version", 1) >= 2 and bool(meta.get("passages"))


def read_faiss(folder: Path, meta: dict, name: str = TITLES):
    """The title index (default) or the passage index, checked against meta.json."""
    import faiss

    count = meta["count"] if name == TITLES else meta["passages"]["count"]
    try:
        index = faiss.read_index(str(folder / name))
    except RuntimeError as e:
        raise UserError(f"{folder}/{name}: corrupt ({str(e).splitlines()[0][:200]})") from None
    if index.ntotal != count or index.d != meta["dim"]:
        raise UserError(f"{folder}/{name}: holds {index.ntotal:,} vectors of dim {index.d}, meta.json says "
                        f"{count:,} of dim {meta['dim']} (rebuild it)")
    return index


def write_faiss(folder: Path, index, name: str = TITLES) -> None:
    import faiss

    faiss.write_index(index, str(folder / name))


def _read_table(path: Path, rows: int, what: str):
    import pyarrow.parquet as pq

    try:
        df = pq.read_table(path).to_pandas()
    except Exception as e:
        raise UserError(f"{path}: corrupt ({type(e).__name__}: {e})") from None
    if len(df) != rows:
        raise UserError(f"{path}: {len(df):,} rows, meta.json says {rows:,} {what} (rebuild it)")
    return df


def read_docs(folder: Path, meta: dict):
    return _read_table(folder / DOCS, meta["count"], "products")


def write_docs(folder: Path, docs) -> None:
    _write_table(docs[["id", "uid", "title", "content"]], folder / DOCS)


def read_passages(folder: Path, meta: dict):
    """pid, id, start, end of every passage (None for a title-only index)."""
    if not has_passages(meta):
        return None
    return _read_table(folder / PASSAGES, meta["passages"]["count"], "passages")


def write_passages(folder: Path, passages) -> None:
    """passages.parquet in an index folder or a build folder."""
    _write_table(passages[["pid", "id", "start", "end"]], Path(folder) / PASSAGES)


def _write_table(df, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, compression="zstd")


def read_bm25(folder: Path, name: str = BM25, rows: int | None = None):
    import bm25s

    try:
        bm = bm25s.BM25.load(str(folder / name))
    except Exception as e:
        raise UserError(f"{folder}/{name}: corrupt ({type(e).__name__}: {e}) (rebuild the index)") from None
    if rows is not None and int(bm.scores["num_docs"]) != rows:
        raise UserError(f"{folder}/{name}: {bm.scores['num_docs']} documents, expected {rows} (rebuild the index)")
    return bm


def write_bm25(folder: Path, bm, name: str = BM25) -> None:
    bm.save(str(folder / name))


# --------------------------------------------------------------------------- the build folder


def build_folder(out: str | Path) -> Path:
    """Where a build of `out` keeps its finished shards until the index is written."""
    out = Path(out)
    return out.with_name(f".{out.name}.build")


class Shards:
    """The build folder's vector shards and their manifest: what is finished, and intact."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.dir = folder / "shards"
        self.manifest = folder / "manifest.jsonl"

    def start(self, settings: dict, fresh: bool = False) -> bool:
        """Open the build folder for these settings; True when it resumes an earlier run. A folder made
        with other settings is refused (not silently mixed), unless `fresh` discards it."""
        f = self.folder / "build.json"
        if fresh:
            shutil.rmtree(self.folder, ignore_errors=True)
        if f.exists():
            try:
                old = json.loads(f.read_text())
            except json.JSONDecodeError:
                old = None
            if old is not None and old != settings:
                diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise UserError(f"{self.folder}: an unfinished build with other settings ({', '.join(diff)} "
                                f"differ) is here; rerun it with the same settings to resume it, or pass "
                                f"--fresh to discard it")
            if old is not None:
                return True
        shutil.rmtree(self.folder, ignore_errors=True)
        self.dir.mkdir(parents=True)
        f.write_text(json.dumps(settings, indent=2) + "\n")
        return False

    def finished(self, log=print) -> dict[int, dict]:
        """{shard number: manifest entry} of shards whose files are intact; a corrupt or truncated one
        is reported (one line through `log`) and left out, so it is embedded again."""
        done, last = {}, {}
        if not self.manifest.exists():
            return done
        for line in self.manifest.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash: its shard is redone
            last[e["shard"]] = e  # a shard embedded again after a corrupt copy: its newest line counts
        for e in last.values():
            bad = [n for n, meta in e["files"].items()
                   if not (self.dir / n).exists() or (self.dir / n).stat().st_size != meta["bytes"]
                   or digest(self.dir / n) != meta["blake2b"]]
            if bad:
                log(f"shard {e['shard']}: {', '.join(bad)} corrupt or truncated (size/checksum differ from the "
                    f"manifest): embedding it again")
                continue
            done[e["shard"]] = e
        return done

    def write(self, shard: int, arrays: dict) -> None:
        """Save one shard's arrays ({"titles": X, "passages": Y}) and record it in the manifest."""
        import numpy as np

        files = {}
        for kind, X in arrays.items():
            name = f"{shard:05d}.{kind}.npy"
            tmp = self.dir / (name + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, X)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / name)
            files[name] = {"rows": int(X.shape[0]), "bytes": (self.dir / name).stat().st_size,
                           "blake2b": digest(self.dir / name)}
        with open(self.manifest, "a") as fh:  # the shard counts as finished once this line is down
            fh.write(json.dumps({"shard": shard, "files": files}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def load(self, shard: int, kind: str):
        import numpy as np

        return np.load(self.dir / f"{shard:05d}.{kind}.npy", mmap_mode="r")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
