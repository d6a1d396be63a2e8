"""Update an index in place without re-embedding everything: upsert products by uid, or remove them.

    productqa index add    --index data/index --input new_or_changed.jsonl
    productqa index remove --index data/index --uid 0001360000 0000031895

New records go through exactly the cleaning of `productqa prepare`. Only new/changed products are
embedded (their titles and description passages); FAISS vectors are removed/added by id; both BM25
indexes are rebuilt over the updated texts (cheap next to embedding). An update holds the index's
writer lock (a second one waits up to `wait` seconds, then fails with a one-line error) and commits
a new version (indexing/store.py): readers keep the version they loaded, and running servers pick up
the new one (indexing/follow.py). A killed update leaves the previous version live. A title-only (format 1) index stays title-only; the learned
fusion (ranker.txt) is kept as it is, the typo-tolerant title index is rebuilt.
"""

from __future__ import annotations

from pathlib import Path

from indexing.errors import UserError
from indexing.store import WAIT


def _load(root):
    from indexing.store import (PASSAGE_VECTORS, has_passages, open_version, read_docs, read_faiss, read_meta,
                                read_passages)

    with open_version(root) as folder:
        meta = read_meta(folder)
        passages = read_passages(folder, meta)
        pindex = read_faiss(folder, meta, PASSAGE_VECTORS) if has_passages(meta) else None
        return folder, meta, read_docs(folder, meta), read_faiss(folder, meta), passages, pindex


def _save(root, folder: Path, meta: dict, docs, index, passages, pindex) -> dict:
    import shutil

    from indexing.lexical import build_bm25, build_char_bm25
    from indexing.store import (BM25_CHARS, BM25_PASSAGES, PASSAGE_VECTORS, RANKER, commit, read_meta, utc_now,
                                write_bm25, write_docs, write_faiss, write_meta, write_passages)
    from indexing.texts import lexical_texts, passage_texts

    meta = {**meta, "count": len(docs), "updated": utc_now()}
    with commit(root) as tmp:
        write_faiss(tmp, index)
        write_docs(tmp, docs)
        write_bm25(tmp, build_bm25(lexical_texts(docs["title"], docs["content"], meta["lexical"])))
        if meta.get("fuzzy"):
            write_bm25(tmp, build_char_bm25(docs["title"].tolist()), BM25_CHARS)
        if meta.get("ranker"):  # the learned fusion reads features, not products: it stays valid
            shutil.copy2(folder / RANKER, tmp / RANKER)
        if passages is not None:
            meta["passages"] = {**meta["passages"], "count": len(passages)}
            write_faiss(tmp, pindex, PASSAGE_VECTORS)
            write_passages(tmp, passages)
            write_bm25(tmp, build_bm25(passage_texts(dict(zip(docs["id"], docs["content"])), passages)), BM25_PASSAGES)
        write_meta(tmp, meta)
    return read_meta(root)


def add_products(root, inputs: list, batch_size: int = 64, device: str | None = None,
                 progress: bool = True, wait: float = WAIT) -> dict:
    """Upsert the products of `inputs` (raw or Alpaca files) by uid. Returns counts and the new version."""
    from indexing.store import writer

    with writer(root, wait, what="index add"):
        return _add(root, inputs, batch_size, device, progress)


def _add(root, inputs, batch_size, device, progress) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from indexing.embed import check_model, embed, load_encoder
    from indexing.prepare import load_records
    from indexing.texts import Splitter, dense_texts, passage_texts

    folder, meta, docs, index, passages, pindex = _load(root)
    tables = [t for path in inputs for t in load_records(path)]
    new = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=["uid", "title", "content"])
    new = new.drop_duplicates("uid", keep="last")
    if new.empty:
        raise UserError(f"no usable products in {', '.join(map(str, inputs))}")
    model = load_encoder(check_model(meta, where=folder), device)
    replaced = docs[docs["uid"].isin(new["uid"])]
    if len(replaced):
        index.remove_ids(replaced["id"].to_numpy())
    ids = np.arange(meta["next_id"], meta["next_id"] + len(new), dtype=np.int64)
    new.insert(0, "id", ids)
    index.add_with_ids(embed(model, dense_texts(new["title"], new["content"], meta["embed"]), batch_size,
                             progress=progress), ids)
    docs = pd.concat([docs[~docs["uid"].isin(new["uid"])], new], ignore_index=True)
    meta = {**meta, "next_id": int(ids[-1]) + 1}
    if passages is not None:
        gone = passages[passages["id"].isin(replaced["id"])]
        if len(gone):
            pindex.remove_ids(gone["pid"].to_numpy())
        p = meta["passages"]
        fresh = Splitter(p["max_tokens"], meta["embedding_model"]["path"] if Path(meta["embedding_model"]["path"]).is_dir()
                         else None).split_many(new["id"], new["content"], first_pid=p["next_pid"])
        if len(fresh):
            texts = passage_texts(dict(zip(new["id"], new["content"])), fresh)
            pindex.add_with_ids(embed(model, texts, batch_size, progress=progress), fresh["pid"].to_numpy())
        passages = pd.concat([passages[~passages["id"].isin(replaced["id"])], fresh], ignore_index=True)
        meta["passages"] = {**p, "next_pid": int(p["next_pid"]) + len(fresh)}
    meta = _save(root, folder, meta, docs, index, passages, pindex)
    return {"added": len(new) - len(replaced), "replaced": len(replaced), "count": meta["count"],
            "version": meta["version"]}


def remove_products(root, uids: list[str], wait: float = WAIT) -> dict:
    """Remove products (and their passages) by uid. Returns counts, the uids that were not in the index
    and the new version (None when nothing was removed: no version is committed)."""
    from indexing.store import writer

    with writer(root, wait, what="index remove"):
        return _remove(root, uids)


def _remove(root, uids: list[str]) -> dict:
    folder, meta, docs, index, passages, pindex = _load(root)
    gone = docs[docs["uid"].isin(uids)]
    not_found = sorted(set(uids) - set(gone["uid"]))
    if len(gone) == 0:
        return {"removed": 0, "not_found": not_found, "count": len(docs), "version": None}
    if len(gone) == len(docs):
        raise UserError("removing these would leave the index empty; build a new one instead")
    index.remove_ids(gone["id"].to_numpy())
    docs = docs[~docs["uid"].isin(uids)].reset_index(drop=True)
    if passages is not None:
        dropped = passages["id"].isin(gone["id"])
        pindex.remove_ids(passages.loc[dropped, "pid"].to_numpy())
        passages = passages[~dropped].reset_index(drop=True)
    meta = _save(root, folder, meta, docs, index, passages, pindex)
    return {"removed": len(gone), "not_found": not_found, "count": meta["count"], "version": meta["version"]}
