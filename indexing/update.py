"""Update an index in place without re-embedding everything: upsert products by uid, or remove them.

    productqa index add    --index data/index --input new_or_changed.jsonl
    productqa index remove --index data/index --uid 0001360000 0000031895

New records go through exactly the cleaning of `productqa prepare`. Only new/changed products are
embedded; FAISS vectors are removed/added by id; BM25 is rebuilt over the updated documents (it is
cheap next to embedding). The updated index is written beside the old one and swapped in atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

from indexing.errors import UserError


def _load_for_update(folder):
    from indexing.store import read_docs, read_faiss, read_meta

    folder = Path(folder)
    meta = read_meta(folder)
    return folder, meta, read_docs(folder, meta), read_faiss(folder, meta)


def _save(folder: Path, meta: dict, docs, index) -> dict:
    import faiss

    from indexing.build import lexical_texts
    from indexing.lexical import build_bm25
    from indexing.store import write_atomically, write_docs, write_meta

    meta = {**meta, "count": len(docs), "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bm = build_bm25(lexical_texts(docs["title"], docs["content"], meta["lexical"]))
    with write_atomically(folder) as tmp:
        faiss.write_index(index, str(tmp / "index.faiss"))
        write_docs(tmp, docs)
        bm.save(str(tmp / "bm25"))
        meta = write_meta(tmp, meta)
    return meta


def add_products(folder, inputs: list, batch_size: int = 64, device: str | None = None,
                 progress: bool = True) -> dict:
    """Upsert the products of `inputs` (raw or Alpaca files) by uid. Returns counts."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from indexing.build import dense_texts
    from indexing.embed import embed, load_encoder, model_identity
    from indexing.prepare import load_records

    folder, meta, docs, index = _load_for_update(folder)
    tables = [t for path in inputs for t in load_records(path)]
    new = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=["uid", "title", "content"])
    new = new.drop_duplicates("uid", keep="last")
    if new.empty:
        raise UserError(f"no usable products in {', '.join(map(str, inputs))}")
    path = meta["embedding_model"]["path"]
    ident = model_identity(path if Path(path).is_dir() else None)
    if ident["hash"] != meta["embedding_model"]["hash"]:
        raise UserError(f"{folder}: built with a different embedding model than {ident['path']}")
    replaced = docs[docs["uid"].isin(new["uid"])]
    if len(replaced):
        index.remove_ids(replaced["id"].to_numpy())
    ids = np.arange(meta["next_id"], meta["next_id"] + len(new), dtype=np.int64)
    new.insert(0, "id", ids)
    X = embed(load_encoder(ident["path"], device), dense_texts(new["title"], new["content"], meta["embed"]),
              batch_size, progress=progress)
    index.add_with_ids(X, ids)
    docs = pd.concat([docs[~docs["uid"].isin(new["uid"])], new], ignore_index=True)
    meta = _save(folder, {**meta, "next_id": int(ids[-1]) + 1}, docs, index)
    return {"added": len(new) - len(replaced), "replaced": len(replaced), "count": meta["count"]}


def remove_products(folder, uids: list[str]) -> dict:
    """Remove products by uid. Returns counts and the uids that were not in the index."""
    folder, meta, docs, index = _load_for_update(folder)
    gone = docs[docs["uid"].isin(uids)]
    not_found = sorted(set(uids) - set(gone["uid"]))
    if len(gone) == 0:
        return {"removed": 0, "not_found": not_found, "count": len(docs)}
    if len(gone) == len(docs):
        raise UserError("removing these would leave the index empty; build a new one instead")
    index.remove_ids(gone["id"].to_numpy())
    docs = docs[~docs["uid"].isin(uids)].reset_index(drop=True)
    meta = _save(folder, meta, docs, index)
    return {"removed": len(gone), "not_found": not_found, "count": meta["count"]}
