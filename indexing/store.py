"""The on-disk index: one folder that describes itself. This module alone knows its layout.

    INDEX_DIR/
      CURRENT            the live version's number ("3\n"); replaced atomically by a commit
      versions/N/        one committed version: immutable once CURRENT names it
        meta.json        what made it: embedding model (name + content hash), dim, metric, index type,
                         what is embedded (fields, passage size, counts), catalog fingerprint, creation
                         time, package version, file sizes, "version": N
        index.faiss      title vectors (FAISS; ids = docs.parquet `id`)
        index.vectors.npy  the exact title vectors by id (row = id), memory-mapped, beside a re-ranked index
                         ("ivfpq", "ivfsq": indexing/vectors.py; its codes propose, these re-rank)
        docs.parquet     id, uid, title, content of every indexed product, in BM25 order
        bm25/            bm25s lexical index over titles, same rows as docs.parquet
        passages.faiss   description passage vectors (ids = passages.parquet `pid`)      (format 2)
        passages.vectors.npy  the exact passage vectors by pid, beside a re-ranked passage index
        passages.parquet pid, id (product), start, end: character offsets into the description
        bm25_passages/   bm25s over the passages, same rows as passages.parquet
        bm25_chars/      bm25s over the titles' character trigrams (typo-tolerant titles)   (meta "fuzzy")
        ranker.txt       the learned fusion (LightGBM text model; indexing/rank.py)          (meta "ranker")
        tombstones.npy   ids of the products removed or replaced since the base was written (meta "tombstones")
        deltas/D/        products added since (meta "deltas"; indexing/delta.py merges them at load):
          docs.parquet, titles.npy (their title vectors, rows of docs), passages.parquet,
          passages.npy (rows of passages), bm25/, bm25_passages/, bm25_chars/ over their own texts
      versions/.N.tmp-PID/  a version being written (garbage once its writer is gone)
      writer.lock        the single-writer lock (`writer`): build, add, remove hold it
      writer.json        who holds it (pid, host, what, since), for the message a second writer gets
      compact.log        what background compactions (started by updates, indexing/update.py) printed

    A commit (`commit`, Lucene-style): the writer fills versions/.N.tmp-PID, fsyncs every file and
    folder, renames it to versions/N, then replaces CURRENT (written beside it, fsynced, renamed, the
    folder fsynced). A SIGKILL at any point leaves the previous CURRENT live and complete; the next
    writer removes the leftovers. Readers open CURRENT's version under a shared lease (`open_version`,
    a shared flock on the version folder) while they read it into memory; the writer removes old
    versions no reader holds (`_clean`), and a reader whose version vanished before its lease simply
    opens the new CURRENT.

    The files above the deltas are the base: written by a build or a compaction, then shared by later
    versions as hard links (`link_version`), so an update writes its delta, the tombstones and meta.json,
    not the whole index. meta.json's "count" is the live products; "base" the base files' row counts.

    Indexes written before versions (the files directly in INDEX_DIR, no CURRENT) are read as they are
    (version 0) and migrated by their first write: versions/1 is committed, then the old top-level files
    are removed once no reader holds them.

    INDEX_DIR's build folder (.INDEX_DIR.build/, beside it, while a build runs):
      build.json         the settings the shards were made with (a resume must match them)
      passages.parquet   the passages, as above
      shards/            NNNNN.titles.npy, NNNNN.passages.npy: vectors of products [NNNNN*S, (NNNNN+1)*S)
      manifest.jsonl     one line per finished shard: file names, sizes, blake2b digests

The build folder survives a crash so that the next run continues from its last finished shard.

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
from indexing.runtime import digest, fsync_dir, fsync_tree, utc_now

FORMAT_VERSION = 2
META, TITLES, DOCS, BM25 = "meta.json", "index.faiss", "docs.parquet", "bm25"
PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES = "passages.faiss", "passages.parquet", "bm25_passages"
FILES = {1: (META, TITLES, DOCS, BM25), 2: (META, TITLES, DOCS, BM25, PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES)}
BM25_CHARS, RANKER = "bm25_chars", "ranker.txt"  # optional: present when meta.json has "fuzzy" / "ranker"
CARDS, DELTA_CARDS = "cards.faiss", "cards.npy"  # optional: with meta.json's "multilingual" (indexing/multilingual.py)
DELTAS, TOMBSTONES, DELTA_TITLES, DELTA_PASSAGES = "deltas", "tombstones.npy", "titles.npy", "passages.npy"
# beside a re-ranked index (indexing.vectors.RERANKED): its exact vectors by id
EXACT = {TITLES: "index.vectors.npy", PASSAGE_VECTORS: "passages.vectors.npy", CARDS: "cards.vectors.npy"}
# sizes into meta.json: truncation is caught on load
SIZED = (TITLES, DOCS, PASSAGE_VECTORS, PASSAGES, RANKER, CARDS, *EXACT.values())
OPTIONAL = {"fuzzy": BM25_CHARS, "ranker": RANKER, "multilingual": CARDS}
REBUILD_HINT = "rebuild with `productqa index build` to search descriptions"


CURRENT, VERSIONS, LOCK, WRITER, COMPACT_LOG = "CURRENT", "versions", "writer.lock", "writer.json", "compact.log"
LEGACY = (META, TITLES, DOCS, BM25, PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES, BM25_CHARS, RANKER, TOMBSTONES, DELTAS)
WAIT = 600  # seconds a second writer waits for the first by default (--wait)


# --------------------------------------------------------------------------- versions and the writer


def current_version(root: str | Path) -> int | None:
    """The number CURRENT names; None when there is none (a folder from before versions, or no index)."""
    f = Path(root) / CURRENT
    try:
        text = f.read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        vdir = Path(root) / VERSIONS
        on_disk = sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit()) if vdir.is_dir() else []
        raise UserError(f"{f}: corrupt ({text[:40]!r}, expected a version number; versions on disk: "
                        f"{', '.join(map(str, on_disk)) or 'none'}): write the newest one's number into it, "
                        f"or rebuild")
    return int(text)


def version_folder(root: str | Path, n: int) -> Path:
    return Path(root) / VERSIONS / str(n)


def live_folder(root: str | Path) -> Path:
    """The folder holding the live version's files: versions/N, or the folder itself before versions."""
    n = current_version(root)
    return Path(root) if n is None else version_folder(root, n)


def write_text_durably(path: Path, text: str) -> None:
    """Replace a small file atomically and durably: written beside it, fsynced, renamed, folder fsynced."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def lease(folder: Path):
    """Hold `folder` (a version) against removal while reading it; yields False if it is gone."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a writer is removing this very folder
        yield (folder / META).exists()
    finally:
        os.close(fd)


@contextmanager
def open_version(root: str | Path):
    """Yield the live version's folder, held (`lease`) until the block ends: read it into memory there."""
    root = Path(root)
    for _ in range(1000):
        folder = live_folder(root)
        with lease(folder) as held:
            if held or live_folder(root) == folder:  # held, or not an index at all: read_meta says why
                yield folder
                return
        # CURRENT moved on and the version we looked at was removed in between: open the new one
    raise UserError(f"{root}: the live version kept changing while it was being opened; try again")


def _try_evict(folder: Path, remove) -> bool:
    """Run `remove` if no reader holds `folder`; False (and nothing removed) when one does."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        remove()
        return True
    finally:
        os.close(fd)


def lock_holder(root: str | Path) -> str:
    """Who holds the writer lock, in words (from writer.json)."""
    try:
        w = json.loads((Path(root) / WRITER).read_text())
        return f"{w['what']} by pid {w['pid']} on {w['host']} since {w['since']}"
    except (OSError, ValueError, KeyError):
        return "another writer"


@contextmanager
def writer(root: str | Path, wait: float = WAIT, what: str = "update", create: bool = False):
    """The single-writer lock of an index folder (created if missing when `create`: a build; an update
    needs a committed index, checked first so that it never leaves a lock behind). A second writer waits up to
    `wait` seconds, with a message, then fails with a one-line error; it never overwrites. The lock is
    an flock: the kernel drops it when its process dies, so a killed writer never blocks the next."""
    from filelock import FileLock, Timeout

    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    if not create:
        read_meta(root)  # "no index here", a corrupt CURRENT, ...: said before anything is written
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = lock_holder(root)
        if wait <= 0:
            raise UserError(f"{root}: {holder} is writing this index; try again when it is done, "
                            f"or pass --wait SECONDS") from None
        print(f"{root}: waiting up to {wait:g}s for {holder} to finish", file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise UserError(f"{root}: {lock_holder(root)} still holds this index after {wait:g}s; "
                            f"try again later or pass a longer --wait") from None
    try:
        import socket

        write_text_durably(root / WRITER, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                      "what": what, "since": utc_now()}) + "\n")
        _clean(root)  # what a killed writer left
        yield root
    finally:
        (root / WRITER).unlink(missing_ok=True)
        lock.release()


@contextmanager
def commit(root: str | Path):
    """Under `writer`: yield a fresh folder for the next version; when the block succeeds, publish it
    (fsync, rename to versions/N, CURRENT -> N). A failed block leaves nothing behind."""
    root = Path(root)
    vdir = root / VERSIONS
    vdir.mkdir(exist_ok=True)
    n = 1 + max([current_version(root) or 0, *(int(p.name) for p in vdir.iterdir() if p.name.isdigit())])
    tmp = vdir / f".{n}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        meta = json.loads((tmp / META).read_text())
        meta["version"] = n
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, version_folder(root, n))
    fsync_dir(vdir)
    write_text_durably(root / CURRENT, f"{n}\n")  # the commit point
    _clean(root)


def _clean(root: Path) -> None:
    """Under the writer lock: remove unfinished versions, old versions no reader holds, the files of the
    layout before versions once a version is live, and the temp folders of the old whole-folder swap."""
    cur = current_version(root)
    vdir = root / VERSIONS
    if vdir.is_dir():
        for p in vdir.iterdir():
            if p.name.startswith("."):  # .N.tmp-PID: its writer is gone (we hold the lock)
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            elif p.name.isdigit() and cur is not None and int(p.name) > cur:  # renamed, never published
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.isdigit() and cur is not None and int(p.name) < cur:
                _try_evict(p, lambda p=p: shutil.rmtree(p, ignore_errors=True))
    if cur is not None and (root / META).exists():
        def remove_legacy():
            (root / META).unlink(missing_ok=True)  # first: a reader that finds no meta.json retries
            for f in LEGACY:
                (shutil.rmtree(root / f, ignore_errors=True) if (root / f).is_dir()
                 else (root / f).unlink(missing_ok=True))
        _try_evict(root, remove_legacy)
    for p in root.parent.glob(f".{root.name}.*-*"):  # .INDEX.tmp-PID / .INDEX.old-PID of the old swap
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(p, ignore_errors=True)


def versions(root: str | Path) -> dict:
    """What `productqa index info` says about versions: the live one, those on disk, the writer."""
    root = Path(root)
    vdir = root / VERSIONS
    on_disk = sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit()) if vdir.is_dir() else []
    from filelock import FileLock, Timeout

    held = None
    if (root / LOCK).exists():
        try:
            with FileLock(str(root / LOCK), thread_local=False, timeout=0):
                pass
        except Timeout:
            held = lock_holder(root)
    return {"current": current_version(root) or 0,
            "on_disk": on_disk,
            "layout": "versions" if (root / CURRENT).exists() else "single folder (before versions)",
            "writer": held}


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
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root}: no index here (build one with `productqa index build`)")
    folder = live_folder(root)
    if not (folder / META).exists():
        if folder == root and not any(root.iterdir()):
            raise UserError(f"{root}: no index here (build one with `productqa index build`)")
        if folder == root and (root / LOCK).exists() and not (root / DOCS).exists():
            raise UserError(f"{root}: no index committed here yet ({lock_holder(root)} may be building it: "
                            f"wait for it, or build one with `productqa index build`)")
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
               if not (folder / f).exists() and (f != PASSAGE_VECTORS or has_passage_vectors(meta))]
    from indexing.vectors import RERANKED

    missing += [EXACT[f] for f, info in ((TITLES, meta), (PASSAGE_VECTORS, meta.get("passages") or {}),
                                         (CARDS, meta.get("multilingual") or {}))
                if info.get("index_type") in RERANKED and not (folder / EXACT[f]).exists()]
    if missing:
        raise UserError(f"{folder}: incomplete index, missing {', '.join(missing)} (rebuild it)")
    sizes = dict(meta.get("file_sizes", {}))
    for d in meta.get("deltas", []):
        sizes.update({f"{DELTAS}/{d['name']}/{f}": n for f, n in d["file_sizes"].items()})
    if meta.get("tombstones"):
        sizes[TOMBSTONES] = meta["tombstones_bytes"]
    for f, size in sizes.items():
        if not (folder / f).exists():
            raise UserError(f"{folder}: incomplete index, missing {f} (rebuild it)")
        actual = (folder / f).stat().st_size
        if actual != size:
            raise UserError(f"{folder}/{f}: {actual:,} bytes, meta.json says {size:,}: "
                            "truncated or corrupt (rebuild it)")
    if version == 1:
        print(f"note: {folder} searches titles only (built before descriptions were indexed); {REBUILD_HINT}",
              file=sys.stderr)
    return meta


def has_passages(meta: dict) -> bool:
    return meta.get("format_version", 1) >= 2 and bool(meta.get("passages"))


def has_passage_vectors(meta: dict) -> bool:
    """False for an index whose passages are searched by BM25 alone (`--passage-encoder none`)."""
    return has_passages(meta) and meta.get("passage_encoder", {}).get("kind") != "none"


def read_faiss(folder: Path, meta: dict, name: str = TITLES, mmap: bool = False):
    """The title index (default) or the passage index, checked against meta.json. `mmap`: an IVF index's
    lists stay in the file, memory-mapped read-only (a serving process starts without reading them, and
    processes serving the same version share them in the page cache); nothing can be added or removed.
    A re-ranked index ("ivfpq", "ivfsq") comes with its exact vectors (indexing.vectors.Reranked), always
    memory-mapped: the version's file is never written to (added vectors are kept in memory)."""
    import faiss
    import numpy as np

    from indexing.vectors import RERANKED, Reranked, set_nprobe

    info = {TITLES: meta, CARDS: meta.get("multilingual")}.get(name, meta.get("passages"))
    count = info["count"] if name == CARDS else base_count(meta, "products" if name == TITLES else "passages")
    dim = meta["dim"] if name == TITLES else info.get("dim", meta["dim"])
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap and info.get("index_type") == "ivf" else 0
    try:
        index = faiss.read_index(str(folder / name), flags)
        if info.get("index_type") in RERANKED:
            exact = np.load(folder / EXACT[name], mmap_mode="r")
            if exact.ndim != 2 or exact.shape[1] != dim:
                raise ValueError(f"{EXACT[name]} holds vectors of shape {exact.shape}, not [n, {dim}]")
            index = Reranked(index, exact)
            set_nprobe(index, info)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{folder}/{name}: corrupt ({str(e).splitlines()[0][:200]})") from None
    if index.ntotal != count or index.d != dim:
        raise UserError(f"{folder}/{name}: holds {index.ntotal:,} vectors of dim {index.d}, meta.json says "
                        f"{count:,} of dim {dim} (rebuild it)")
    return index


def write_faiss(folder: Path, index, name: str = TITLES) -> None:
    """A FAISS index into the version being written; a re-ranked one (indexing.vectors.Reranked) with its exact
    vectors by id beside it."""
    import faiss
    import numpy as np

    from indexing.vectors import Reranked

    if isinstance(index, Reranked):
        faiss.write_index(index.index, str(folder / name))
        np.save(folder / EXACT[name], index.exact_rows())
        return
    faiss.write_index(index, str(folder / name))


def _read_table(path: Path, rows: int, what: str):
    import pyarrow.parquet as pq

    try:
        # one chunk a column: pandas' take/iloc on a chunked Arrow column concatenates the whole column
        # first (looking up 60 products took 340 ms at 1.37M products in 11 chunks, 0.5 ms in one)
        df = pq.read_table(path).combine_chunks().to_pandas()
    except Exception as e:
        raise UserError(f"{path}: corrupt ({type(e).__name__}: {e})") from None
    if len(df) != rows:
        raise UserError(f"{path}: {len(df):,} rows, meta.json says {rows:,} {what} (rebuild it)")
    return df


def base_count(meta: dict, what: str = "products") -> int:
    """Rows in the base files (a build's or a compaction's); the live count differs once there are deltas."""
    if "base" in meta:
        return meta["base"][what]
    return meta["count"] if what == "products" else meta["passages"]["count"]


def read_docs(folder: Path, meta: dict, columns: list | None = None):
    """The base's documents (all columns, or `columns`)."""
    if columns is None:
        return _read_table(folder / DOCS, base_count(meta), "products")
    import pyarrow.parquet as pq

    return pq.read_table(folder / DOCS, columns=columns).to_pandas()


def write_docs(folder: Path, docs) -> None:
    _write_table(docs[["id", "uid", "title", "content"]], folder / DOCS)


def read_passages(folder: Path, meta: dict):
    """pid, id, start, end of every passage (None for a title-only index)."""
    if not has_passages(meta):
        return None
    return _read_table(folder / PASSAGES, base_count(meta, "passages"), "passages")


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


# --------------------------------------------------------------------------- deltas and tombstones


def read_tombstones(folder: Path, meta: dict):
    import numpy as np

    if not meta.get("tombstones"):
        return np.zeros(0, dtype=np.int64)
    return np.load(folder / TOMBSTONES)


def write_tombstones(folder: Path, ids) -> int:
    """tombstones.npy (sorted unique product ids); returns its size in bytes (for meta.json)."""
    import numpy as np

    np.save(folder / TOMBSTONES, np.unique(np.asarray(ids, dtype=np.int64)))
    return (folder / TOMBSTONES).stat().st_size


def read_delta(folder: Path, meta: dict, d: dict) -> dict:
    """One delta segment: docs, titles (vectors), and when the index has them passages, passage vectors and
    the BM25 indexes over its own texts (None where the delta has no rows of that kind)."""
    import numpy as np

    f = folder / DELTAS / d["name"]
    out = {"docs": _read_table(f / DOCS, d["count"], "products"), "titles": np.load(f / DELTA_TITLES),
           "bm25": read_bm25(f, BM25, rows=d["count"]),
           "bm25_chars": read_bm25(f, BM25_CHARS, rows=d["count"]) if meta.get("fuzzy") else None,
           "passages": None, "passage_vectors": None, "bm25_passages": None,
           "cards": np.load(f / DELTA_CARDS) if (f / DELTA_CARDS).exists() else None}
    if has_passages(meta) and d["passages"]:
        out["passages"] = _read_table(f / PASSAGES, d["passages"], "passages")
        out["passage_vectors"] = np.load(f / DELTA_PASSAGES) if has_passage_vectors(meta) else None
        out["bm25_passages"] = read_bm25(f, BM25_PASSAGES, rows=d["passages"])
    return out


def write_delta(folder: Path, name: str, docs, titles, passages=None, passage_vectors=None, bm25=None,
                bm25_passages=None, bm25_chars=None, cards=None) -> dict:
    """deltas/NAME/ in a version being committed; returns its meta.json entry."""
    import numpy as np

    f = folder / DELTAS / name
    f.mkdir(parents=True)
    write_docs(f, docs)
    np.save(f / DELTA_TITLES, np.asarray(titles, dtype=np.float32))
    write_bm25(f, bm25)
    if cards is not None:  # the products' multilingual cards (indexing/multilingual.py)
        np.save(f / DELTA_CARDS, np.asarray(cards, dtype=np.float32))
    if bm25_chars is not None:
        write_bm25(f, bm25_chars, BM25_CHARS)
    n_passages = 0 if passages is None else len(passages)
    if n_passages:
        write_passages(f, passages)
        if passage_vectors is not None:  # None: passages searched by BM25 alone
            np.save(f / DELTA_PASSAGES, np.asarray(passage_vectors, dtype=np.float32))
        write_bm25(f, bm25_passages, BM25_PASSAGES)
    sizes = {n: (f / n).stat().st_size for n in (DOCS, DELTA_TITLES, PASSAGES, DELTA_PASSAGES, DELTA_CARDS)
             if (f / n).exists()}
    return {"name": name, "count": len(docs), "passages": n_passages, "file_sizes": sizes}


def link_version(src: Path, dst: Path) -> None:
    """The base files and deltas of version `src` in `dst` as hard links (copies where links are impossible):
    committed files never change, so versions share them. meta.json and tombstones.npy are written anew."""
    for top in (TITLES, DOCS, BM25, PASSAGE_VECTORS, PASSAGES, BM25_PASSAGES, BM25_CHARS, RANKER, CARDS, DELTAS,
                *EXACT.values()):
        if not (src / top).exists():
            continue
        if (src / top).is_file():
            _link(src / top, dst / top)
            continue
        for here, _, files in os.walk(src / top):
            rel = Path(here).relative_to(src)
            (dst / rel).mkdir(parents=True, exist_ok=True)
            for name in files:
                _link(Path(here) / name, dst / rel / name)


def _link(a: Path, b: Path) -> None:
    try:
        os.link(a, b)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(a, b)


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
