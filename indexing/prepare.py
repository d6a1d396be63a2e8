"""Prepare a clean product catalog from raw AmazonTitles JSON lines or Alpaca-style JSON.

    productqa prepare --input trn.json --input tst.json --out data/catalog [--sample-size N] [--shard-size N]
        [--require-description]

Inputs may be plain or gzip-compressed (detected from the bytes, not the name) and in any of these
formats, detected automatically:
  * raw AmazonTitles JSON lines: {"uid", "title", "content", "target_ind", "target_rel"}
  * Alpaca: a JSON array or JSON lines of {"instruction": title, "input": ..., "output": content}
  * drafts from `productqa describe`: {"uid", "title", "draft", "reviewed", ...}; a draft a person marked
    "reviewed": true becomes the product's description, the others are skipped (reported by `index add`)

Files are streamed in blocks (never loaded whole). Each block is parsed by Arrow's C++ JSON reader;
a block that Arrow rejects (a malformed line, a title that is a number...) is re-read line by line
so that only the bad lines are skipped and counted. Cleaning is vectorised over Arrow arrays; only
the rows that need a Python-level fix (HTML entities) go through Python.

Every record with a title is a product a shopper may ask about, so a record whose description is
empty (~38% of trn.json), or becomes empty when cleaning removes an edition footer, is kept as a
title-only product (`has_description` false): search finds it by its title and answers say the catalog
holds no description of it. `--require-description` drops them instead (the catalog as it was before
title-only products were kept).
Duplicates: the first of several records with the same title and description wins; a title-only
record whose title a described record also has collapses into the described one (wherever either
comes), and of several title-only records with one title the first wins.

Writes, into --out:
  catalog.parquet      uid, title, content, has_description (written to a temp file, then renamed: never
                       half-written): the described products in input order, then the title-only ones
                       (they wait to the end: a later described record with their title removes them)
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

# Counts after each step, in order; "unique" is what the catalog holds. has_fields: records with a title
# (and a description, with --require-description); non_empty: those fields not empty after cleaning.
STEPS = ("read", "valid_json", "has_fields", "non_empty", "unique")
# What the kept ("unique") records are: with a description, or title only.
KINDS = ("with_description", "title_only")
# Counts of records a cleaning rule changed (kept records may have been changed by several);
# descriptions_emptied: a non-empty description that cleaning left empty (only an edition footer, spaces).
CHANGES = ("entities_unescaped", "footers_removed", "whitespace_fixed", "uids_generated", "descriptions_emptied")
# Why a record is not in the catalog (FileStats.skipped; `index add` reports each one)
SKIP_NOT_JSON = "not a JSON object"
SKIP_NO_TITLE = "no title"
SKIP_EMPTY_TITLE = "title empty after cleaning"
SKIP_NO_DESCRIPTION = "no description (--require-description)"
SKIP_UNREVIEWED = "draft not reviewed (a reviewed one has \"reviewed\": true)"

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
FIELDS = (*_RAW_FIELDS, "has_description")  # catalog.parquet's columns


@dataclass
class FileStats:
    """Counts for one input file."""

    path: str
    format: str = "?"  # "amazontitles-jsonl", "alpaca-jsonl" or "alpaca-json-array"
    counts: dict = field(default_factory=lambda: dict.fromkeys(STEPS + KINDS, 0))
    changes: dict = field(default_factory=lambda: dict.fromkeys(CHANGES, 0))
    bad_lines: list = field(default_factory=list)  # first few line numbers that were not JSON objects
    keep_bad: int = BAD_LINES_KEPT  # how many bad line numbers to keep (None: all, for `index add`)
    # records dropped by cleaning, when asked for (`skipped` not None): (record number in the file, 1-based,
    # among its JSON objects; uid or None; title or None; reason)
    skipped: list | None = None

    def bad(self, line: int) -> None:
        if self.keep_bad is None or len(self.bad_lines) < self.keep_bad:
            self.bad_lines.append(line)


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
            if "draft" in obj:
                return "drafts-jsonl"
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
    return _columns_from_rows([obj for _, obj in _json_objects(block.split(b"\n"), first_line, st)], names)


def _json_objects(lines, first_line: int, st: FileStats):
    """(line number, object) of each line that is a JSON object; the others counted bad (st.bad)."""
    import orjson

    for i, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        st.counts["read"] += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            st.bad(i)
            continue
        yield i, obj


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
                st.bad(i + 1)  # item number, 1-based
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


def _iter_draft_blocks(f, head: bytes, st: FileStats, rows_per_block: int = 50_000):
    """`productqa describe`'s drafts, line by line: the reviewed ones as records whose description is the
    draft; the others skipped (st.skipped, when recorded) and counted as valid JSON only."""
    import pyarrow as pa

    def table(objs):
        cols = _columns_from_rows(objs, ("title", "draft"))
        return pa.table([pa.array(c, pa.string()) for c in cols], names=_RAW_FIELDS)

    batch, n_valid = [], 0
    for _, obj in _json_objects((head + f.read()).split(b"\n"), 1, st):
        n_valid += 1
        if obj.get("reviewed") is True:
            batch.append(obj)
        else:
            st.counts["valid_json"] += 1
            if st.skipped is not None:
                st.skipped.append((n_valid, obj.get("uid"), obj.get("title"), SKIP_UNREVIEWED))
        if len(batch) >= rows_per_block:
            yield table(batch)
            batch = []
    if batch:
        yield table(batch)


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


def clean_table(t, st: FileStats, require_description: bool = False):
    """Apply every per-record cleaning step to a raw block and update the counts.

    Returns (table of the kept cleaned rows: FIELDS, dedupe keys, title keys). A row is kept when its
    title is not empty after cleaning (and its description, with `require_description`); an empty or
    missing description makes it a title-only product. Keys are Python's str hash of title and content
    (title keys: of the title alone), combined to 128 bits so a false "duplicate" (which would lose a
    record) is practically impossible. Python salts str hashes per interpreter: forked workers inherit the
    parent's salt, so keys from different workers of one run agree, which is all one `prepare` run needs.
    With `st.skipped` a list, every dropped row is recorded there with its reason (its record number is
    relative to this block: the caller adds the block's offset)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    has = pc.is_valid(t["title"])
    if require_description:
        has = pc.and_(has, pc.is_valid(t["content"]))
    if st.skipped is not None:
        _skip(st, t, pc.invert(has), lambda row: SKIP_NO_TITLE if row["title"] is None else SKIP_NO_DESCRIPTION)
    positions = pc.indices_nonzero(has) if st.skipped is not None else None
    t = t.filter(has)
    st.counts["has_fields"] += t.num_rows
    title = clean_array(t["title"].combine_chunks(), st.changes)
    raw_content = pc.fill_null(t["content"].combine_chunks(), "")
    content = clean_array(raw_content, st.changes)
    described = pc.greater(pc.utf8_length(content), 0)
    st.changes["descriptions_emptied"] += pc.sum(pc.and_(pc.greater(pc.utf8_length(raw_content), 0),
                                                         pc.invert(described))).as_py() or 0
    keep = pc.greater(pc.utf8_length(title), 0)
    if require_description:
        keep = pc.and_(keep, described)
    if st.skipped is not None:
        kept_t = t.set_column(t.schema.get_field_index("title"), "title", title)
        kept_t = kept_t.append_column("_row", positions)
        _skip(st, kept_t, pc.invert(keep),
              lambda row: SKIP_EMPTY_TITLE if not row["title"] else SKIP_NO_DESCRIPTION, rows="_row")
    uid = pc.filter(t["uid"].combine_chunks(), keep)
    title, content, described = pc.filter(title, keep), pc.filter(content, keep), pc.filter(described, keep)
    st.counts["non_empty"] += len(title)

    titles, contents = title.to_pylist(), content.to_pylist()
    mask = 0xFFFFFFFFFFFFFFFF
    keys = [(hash(a) << 64) ^ (hash(b) & mask) for a, b in zip(titles, contents)]
    title_keys = [(hash(a) << 64) ^ (hash(a + "\x1f") & mask) for a in titles]
    missing = pc.or_(pc.is_null(uid), pc.equal(pc.utf8_trim_whitespace(pc.fill_null(uid, "")), ""))
    if pc.any(missing).as_py():
        miss = missing.to_pylist()
        uid = pa.array([stable_uid(a, b) if m else u for u, a, b, m in zip(uid.to_pylist(), titles, contents, miss)],
                       pa.string())
        st.changes["uids_generated"] += sum(miss)
    return pa.table([uid, title, content, described], names=FIELDS), keys, title_keys


def _skip(st: FileStats, t, dropped, reason, rows: str | None = None) -> None:
    """Record the rows of `t` where `dropped` is true in st.skipped: (row in the block, uid, title, reason)."""
    import pyarrow.compute as pc

    if not (pc.sum(dropped).as_py() or 0):
        return
    cols = ["uid", "title"] + ([rows] if rows else [])
    for i, row in zip(pc.indices_nonzero(dropped).to_pylist(), t.filter(dropped).select(cols).to_pylist()):
        st.skipped.append((row[rows] if rows else i, row["uid"], row["title"], reason(row)))


def _work(job):
    """Worker: parse + clean one block of JSON lines (runs in a forked process)."""
    block, first_line, names, path, require, want_skipped = job
    st = FileStats(path, skipped=[] if want_skipped else None, keep_bad=None if want_skipped else BAD_LINES_KEPT)
    raw = _parse_block(block, first_line, names, st)
    st.counts["valid_json"] += raw.num_rows
    table, keys, title_keys = clean_table(raw, st, require)
    return table, keys, title_keys, st, _digest(table)


def _digest(table) -> bytes:
    """Hash of a table's exact column bytes: the pieces of the catalog fingerprint."""
    h = hashlib.blake2b(digest_size=16)
    for col in table.columns:
        for chunk in col.chunks:
            for buf in chunk.buffers()[1:]:
                if buf is not None:
                    h.update(memoryview(buf))
    return h.digest()


def _blocks(path: Path, st: FileStats, progress, require: bool = False):
    """Jobs for `_work` (JSON lines) or finished results (JSON arrays, parsed here with ijson)."""
    f, head = _open_bytes(path)
    st.format = _detect_format(head)
    want_skipped = st.skipped is not None
    with f:
        if st.format in ("alpaca-json-array", "drafts-jsonl"):
            blocks = (_iter_array_blocks if st.format == "alpaca-json-array" else _iter_draft_blocks)(f, head, st)
            for raw in blocks:
                part = FileStats(str(path), skipped=[] if want_skipped else None)
                part.counts["valid_json"] = raw.num_rows
                table, keys, title_keys = clean_table(raw, part, require)
                yield "done", (table, keys, title_keys, part, _digest(table))
            return
        names = ("title", "content") if st.format == "amazontitles-jsonl" else ("instruction", "output")
        raw_f = f.fileobj if isinstance(f, gzip.GzipFile) else f
        last = 0
        for first_line, block in _iter_line_blocks(f, head):
            pos = raw_f.tell()
            progress(pos - last)
            last = pos
            yield "job", (block, first_line, names, str(path), require, want_skipped)


def _results(path: Path, st: FileStats, progress, pool, window: int, require: bool = False):
    """Results of every block of `path`, in file order; at most `window` blocks in flight."""
    from collections import deque

    pending = deque()
    for kind, item in _blocks(path, st, progress, require):
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


def load_records(path: str | Path, stats: FileStats | None = None):
    """Yield cleaned pyarrow Tables (FIELDS) of one input file, in order, without removing duplicates: the
    building block for other stages (`index add`). Title-only records are kept. `stats`, when given, gets
    the counts, every line that is not a JSON object (bad_lines) and every record cleaning dropped
    (skipped, with record numbers counted over the file)."""
    st = stats if stats is not None else FileStats(str(path))
    if stats is not None:
        st.skipped, st.keep_bad = [] if st.skipped is None else st.skipped, None
    for table, _keys, _tkeys, part, _ in _results(Path(path), st, lambda n: None, None, 1):
        _merge(st, part)
        yield table


def _merge(st: FileStats, part: FileStats) -> None:
    if st.skipped is not None and part.skipped:  # block-relative record numbers -> the file's, 1-based
        offset = st.counts["valid_json"]
        st.skipped.extend((offset + i + 1, uid, title, why) for i, uid, title, why in part.skipped)
    for k in STEPS + KINDS:
        st.counts[k] += part.counts[k]
    for k in CHANGES:
        st.changes[k] += part.changes[k]
    keep = st.keep_bad if st.keep_bad is not None else len(st.bad_lines) + len(part.bad_lines)
    st.bad_lines = (st.bad_lines + part.bad_lines)[:keep]


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
        self.schema = pa.schema([*((k, pa.string()) for k in _RAW_FIELDS), ("has_description", pa.bool_())])
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
            shard_size: int | None = None, progress: bool = True, workers: int | None = None,
            require_description: bool = False) -> dict:
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
    dedupe = _Dedupe()
    per_file: list[FileStats] = []
    stopped_early = False
    try:
        for p in inputs:
            st = FileStats(str(p))
            per_file.append(st)
            for table, keys, title_keys, part, digest in _results(p, st, bar.update, pool,
                                                                  window=2 * max(workers, 1),
                                                                  require=require_description):
                _merge(st, part)
                writer.h.update(digest)  # fingerprint: block contents in order + the final count
                table, title_keys = dedupe.filter(table, keys, title_keys)
                if sample_size is not None and writer.rows + dedupe.waiting + table.num_rows >= sample_size:
                    take = sample_size - writer.rows - dedupe.waiting
                    table, title_keys = table.slice(0, take), title_keys[:take]
                    stopped_early = True
                st.counts["unique"] += table.num_rows
                writer.write(dedupe.hold_title_only(table, title_keys, st))
                if stopped_early:
                    break
            if st.counts["valid_json"] == 0 and not stopped_early:
                raise UserError(f"{p}: no valid JSON records (bad lines: {_fmt_lines(st.bad_lines)})")
            if stopped_early:
                break
        for table in dedupe.release():  # title-only products no described one with their title replaced
            writer.write(table)
        for st in per_file:
            st.counts["title_only"] = st.counts["unique"] - st.counts["with_description"]
        writer.close()
        bar.close()
        stats = _stats_dict(per_file, inputs, writer, sample_size, stopped_early, shard_size, started,
                            require_description)
        writer.commit(stats)
    except BaseException:
        bar.close()
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return stats


class _Dedupe:
    """Duplicates across all inputs. Described records: the first with a given title and description wins.
    Title-only records wait to the end (`hold_title_only`, `release`): the first with a given title is kept
    unless some described record has that title, before or after it (then it collapses into that one)."""

    def __init__(self):
        self.seen: set = set()  # (title, description) keys of kept described records
        self.described_titles: set = set()
        self.title_only: set = set()  # title keys of held title-only records
        self.held: list = []  # (FileStats, table, title keys) of title-only records, in input order
        self.waiting = 0  # rows held

    def filter(self, table, keys, title_keys):
        """The rows of a block that are not duplicates of rows kept so far (and their title keys)."""
        described = table.column("has_description").to_pylist()
        keep = []
        for d, k, tk in zip(described, keys, title_keys):
            if d:
                keep.append(k not in self.seen and not self.seen.add(k))
            else:
                keep.append(tk not in self.title_only and tk not in self.described_titles
                            and not self.title_only.add(tk))
        return table.filter(_bool_array(keep)), [tk for tk, k in zip(title_keys, keep) if k]

    def hold_title_only(self, table, title_keys, st: FileStats):
        """The described rows of `table` (written now); its title-only rows are held."""
        import pyarrow.compute as pc

        described = table.column("has_description")
        self.described_titles.update(tk for tk, d in zip(title_keys, described.to_pylist()) if d)
        title_only = pc.invert(described)
        n = pc.sum(title_only).as_py() or 0
        if n:
            self.held.append((st, table.filter(title_only),
                              [tk for tk, d in zip(title_keys, described.to_pylist()) if not d]))
            self.waiting += n
        st.counts["with_description"] += table.num_rows - n
        return table.filter(described)

    def release(self):
        """The held title-only rows whose title no described record has; the others are counted out of
        their file's "unique"."""
        for st, table, tkeys in self.held:
            keep = [tk not in self.described_titles for tk in tkeys]
            st.counts["unique"] -= len(keep) - sum(keep)
            yield table.filter(_bool_array(keep))
        self.held, self.waiting = [], 0


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


def _stats_dict(per_file, inputs, writer, sample_size, stopped_early, shard_size, started, require_description):
    from indexing import __version__

    total = {"counts": dict.fromkeys(STEPS + KINDS, 0), "changes": dict.fromkeys(CHANGES, 0)}
    for st in per_file:
        for k in STEPS + KINDS:
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
        "with_description": total["counts"]["with_description"],
        "title_only": total["counts"]["title_only"],
        "require_description": require_description,
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
    cols = STEPS + KINDS
    head = ["file", "format", *cols, "bad lines"]
    rows = []
    for f in stats["files"]:
        rows.append([Path(f["path"]).name, f["format"], *(f"{f['counts'].get(k, 0):,}" for k in cols),
                     _fmt_lines(f["bad_lines"]) if f["bad_lines"] else ""])
    tot = stats["total"]
    rows.append(["TOTAL", "", *(f"{tot['counts'].get(k, 0):,}" for k in cols), ""])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(str(c).rjust(w) if 2 <= i < 2 + len(cols) else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(head), line(["-" * w for w in widths]), *map(line, rows), ""]
    c = tot["counts"]
    fields = "title+content" if stats.get("require_description") else "a title"
    out.append(f"{c['read']:,} read → {c['valid_json']:,} valid JSON → {c['has_fields']:,} with {fields} → "
               f"{c['non_empty']:,} non-empty → {c['unique']:,} kept (duplicates removed: "
               f"{c['non_empty'] - c['unique']:,}) → {c.get('with_description', c['unique']):,} with a description, "
               f"{c.get('title_only', 0):,} title only")
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
    p.add_argument("--require-description", action="store_true",
                   help="drop products without a description (default: keep them as title-only products, which "
                        "search finds by title and answers say have no description)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes parsing and cleaning blocks (default: min(2, CPUs)); 1 = no subprocesses")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    stats = prepare(args.input, args.out, sample_size=args.sample_size, shard_size=args.shard_size,
                    progress=not args.quiet, workers=args.workers, require_description=args.require_description)
    print(format_stats(stats))
    print(f"catalog: {Path(args.out) / 'catalog.parquet'} ({stats['records']:,} products: "
          f"{stats['with_description']:,} with a description, {stats['title_only']:,} title only; "
          f"{stats['seconds']} s)")
    return 0
