"""Base + deltas + tombstones -> the one in-memory index that search reads (indexing/search.py).

    docs, keep = live_rows([base_docs, delta_docs, ...], tombstones)
    bm = merge_bm25([(base_bm, rows_0), (delta_bm, rows_1)], n_rows)

An update (indexing/update.py) writes only what changed: a delta segment with the new products (their
docs, title and passage vectors, and BM25 indexes over their own texts) and the ids it removes or
replaces (tombstones). A version is read by merging, once, at load:

- FAISS: the deltas' vectors (plain .npy) are added to the base index in memory and the tombstoned ids removed
  (`merge_faiss`), so search and `reconstruct_batch` are the base's own. Dense results equal a full
  rebuild's for flat indexes (an IVF base assigns new vectors to its trained cells, as an add always did).
- BM25: bm25s cannot add or delete documents, and a delta's scores carry the idf of its own few
  documents. `merge_bm25` builds one bm25s index from the parts' score matrices: rows renumbered to
  the live rows (tombstoned ones dropped), and each delta entry rescaled from its own idf to the idf over
  all parts' documents (the base's entries are kept as they are). What remains different from a rebuild:
  the base's idf does not count the deltas' documents, and a delta's length normalisation uses its own
  average document length (measured in tests/indexing/test_delta.py and benchmarks/update.py).
  `productqa index compact` rewrites base + deltas as one base, exactly what a build writes.
"""

from __future__ import annotations

import numpy as np


def live_rows(parts: list, tombstones: np.ndarray):
    """The live documents of all parts, in order (base first), and per part the row each of its
    documents has there (-1: tombstoned)."""
    import pandas as pd

    dead = np.asarray(tombstones, dtype=np.int64)
    rows, keep, n = [], [], 0
    for df in parts:
        alive = ~np.isin(df["id"].to_numpy(), dead)
        r = np.full(len(df), -1, dtype=np.int64)
        r[alive] = np.arange(n, n + int(alive.sum()))
        n += int(alive.sum())
        rows.append(r)
        keep.append(df[alive])
    return contiguous(pd.concat(keep, ignore_index=True)), rows


def contiguous(df):
    """`df` with every column in one Arrow chunk (pd.concat chains the parts' chunks: see
    store._read_table for why search needs one)."""
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False).combine_chunks().to_pandas()


def merge_faiss(base, deltas: list, dead_ids: np.ndarray):
    """The base FAISS index with every delta's (X [m, d], ids [m]) added and the tombstoned ids removed,
    in place (in memory: the base file is not touched)."""
    import faiss

    for X, ids in deltas:
        if len(ids):
            base.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    dead = np.asarray(dead_ids, dtype=np.int64)
    if len(dead):
        base.remove_ids(faiss.IDSelectorBatch(dead))
    return base


def _idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """bm25s's idf for its default method (lucene), which every ProductQA BM25 index uses."""
    return np.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def merge_bm25(parts: list, n_rows: int):
    """One bm25s index over parts [(bm25s index, rows)], `rows[i]` being the merged row of the part's
    document i (-1: dropped). The first part is the base: its scores are kept; the others' are rescaled
    to the idf over every part's documents."""
    import bm25s

    base = parts[0][0]
    if base.method != "lucene" or base.idf_method != "lucene":
        raise ValueError(f"merge_bm25 rescales lucene idf; this index uses {base.method}/{base.idf_method}")
    vocab = dict(base.vocab_dict)
    for bm, _ in parts[1:]:
        for w in sorted(bm.vocab_dict):
            vocab.setdefault(w, len(vocab))
    V = len(vocab)
    n_docs = sum(int(bm.scores["num_docs"]) for bm, _ in parts)
    to_union, df = [], np.zeros(V, dtype=np.int64)
    for bm, _ in parts:
        m = np.empty(len(bm.vocab_dict), dtype=np.int64)
        for w, t in bm.vocab_dict.items():
            m[t] = vocab[w]
        counts = np.diff(np.asarray(bm.scores["indptr"], dtype=np.int64))
        np.add.at(df, m[: len(counts)], counts)  # bm25s may hold vocabulary entries past its last column
        to_union.append(m)
    idf = _idf(df, n_docs)
    toks, rows_out, data_out = [], [], []
    for j, ((bm, rows), m) in enumerate(zip(parts, to_union)):
        s = bm.scores
        indptr = np.asarray(s["indptr"], dtype=np.int64)
        local = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        r = np.asarray(rows, dtype=np.int64)[np.asarray(s["indices"], dtype=np.int64)]
        data = np.asarray(s["data"], dtype=np.float32)
        if j:  # a delta: its own idf -> the idf over all documents
            own = _idf(np.diff(indptr).astype(np.float64), int(s["num_docs"]))
            data = (data * (idf[m[local]] / own[local])).astype(np.float32)
        keep = r >= 0
        toks.append(m[local][keep])
        rows_out.append(r[keep])
        data_out.append(data[keep])
    tok = np.concatenate(toks)
    rows_all = np.concatenate(rows_out)
    # group by token, rows ascending within each: a posting list stays sorted, as a built one is
    # (indexing.lexical.coverage binary-searches it)
    order = np.lexsort((rows_all, tok))
    out = bm25s.BM25(k1=base.k1, b=base.b, delta=base.delta, method=base.method, idf_method=base.idf_method)
    out.scores = {"data": np.concatenate(data_out)[order],
                  "indices": rows_all[order].astype(np.asarray(base.scores["indices"]).dtype),
                  "indptr": np.concatenate([[0], np.cumsum(np.bincount(tok, minlength=V))]).astype(
                      np.asarray(base.scores["indptr"]).dtype),
                  "num_docs": n_rows}
    out.vocab_dict = vocab
    out.unique_token_ids_set = set(vocab.values())  # what bm25s.BM25.load sets besides the scores
    out.nonoccurrence_array = None  # lucene has none
    return out


def read_version(folder, meta: dict, mmap: bool = False) -> dict:
    """Everything search reads from one version, base + deltas - tombstones, merged (CPU FAISS): docs,
    titles (FAISS), bm25, chars (None without "fuzzy"), passages, passage_index, bm25_passages (None for
    a title-only index), cards (the multilingual card vectors; None without "multilingual")."""
    from indexing.store import (
        BM25,
        BM25_CHARS,
        BM25_PASSAGES,
        CARDS,
        PASSAGE_VECTORS,
        has_passage_vectors,
        read_bm25,
        read_delta,
        read_docs,
        read_faiss,
        read_passages,
        read_tombstones,
    )

    docs = read_docs(folder, meta)
    # `mmap` (for searching only: never for a writer, which rewrites the indexes): with no deltas to add and
    # no tombstones to remove, IVF indexes are memory-mapped read-only (store.read_faiss)
    mmap = mmap and not meta.get("deltas") and not meta.get("tombstones")
    out = {"docs": docs, "titles": read_faiss(folder, meta, mmap=mmap), "bm25": read_bm25(folder, BM25, rows=len(docs)),
           "chars": read_bm25(folder, BM25_CHARS, rows=len(docs)) if meta.get("fuzzy") else None,
           "passages": read_passages(folder, meta), "passage_index": None, "bm25_passages": None,
           "cards": read_faiss(folder, meta, CARDS, mmap=mmap) if meta.get("multilingual") else None}
    if out["passages"] is not None:
        if has_passage_vectors(meta):  # else passages are searched by BM25 alone
            out["passage_index"] = read_faiss(folder, meta, PASSAGE_VECTORS, mmap=mmap)
        out["bm25_passages"] = read_bm25(folder, BM25_PASSAGES, rows=len(out["passages"]))
    dead = read_tombstones(folder, meta)
    deltas = [read_delta(folder, meta, d) for d in meta.get("deltas", [])]
    if not deltas and not len(dead):
        return out
    out["docs"], rows = live_rows([docs] + [d["docs"] for d in deltas], dead)
    merge_faiss(out["titles"], [(d["titles"], d["docs"]["id"].to_numpy()) for d in deltas], dead)
    if out["cards"] is not None:  # `index add` embeds every delta's cards when the index has them
        merge_faiss(out["cards"], [(d["cards"], d["docs"]["id"].to_numpy()) for d in deltas], dead)
    for key in ("bm25", "chars"):
        if out[key] is not None:
            out[key] = merge_bm25([(out[key], rows[0])] + [(d[key if key == "bm25" else "bm25_chars"], r)
                                                            for d, r in zip(deltas, rows[1:])], len(out["docs"]))
    if out["passages"] is not None:
        with_p = [d for d in deltas if d["passages"] is not None]
        parts = [out["passages"]] + [d["passages"] for d in with_p]
        out["passages"], prows = live_rows(parts, dead)  # a passage dies with its product
        dead_pids = np.concatenate([p["pid"].to_numpy()[r < 0] for p, r in zip(parts, prows)])
        if out["passage_index"] is not None:
            merge_faiss(out["passage_index"], [(d["passage_vectors"], d["passages"]["pid"].to_numpy())
                                               for d in with_p], dead_pids)
        out["bm25_passages"] = merge_bm25([(out["bm25_passages"], prows[0])]
                                          + [(d["bm25_passages"], r) for d, r in zip(with_p, prows[1:])],
                                          len(out["passages"]))
    return out
