"""Update an index without rewriting it: upsert products by uid, remove them, compact.

    productqa index add     --index data/index --input new_or_changed.jsonl
    productqa index remove  --index data/index --uid 0001360000 0000031895
    productqa index compact --index data/index

New records go through exactly the cleaning of `productqa prepare`: a record without a description is
added as a title-only product (found by its title), and every record an add does not take is reported
with its reason (a line that is not JSON, no title, an earlier record superseded by a later one with the
same uid, a draft not marked reviewed). Only new/changed products are
embedded (their titles and description passages). An add writes them as a delta segment (their docs,
vectors and BM25 indexes over their own texts); the products it replaces, and those a remove takes
out, become tombstones; everything else is shared with the previous version as hard links
(indexing/store.py), so an update writes what it changes, not the index. Search merges base + deltas
- tombstones at load (indexing/delta.py). Once the deltas and tombstones pass COMPACT_FRACTION of the
base, the update starts a compaction in the background and returns (`compact="background"`, the
default): a detached, niced `productqa index compact --if-needed` process that waits for the writer
lock, rewrites base + deltas as one base (both FAISS indexes, docs, passages, all BM25 indexes
rebuilt: what a build writes) and commits it as the next version, logging to INDEX/compact.log;
serving processes keep answering from the version they have and pick up the compacted one like any
other. `compact="now"` compacts inside the update instead, `"never"` leaves it to `index compact`.

Every update holds the index's writer lock (a second one waits up to `wait` seconds, then fails with
a one-line error) and commits a new version: readers keep the version they loaded, and running
servers pick up the new one (indexing/follow.py). A killed update leaves the previous version live.
A title-only (format 1) index stays title-only; the learned fusion (ranker.txt) is kept as it is.
"""

from __future__ import annotations

from pathlib import Path

from indexing.errors import UserError
from indexing.store import WAIT

# Compact when delta products + tombstones exceed this share of the base's products: past it, the merge
# at every load and the BM25 drift (indexing/delta.py) grow, and a rewrite costs about a tenth of a build
# (benchmarks/update.py measures both).
COMPACT_FRACTION = 0.10
COMPACT_MODES = ("background", "now", "never")  # what an update past COMPACT_FRACTION does (module docstring)


def _live(folder: Path, meta: dict, dead):
    """(id, uid) of the live products and the product id of every live passage (None: a title-only index)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from indexing.store import DELTAS, DOCS, PASSAGES, has_passages, read_docs

    docs = [read_docs(folder, meta, columns=["id", "uid"])]
    owners = [pq.read_table(folder / PASSAGES, columns=["id"]).column(0).to_numpy()] if has_passages(meta) else None
    for d in meta.get("deltas", []):
        f = folder / DELTAS / d["name"]
        docs.append(pq.read_table(f / DOCS, columns=["id", "uid"]).to_pandas())
        if owners is not None and d["passages"]:
            owners.append(pq.read_table(f / PASSAGES, columns=["id"]).column(0).to_numpy())
    docs = pd.concat(docs, ignore_index=True)
    docs = docs[~docs["id"].isin(dead)].reset_index(drop=True)
    if owners is not None:
        owners = np.concatenate(owners)
        owners = owners[~np.isin(owners, dead)]
    return docs, owners


def _commit_delta(root, folder: Path, meta: dict, dead, delta: dict | None, live_count: int,
                  live_passages: int | None) -> dict:
    """A version sharing `folder`'s files, plus the tombstones `dead` and (if given) one new delta."""
    from indexing.store import (
        commit,
        has_passages,
        link_version,
        read_meta,
        utc_now,
        write_delta,
        write_meta,
        write_tombstones,
    )

    if "base" not in meta:  # the first delta or tombstone: from now on the base files hold other counts
        meta = {**meta, "base": {"products": meta["count"],
                                 "passages": meta["passages"]["count"] if has_passages(meta) else 0}}
    meta = {**meta, "count": live_count, "updated": utc_now()}
    with commit(root) as tmp:
        link_version(folder, tmp)
        if delta is not None:
            n = int(meta.get("next_delta", 1))
            entry = write_delta(tmp, f"{n:06d}", **delta)
            meta["deltas"] = [*meta.get("deltas", []), entry]
            meta["next_delta"] = n + 1
        meta["tombstones"] = len(dead)
        if len(dead):
            meta["tombstones_bytes"] = write_tombstones(tmp, dead)
        if has_passages(meta):
            meta["passages"] = {**meta["passages"], "count": live_passages}
        write_meta(tmp, meta)
    return read_meta(root)


def _pending(meta: dict) -> int:
    return sum(d["count"] for d in meta.get("deltas", [])) + int(meta.get("tombstones", 0))


def _check_mode(mode: str) -> None:
    if mode not in COMPACT_MODES:
        raise ValueError(f"compact must be one of {COMPACT_MODES}, not {mode!r}")


def _over_threshold(meta: dict) -> bool:
    return _pending(meta) > COMPACT_FRACTION * max(meta.get("base", {}).get("products", meta["count"]), 1)


def _maybe_compact(root, meta: dict, mode: str, progress: bool) -> dict:
    """After an update's commit: {"compacted": bool, "compacting": pid of a background compaction or None}."""
    if mode == "never" or not _over_threshold(meta):
        return {"compacted": False, "compacting": None}
    base = meta.get("base", {}).get("products", meta["count"])
    if mode == "now":
        if progress:
            print(f"compacting: {_pending(meta):,} delta products and tombstones > {COMPACT_FRACTION:.0%} of the "
                  f"{base:,}-product base", flush=True)
        _compact(root)
        return {"compacted": True, "compacting": None}
    from indexing.store import COMPACT_LOG

    pid = start_compaction(root)
    if progress:
        print(f"{_pending(meta):,} delta products and tombstones > {COMPACT_FRACTION:.0%} of the {base:,}-product "
              f"base: compacting in the background (pid {pid}, log {Path(root) / COMPACT_LOG})", flush=True)
    return {"compacted": False, "compacting": pid}


def start_compaction(root) -> int:
    """Start `index compact --if-needed` as a detached process (its own session: a Ctrl-C of the update
    does not stop it; niced: serving processes keep the CPU) and return its pid. It waits for the
    writer lock (this update still holds it) and appends its output to INDEX/compact.log."""
    import subprocess
    import sys

    from indexing.store import COMPACT_LOG

    root = Path(root).resolve()
    with open(root / COMPACT_LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "indexing.index_cli", "compact", "--index", str(root),
                                 "--if-needed", "--nice", "10", "--wait", "3600"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def _compact(root) -> dict:
    """Rewrite base + deltas - tombstones as one base (what a build writes, without re-embedding)."""
    import shutil

    from indexing.delta import read_version
    from indexing.lexical import build_bm25, build_char_bm25
    from indexing.store import (
        BM25_CHARS,
        BM25_PASSAGES,
        CARDS,
        PASSAGE_VECTORS,
        RANKER,
        commit,
        open_version,
        read_meta,
        utc_now,
        write_bm25,
        write_docs,
        write_faiss,
        write_meta,
        write_passages,
    )
    from indexing.texts import lexical_texts, passage_texts

    with open_version(root) as folder:
        meta = read_meta(folder)
        v = read_version(folder, meta)
    docs, passages = v["docs"], v["passages"]
    meta = {k: x for k, x in meta.items() if k not in ("deltas", "tombstones", "tombstones_bytes", "base")}
    meta.update(count=len(docs), updated=utc_now(), compacted=utc_now())
    with commit(root) as tmp:
        write_faiss(tmp, v["titles"])
        write_docs(tmp, docs)
        write_bm25(tmp, build_bm25(lexical_texts(docs["title"], docs["content"], meta["lexical"])))
        if meta.get("fuzzy"):
            write_bm25(tmp, build_char_bm25(docs["title"].tolist()), BM25_CHARS)
        if v["cards"] is not None:
            write_faiss(tmp, v["cards"], CARDS)
            meta["multilingual"] = {**meta["multilingual"], "count": int(v["cards"].ntotal)}
        if meta.get("ranker"):  # the learned fusion reads features, not products: it stays valid
            shutil.copy2(folder / RANKER, tmp / RANKER)  # under the writer lock: no one removes `folder`
        if passages is not None:
            meta["passages"] = {**meta["passages"], "count": len(passages)}
            if v["passage_index"] is not None:  # None: passages searched by BM25 alone
                write_faiss(tmp, v["passage_index"], PASSAGE_VECTORS)
            write_passages(tmp, passages)
            write_bm25(tmp, build_bm25(passage_texts(dict(zip(docs["id"], docs["content"])), passages)), BM25_PASSAGES)
        write_meta(tmp, meta)
    return read_meta(root)


def compact(root, wait: float = WAIT, if_needed: bool = False) -> dict:
    """`productqa index compact`: base + deltas - tombstones rewritten as one base, as a new version.
    `if_needed`: only when they are still past COMPACT_FRACTION once the lock is held (a background
    compaction that another one, or a build, got ahead of has nothing to do)."""
    from indexing.store import read_meta, writer

    with writer(root, wait, what="index compact"):
        before = read_meta(root)
        if not _pending(before) or (if_needed and not _over_threshold(before)):
            return {"compacted": False, "count": before["count"], "version": before["version"]}
        meta = _compact(root)
        return {"compacted": True, "count": meta["count"], "version": meta["version"],
                "deltas": len(before.get("deltas", [])), "tombstones": int(before.get("tombstones", 0))}


def add_products(root, inputs: list, batch_size: int = 64, device: str | None = None,
                 progress: bool = True, wait: float = WAIT, compact: str = "background") -> dict:
    """Upsert the products of `inputs` (raw or Alpaca files) by uid. Returns counts, the new version and
    what became of compaction (`compact`: COMPACT_MODES; "never": run `index compact` later, at night)."""
    from indexing.store import writer

    _check_mode(compact)
    with writer(root, wait, what="index add"):
        return _add(root, inputs, batch_size, device, progress, compact)


def _add(root, inputs, batch_size, device, progress, compact: str) -> dict:
    import numpy as np

    from indexing.embed import base_model_path, embed, load_index_encoders
    from indexing.lexical import build_bm25, build_char_bm25
    from indexing.store import has_passage_vectors, has_passages, open_version, read_meta, read_tombstones
    from indexing.texts import Splitter, dense_texts, lexical_texts, passage_texts

    with open_version(root) as folder:
        meta = read_meta(folder)
    new, skipped = read_updates(inputs)
    if new.empty:
        raise UserError(f"no usable products in {', '.join(map(str, inputs))}"
                        + (f" ({len(skipped):,} skipped: {skipped[0]['reason']}, ...)" if skipped else ""))
    dead = read_tombstones(folder, meta)
    live, owners = _live(folder, meta, dead)
    replaced = live[live["uid"].isin(new["uid"])]
    model, passage_model = load_index_encoders(meta, None, device, folder)
    ids = np.arange(meta["next_id"], meta["next_id"] + len(new), dtype=np.int64)
    new.insert(0, "id", ids)
    delta = {"docs": new[["id", "uid", "title", "content"]],
             "titles": embed(model, dense_texts(new["title"], new["content"], meta["embed"]), batch_size,
                             progress=progress),
             "bm25": build_bm25(lexical_texts(new["title"], new["content"], meta["lexical"])),
             "bm25_chars": build_char_bm25(new["title"].tolist()) if meta.get("fuzzy") else None}
    if meta.get("multilingual"):  # the new products' multilingual cards, by the encoder the index was built with
        from indexing import multilingual

        multilingual.check(meta, root)
        delta["cards"] = multilingual.embed(multilingual.card_texts(new["title"].tolist(), new["content"].tolist()))
    meta = {**meta, "next_id": int(ids[-1]) + 1}
    live_passages = None
    if has_passages(meta):
        p = meta["passages"]
        splitter = Splitter(p["max_tokens"], base_model_path(meta["embedding_model"]), p.get("split", "tokens"))
        fresh = splitter.split_many(new["id"], new["content"], first_pid=p["next_pid"])
        if len(fresh):
            texts = passage_texts(dict(zip(new["id"], new["content"])), fresh)
            vectors = embed(passage_model, texts, batch_size, progress=progress) if has_passage_vectors(meta) else None
            delta.update(passages=fresh, passage_vectors=vectors, bm25_passages=build_bm25(texts))
        meta["passages"] = {**p, "next_pid": int(p["next_pid"]) + len(fresh)}
        live_passages = int((~np.isin(owners, replaced["id"].to_numpy())).sum()) + len(fresh)
    dead = np.union1d(dead, replaced["id"].to_numpy())
    meta = _commit_delta(root, folder, meta, dead, delta, len(live) - len(replaced) + len(new), live_passages)
    c = _maybe_compact(root, meta, compact, progress)
    return {"added": len(new) - len(replaced), "replaced": len(replaced), "count": meta["count"],
            "title_only": int((new["content"].str.len() == 0).sum()), "skipped": skipped,
            "version": meta["version"] + c["compacted"], **c}


def read_updates(inputs: list) -> tuple:
    """(the products of `inputs`, cleaned as prepare cleans them, one per uid: the last record of each; the
    records not taken: [{"file", "line" or "record", "uid", "title", "reason"}], in file order)."""
    import pandas as pd
    import pyarrow as pa

    from indexing.prepare import SKIP_NOT_JSON, FileStats, load_records

    tables, skipped = [], []
    for path in inputs:
        st = FileStats(str(path))
        for t in load_records(path, st):
            tables.append(t.append_column("_file", pa.array([str(path)] * t.num_rows, pa.string())))
        skipped += [{"file": str(path), "line": n, "uid": None, "title": None, "reason": SKIP_NOT_JSON}
                    for n in st.bad_lines]
        skipped += [{"file": str(path), "record": n, "uid": uid, "title": title, "reason": why}
                    for n, uid, title, why in st.skipped]
    new = (pa.concat_tables(tables).to_pandas() if tables
           else pd.DataFrame(columns=["uid", "title", "content", "has_description", "_file"]))
    earlier = new.duplicated("uid", keep="last")
    skipped += [{"file": f, "uid": u, "title": t, "reason": "the same uid again later in the input: the later "
                 "record is the one added"} for u, t, f in zip(new["uid"][earlier], new["title"][earlier],
                                                               new["_file"][earlier])]
    return new[~earlier].drop(columns=["_file"]).reset_index(drop=True), skipped


def remove_products(root, uids: list[str], wait: float = WAIT, progress: bool = True,
                    compact: str = "background") -> dict:
    """Remove products (and their passages) by uid. Returns counts, the uids that were not in the index
    and the new version (None when nothing was removed: no version is committed)."""
    from indexing.store import writer

    _check_mode(compact)
    with writer(root, wait, what="index remove"):
        return _remove(root, uids, progress, compact)


def _remove(root, uids: list[str], progress: bool, compact: str) -> dict:
    import numpy as np

    from indexing.store import open_version, read_meta, read_tombstones

    with open_version(root) as folder:
        meta = read_meta(folder)
    dead = read_tombstones(folder, meta)
    live, owners = _live(folder, meta, dead)
    gone = live[live["uid"].isin(uids)]
    not_found = sorted(set(uids) - set(gone["uid"]))
    if len(gone) == 0:
        return {"removed": 0, "not_found": not_found, "count": len(live), "version": None, "compacted": False,
                "compacting": None}
    if len(gone) == len(live):
        raise UserError("removing these would leave the index empty; build a new one instead")
    live_passages = None if owners is None else int((~np.isin(owners, gone["id"].to_numpy())).sum())
    meta = _commit_delta(root, folder, meta, np.union1d(dead, gone["id"].to_numpy()), None, len(live) - len(gone),
                         live_passages)
    c = _maybe_compact(root, meta, compact, progress)
    return {"removed": len(gone), "not_found": not_found, "count": meta["count"],
            "version": meta["version"] + c["compacted"], **c}
