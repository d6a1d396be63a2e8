"""Prepare a clean product catalog from raw AmazonTitles JSON lines or Alpaca-style JSON.

    productqa prepare --input trn.json --input tst.json --out data/catalog [--sample-size N] [--shard-size N]

Inputs may be plain or gzip-compressed (detected from the bytes, not the name) and in either format,
detected automatically:
  * raw AmazonTitles JSON lines: {"uid", "title", "content", "target_ind", "target_rel"}
  * Alpaca: a JSON array or JSON lines of {"instruction": title, "input": ..., "output": content}

Files are streamed in blocks (never loaded whole). Each block is parsed by Arrow's C++ JSON reader;
a block that Arrow rejects (a malformed line, a title that is a number...) is re-read line by line
so that only the bad lines are skipped and counted. Cleaning is vectorised over Arrow arrays; only
the rows that need a Python-level fix (HTML entities) go through Python.

Writes, into --out:
  catalog.parquet      uid, title, content (written to a temp file, then renamed: never half-written)
  shards/part-NNNNN.parquet   when --shard-size is given
  stats.json           counts after every cleaning step, per input file and in total, + fingerprint
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from indexing.errors import UserError
from indexing.runtime import utc_now

# Counts after each step, in order; the last one is what the catalog holds.
STEPS = ("read", "valid_json", "has_fields", "non_empty", "unique")
# Counts of records a cleaning rule changed (kept records may have been changed by several).
CHANGES = ("entities_unescaped", "footers_removed", "whitespace_fixed", "uids_generated")

BLOCK_BYTES = 8 << 20  # Arrow parses blocks of ~8 MB: big enough to amortise, small enough for RAM
BAD_LINES_KEPT = 5  # how many bad line numbers each file reports

# Any whitespace or control character, as RE2 classes (Arrow's regex engine). \s is ASCII-only in
# RE2, so the Unicode spaces (NBSP, thin spaces, line separators, BOM) are listed explicitly.
_ODD_SPACE = r"\x00-\x1f\x7f-\x9f\x{00A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}"
# A run of 2+ spaces/controls, or a single one that is not a plain space -> one plain space.
_WS_FIX = rf"[ {_ODD_SPACE}]{{2,}}|[{_ODD_SPACE}]"
# Amazon's edition footers: "--This text refers to thePaperbackedition.",
# "-- This text refers to an out of print or unavailable edition of this title."
_FOOTER = r"\s*-{1,3}\s*[Tt]his text refers to\b.{0,120}?edition(?: of this title)?\.?"

_RAW_FIELDS = ("uid", "title", "content")


@dataclass
class FileStats:
    """Counts for one input file."""

    path: str
    format: str = "?"  # "amazontitles-jsonl", "alpaca-jsonl" or "alpaca-json-array"
    counts: dict = field(default_factory=lambda: dict.fromkeys(STEPS, 0))
    changes: dict = field(default_factory=lambda: dict.fromkeys(CHANGES, 0))
    bad_lines: list = field(default_factory=list)  # first few line numbers that were not JSON objects


# --------------------------------------------------------------------------- cleaning


def _unescape_all(values: list[str]) -> list[str]:
    import html

    out = []
    for s in values:
        u = html.unescape(s)  # decimal, hex, named, and cp1252 codes (&#151; -> em dash)
        if "&" in u and u != s:  # double-escaped "&amp;#8217;" -> "&#8217;" -> "'"
            u = html.unescape(u)
        out.append(u)
    return out


def _fix_rows(arr, mask, fix):
    """Apply `fix` (Arrow array -> Arrow array) to the rows where mask is true; return (arr, n_changed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = pc.sum(mask).as_py() or 0
    if not n:
        return arr, 0
    before = pc.filter(arr, mask)
    after = fix(before)
    changed = pc.sum(pc.not_equal(before, after)).as_py() or 0
    return pc.replace_with_mask(arr, mask, after.cast(pa.string())), changed


def clean_array(arr, changes: dict | None = None):
    """Clean an Arrow string array (no nulls): unescape HTML entities, drop Amazon edition footers,
    turn control characters into spaces, collapse whitespace, trim. Counts changed rows in `changes`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    changes = changes if changes is not None else dict.fromkeys(CHANGES, 0)
    arr, n = _fix_rows(
        arr, pc.match_substring(arr, "&"), lambda a: pa.array(_unescape_all(a.to_pylist()), pa.string())
    )
    changes["entities_unescaped"] += n
    arr, n = _fix_rows(
        arr,
        pc.match_substring_regex(arr, "[Tt]his text refers to"),
        lambda a: pc.replace_substring_regex(a, _FOOTER, ""),
    )
    changes["footers_removed"] += n
    # Entities may have produced NBSPs or control chars, so whitespace is fixed after unescaping.
    arr, n = _fix_rows(
        arr, pc.match_substring_regex(arr, _WS_FIX), lambda a: pc.replace_substring_regex(a, _WS_FIX, " ")
    )
    changes["whitespace_fixed"] += n
    return pc.utf8_trim(arr, " ")


def clean(text: str) -> str:
    """Clean one string with exactly the rules `prepare` applies to every title and description."""
    import pyarrow as pa

    return clean_array(pa.array([text], pa.string()))[0].as_py()


def stable_uid(title: str, content: str) -> str:
    """Id for a record that has none: derived from its text, so re-running gives the same id."""
    return "gen-" + hashlib.blake2b(f"{title}\x1f{content}".encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- reading


def _open_bytes(path: Path):
    """Open plain or gzip input, checking it is a readable, non-empty text file."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a JSON lines or JSON file")
    with open(path, "rb") as f:
        magic = f.read(2)
    f = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    try:
        head = f.read(65536)
    except (OSError, EOFError) as e:
        f.close()
        raise UserError(f"{path}: cannot read ({e})") from None
    if not head.strip():
        f.close()
        raise UserError(f"{path}: file is empty")
    if b"\x00" in head:
        f.close()
        raise UserError(f"{path}: looks like a binary file, expected JSON lines or JSON text")
    return f, head


def _detect_format(head: bytes) -> str:
    first = head.lstrip()[:1]
    if first == b"[":
        return "alpaca-json-array"
    import orjson

    for line in head.splitlines()[:200]:  # first parseable object decides
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            if "title" in obj or "content" in obj or "uid" in obj:
                return "amazontitles-jsonl"
            if "instruction" in obj or "output" in obj:
                return "alpaca-jsonl"
    return "amazontitles-jsonl"


def _iter_line_blocks(f, head: bytes):
    """Yield (first_line_number, block_bytes) with blocks ending on a newline."""
    buf, line_no = head, 1
    while True:
        chunk = f.read(BLOCK_BYTES)
        buf += chunk
        if not chunk:
            if buf.strip():
                yield line_no, buf if buf.endswith(b"\n") else buf + b"\n"
            return
        cut = buf.rfind(b"\n") + 1
        if cut:
            block, buf = buf[:cut], buf[cut:]
            yield line_no, block
            line_no += block.count(b"\n")


def _columns_from_rows(objs, names):
    """(uid, title, content) Python lists from parsed objects, None where missing or not a string."""
    uid_k, title_k, content_k = ("uid", names[0], names[1])
    uids, titles, contents = [], [], []
    for o in objs:
        u = o.get(uid_k)
        uids.append(u if isinstance(u, str) else (str(u) if isinstance(u, int) else None))
        t, c = o.get(title_k), o.get(content_k)
        titles.append(t if isinstance(t, str) else None)
        contents.append(c if isinstance(c, str) else None)
    return uids, titles, contents


def _parse_block_lines(block: bytes, first_line: int, names, st: FileStats):
    """Slow path: parse line by line, skipping (and counting) lines that are not JSON objects."""
    import orjson

    objs = []
    for i, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        st.counts["read"] += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            if len(st.bad_lines) < BAD_LINES_KEPT:
                st.bad_lines.append(first_line + i)
            continue
        objs.append(obj)
    return _columns_from_rows(objs, names)


def _parse_block(block: bytes, first_line: int, names, st: FileStats):
    """Parse a block of JSON lines into a pyarrow Table(uid, title, content)."""
    import pyarrow as pa
    import pyarrow.json as pj

    keys = ("uid", *names)
    schema = pa.schema([(k, pa.string()) for k in keys])
    try:
        t = pj.read_json(
            io.BytesIO(block),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        st.counts["read"] += t.num_rows
        return pa.table([t[k] for k in keys], names=_RAW_FIELDS)
    except pa.ArrowInvalid:
        cols = _parse_block_lines(block, first_line, names, st)
        return pa.table([pa.array(c, pa.string()) for c in cols], names=_RAW_FIELDS)


def _iter_array_blocks(f, head: bytes, st: FileStats, rows_per_block: int = 50_000):
    """Alpaca JSON arrays are streamed item by item with ijson (they can be hundreds of MB)."""
    import ijson
    import pyarrow as pa

    stream = io.BufferedReader(_Prepend(head, f))
    batch = []
    try:
        for i, obj in enumerate(ijson.items(stream, "item", use_float=True)):
            st.counts["read"] += 1
            if not isinstance(obj, dict):
                if len(st.bad_lines) < BAD_LINES_KEPT:
                    st.bad_lines.append(i + 1)  # item number, 1-based
                continue
            batch.append(obj)
            if len(batch) >= rows_per_block:
                yield pa.table([pa.array(c, pa.string()) for c in _columns_from_rows(batch, ("instruction", "output"))],
                               names=_RAW_FIELDS)
                batch = []
    except ijson.JSONError as e:
        print(f"warning: {st.path}: JSON array is malformed after item {st.counts['read']}: {e}; "
              "keeping the items read so far", file=sys.stderr)
        st.bad_lines.append(st.counts["read"] + 1)
        st.counts["read"] += 1
    if batch:
        yield pa.table([pa.array(c, pa.string()) for c in _columns_from_rows(batch, ("instruction", "output"))],
                       names=_RAW_FIELDS)


class _Prepend(io.RawIOBase):
    """A raw stream that first returns `head`, then the rest of `f` (we already read the head)."""

    def __init__(self, head: bytes, f):
        self._head, self._f = memoryview(head), f

    def readable(self):
        return True

    def readinto(self, b):
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)


def clean_table(t, st: FileStats):
    """Apply every per-record cleaning step to a raw block and update the counts.

    Returns (table of non-empty cleaned rows, dedupe keys). Keys are Python's str hash of title and
    content, combined to 128 bits so a false "duplicate" (which would lose a record) is practically
    impossible. Python salts str hashes per interpreter: forked workers inherit the parent's salt,
    so keys from different workers of one run agree, which is all one `prepare` run needs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = t.filter(pc.and_(pc.is_valid(t["title"]), pc.is_valid(t["content"])))
    st.counts["has_fields"] += t.num_rows
    title = clean_array(t["title"].combine_chunks(), st.changes)
    content = clean_array(t["content"].combine_chunks(), st.changes)
    keep = pc.and_(pc.greater(pc.utf8_length(title), 0), pc.greater(pc.utf8_length(content), 0))
    uid = pc.filter(t["uid"].combine_chunks(), keep)
    title, content = pc.filter(title, keep), pc.filter(content, keep)
    st.counts["non_empty"] += len(title)

    titles, contents = title.to_pylist(), content.to_pylist()
    keys = [(hash(a) << 64) ^ (hash(b) & 0xFFFFFFFFFFFFFFFF) for a, b in zip(titles, contents)]
    missing = pc.or_(pc.is_null(uid), pc.equal(pc.utf8_trim_whitespace(pc.fill_null(uid, "")), ""))
    if pc.any(missing).as_py():
        miss = missing.to_pylist()
        uid = pa.array([stable_uid(a, b) if m else u for u, a, b, m in zip(uid.to_pylist(), titles, contents, miss)],
                       pa.string())
        st.changes["uids_generated"] += sum(miss)
    return pa.table([uid, title, content], names=_RAW_FIELDS), keys


def _work(job):
    """Worker: parse + clean one block of JSON lines (runs in a forked process)."""
    block, first_line, names, path = job
    st = FileStats(path)
    raw = _parse_block(block, first_line, names, st)
    st.counts["valid_json"] += raw.num_rows
    table, keys = clean_table(raw, st)
    return table, keys, st, _digest(table)


def _digest(table) -> bytes:
    """Hash of a table's exact column bytes: the pieces of the catalog fingerprint."""
    h = hashlib.blake2b(digest_size=16)
    for col in table.columns:
        for chunk in col.chunks:
            for buf in chunk.buffers()[1:]:
                if buf is not None:
                    h.update(memoryview(buf))
    return h.digest()


def _blocks(path: Path, st: FileStats, progress):
    """Jobs for `_work` (JSON lines) or finished results (JSON arrays, parsed here with ijson)."""
    f, head = _open_bytes(path)
    st.format = _detect_format(head)
    with f:
        if st.format == "alpaca-json-array":
            for raw in _iter_array_blocks(f, head, st):
                part = FileStats(str(path))
                part.counts["valid_json"] = raw.num_rows
                table, keys = clean_table(raw, part)
                yield "done", (table, keys, part, _digest(table))
            return
        names = ("title", "content") if st.format == "amazontitles-jsonl" else ("instruction", "output")
        raw_f = f.fileobj if isinstance(f, gzip.GzipFile) else f
        last = 0
        for first_line, block in _iter_line_blocks(f, head):
            pos = raw_f.tell()
            progress(pos - last)
            last = pos
            yield "job", (block, first_line, names, str(path))


def _results(path: Path, st: FileStats, progress, pool, window: int):
    """Results of every block of `path`, in file order; at most `window` blocks in flight."""
    from collections import deque

    pending = deque()
    for kind, item in _blocks(path, st, progress):
        if kind == "done":
            while pending:
                yield pending.popleft().result()
            yield item
            continue
        pending.append(pool.submit(_work, item) if pool else _Done(_work(item)))
        while len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def load_records(path: str | Path):
    """Yield cleaned pyarrow Tables (uid, title, content) of one input file, in order, without
    removing duplicates: the building block for other stages (`index add`)."""
    st = FileStats(str(path))
    for table, _keys, part, _ in _results(Path(path), st, lambda n: None, None, 1):
        _merge(st, part)
        yield table


def _merge(st: FileStats, part: FileStats) -> None:
    for k in STEPS:
        st.counts[k] += part.counts[k]
    for k in CHANGES:
        st.changes[k] += part.changes[k]
    st.bad_lines = (st.bad_lines + part.bad_lines)[:BAD_LINES_KEPT]


# --------------------------------------------------------------------------- writing


class _CatalogWriter:
    """Streams kept rows into catalog.parquet (+ optional shards) under a temp folder, fingerprinting
    the content as it goes; `commit()` moves the finished files into place."""

    def __init__(self, out: Path, shard_size: int | None):
        import pyarrow as pa

        self.out, self.shard_size = out, shard_size
        self.tmp = out / f".prepare-tmp-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        (self.tmp / "shards").mkdir(parents=True)
        self.schema = pa.schema([(k, pa.string()) for k in _RAW_FIELDS])
        self.main = self._writer(self.tmp / "catalog.parquet")
        self.shard, self.shard_rows, self.n_shards = None, 0, 0
        self.rows = 0
        self.h = hashlib.blake2b(digest_size=16)

    def _writer(self, path):
        import pyarrow.parquet as pq

        # No dictionaries: titles and descriptions rarely repeat, so trying them only costs time.
        return pq.ParquetWriter(path, self.schema, compression="zstd", compression_level=1,
                                use_dictionary=False)

    def write(self, t):
        if not t.num_rows:
            return
        t = t.cast(self.schema)
        self.main.write_table(t)
        self.rows += t.num_rows
        while self.shard_size and t.num_rows:
            if self.shard is None:
                self.shard = self._writer(self.tmp / "shards" / f"part-{self.n_shards:05d}.parquet")
                self.n_shards += 1
            take = min(self.shard_size - self.shard_rows, t.num_rows)
            self.shard.write_table(t.slice(0, take))
            self.shard_rows += take
            t = t.slice(take)
            if self.shard_rows == self.shard_size:
                self.shard.close()
                self.shard, self.shard_rows = None, 0

    def close(self):
        self.main.close()
        if self.shard is not None:
            self.shard.close()

    def commit(self, stats: dict):
        (self.tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        if (self.out / "shards").exists():
            shutil.rmtree(self.out / "shards")
        if self.n_shards:
            os.replace(self.tmp / "shards", self.out / "shards")
        os.replace(self.tmp / "catalog.parquet", self.out / "catalog.parquet")
        os.replace(self.tmp / "stats.json", self.out / "stats.json")  # last: its presence means "complete"
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self):
        try:
            self.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- driver


def prepare(inputs: list[str | Path], out: str | Path, sample_size: int | None = None,
            shard_size: int | None = None, progress: bool = True, workers: int | None = None) -> dict:
    """Clean `inputs` into a catalog under `out`; return the stats dict (also written to stats.json)."""
    from tqdm import tqdm

    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UserError("no --input given")
    for p in inputs:  # fail fast on unusable inputs, before any work
        f, _ = _open_bytes(p)
        f.close()
    if sample_size is not None and sample_size < 1:
        raise UserError("--sample-size must be >= 1")
    if shard_size is not None and shard_size < 1:
        raise UserError("--shard-size must be >= 1")
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    total_bytes = sum(p.stat().st_size for p in inputs)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", disable=not progress,
               mininterval=0.5)
    writer = _CatalogWriter(out, shard_size)
    pool = _pool(workers)
    seen: set = set()
    per_file: list[FileStats] = []
    stopped_early = False
    try:
        for p in inputs:
            st = FileStats(str(p))
            per_file.append(st)
            for table, keys, part, digest in _results(p, st, bar.update, pool, window=2 * max(workers, 1)):
                _merge(st, part)
                writer.h.update(digest)  # fingerprint: block contents in order + the final count
                # Exact duplicates across all inputs: first occurrence wins.
                unique = [k not in seen and not seen.add(k) for k in keys]
                table = table.filter(_bool_array(unique))
                st.counts["unique"] += table.num_rows
                if sample_size is not None and writer.rows + table.num_rows >= sample_size:
                    st.counts["unique"] -= writer.rows + table.num_rows - sample_size
                    writer.write(table.slice(0, sample_size - writer.rows))
                    stopped_early = True
                    break
                writer.write(table)
            if st.counts["valid_json"] == 0 and not stopped_early:
                raise UserError(f"{p}: no valid JSON records (bad lines: {_fmt_lines(st.bad_lines)})")
            if stopped_early:
                break
        writer.close()
        bar.close()
        stats = _stats_dict(per_file, inputs, writer, sample_size, stopped_early, shard_size, started)
        writer.commit(stats)
    except BaseException:
        bar.close()
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return stats


def _bool_array(values):
    import pyarrow as pa

    return pa.array(values, pa.bool_())


def _pool(workers: int):
    """Worker processes for parsing+cleaning; forked so they share the parent's str-hash salt."""
    if workers <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def _finish_fingerprint(writer) -> str:
    h = writer.h.copy()
    h.update(str(writer.rows).encode())  # a --sample-size cut changes the catalog, not the blocks
    return h.hexdigest()


def _fmt_lines(lines):
    return ", ".join(map(str, lines)) or "none"


def _stats_dict(per_file, inputs, writer, sample_size, stopped_early, shard_size, started):
    from indexing import __version__

    total = {"counts": dict.fromkeys(STEPS, 0), "changes": dict.fromkeys(CHANGES, 0)}
    for st in per_file:
        for k in STEPS:
            total["counts"][k] += st.counts[k]
        for k in CHANGES:
            total["changes"][k] += st.changes[k]
    return {
        "records": writer.rows,
        "fingerprint": _finish_fingerprint(writer),
        "steps": list(STEPS),
        "files": [
            {"path": st.path, "format": st.format, "counts": st.counts, "changes": st.changes,
             "bad_lines": st.bad_lines}
            for st in per_file
        ],
        "total": total,
        "sample_size": sample_size,
        "stopped_early_at_sample_size": stopped_early,
        "shard_size": shard_size,
        "shards": writer.n_shards,
        "inputs_bytes": sum(p.stat().st_size for p in inputs),
        "seconds": round(time.time() - started, 2),
        "created": utc_now(),
        "productqa_version": __version__,
    }


def format_stats(stats: dict) -> str:
    """The printed report: one row per file and a total, counts after every step."""
    head = ["file", "format", *STEPS, "bad lines"]
    rows = []
    for f in stats["files"]:
        rows.append([Path(f["path"]).name, f["format"], *(f"{f['counts'][k]:,}" for k in STEPS),
                     _fmt_lines(f["bad_lines"]) if f["bad_lines"] else ""])
    tot = stats["total"]
    rows.append(["TOTAL", "", *(f"{tot['counts'][k]:,}" for k in STEPS), ""])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(str(c).rjust(w) if 2 <= i < 2 + len(STEPS) else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(head), line(["-" * w for w in widths]), *map(line, rows), ""]
    c = tot["counts"]
    out.append(f"{c['read']:,} read → {c['valid_json']:,} valid JSON → {c['has_fields']:,} with title+content → "
               f"{c['non_empty']:,} non-empty → {c['unique']:,} kept (duplicates removed: "
               f"{c['non_empty'] - c['unique']:,})")
    ch = tot["changes"]
    out.append("changed: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in ch.items()))
    if stats["stopped_early_at_sample_size"]:
        out.append(f"stopped early: --sample-size {stats['sample_size']:,} reached")
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", required=True, metavar="FILE",
                   help="raw AmazonTitles JSON lines (trn.json, tst.json; .gz ok) or Alpaca JSON/JSON lines; "
                        "repeat for several files")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for catalog.parquet, stats.json, shards/")
    p.add_argument("--sample-size", type=int, metavar="N", help="stop after N clean records (quick trials)")
    p.add_argument("--shard-size", type=int, metavar="N",
                   help="also write shards/part-NNNNN.parquet of N records each (e.g. 100000)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes parsing and cleaning blocks (default: min(2, CPUs)); 1 = no subprocesses")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    stats = prepare(args.input, args.out, sample_size=args.sample_size, shard_size=args.shard_size,
                    progress=not args.quiet, workers=args.workers)
    print(format_stats(stats))
    print(f"catalog: {Path(args.out) / 'catalog.parquet'} ({stats['records']:,} products, {stats['seconds']} s)")
    return 0
