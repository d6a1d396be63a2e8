"""FAISS indexes over L2-normalised vectors (inner product == cosine), built from parts.

    from indexing.vectors import make_faiss
    index, info = make_faiss(X, ids)                       # one array
    index, info = make_faiss_parts(parts, n, d)            # parts(): yields (X, ids) chunks, e.g. shards on disk
    D, I = index.search(xq, k)                             # every kind below answers faiss's calls

The index type follows the size: exact search (IndexFlatIP) up to FLAT_MAX vectors; above that a two-stage
index (`Reranked`): an IVF index of compressed codes proposes a short list, and the exact vectors, kept beside it
by id (memory-mapped), re-rank it, so the scores are an exact search's. Titles: "ivfpq", 4-bit product codes
scanned by faiss's fast-scan (16x smaller than the floats, scanned in registers); passages: "ivfsq", 8-bit
scalar codes (the static passage vectors, concentrated around their mean, lose too much to 4-bit product
codes). Chosen at full size by benchmarks/ann_full.py: the synthetic catalog's vectors are poorly clustered,
so IVF-Flat reaches recall@10 0.95 only by scanning a quarter of its lists (40 ms a question at 2.2M titles).
IVF (unlike HNSW) adds and removes vectors, which index updates need. "ivf" (IVF-Flat, the type before) is
still built on request and read.
Vectors are added part by part, so a build never holds two copies of the float vectors.
"""

from __future__ import annotations

import numpy as np

FLAT_MAX = 200_000  # up to this many vectors, exact search is fast enough (< 20 ms a query here)
# IVF-Flat (--index-type ivf): lists ~4 sqrt(n), visited: nlist / 16 (at least IVF_NPROBE).
LISTS_PER_SQRT = 4
PROBE_SHARE = 16
IVF_NPROBE = 64  # benchmarks/search.py at 1.4M synthetic vectors: recall@10 >= 0.986 at nlist 1,024
# The re-ranked types (the default above FLAT_MAX), chosen by benchmarks/ann_full.py on the full catalog's 2.2M
# title and 2.2M passage vectors, one question at a time (docs/results.md "ANN indexes at full size"):
PQ_LISTS_PER_SQRT = 1  # lists ~sqrt(n) (2,048 at 2.2M): codes scan fast, so fewer, larger lists (a k-means ~16x
# cheaper than IVF-Flat's 4 sqrt(n)) visited in larger numbers
PROBE_SHARE_OF = {"ivfpq": 4, "ivfsq": 8}  # lists visited: nlist / this (at least IVF_NPROBE). Titles, ivfpq at
# nlist/4: recall@10 0.960 in 8.8 ms (IVF-Flat at the same lists: 0.961 in 39.6 ms); passages, ivfsq at nlist/8:
# 0.962 in 19.1 ms (IVF-Flat 0.961 in 31.7 ms; 4-bit product codes lose the static passage vectors: <= 0.67)
PQ_DIMS_PER_CODE = 2  # one 4-bit code per 2 dimensions: 96 bytes a 384-dim vector (1,536 as float32)
RERANK = 200  # the short list re-ranked exactly (>= k): 100 -> 200 took titles' recall 0.956 -> 0.960 for 0.35 ms
PASSAGES_LARGE = "ivfsq"  # the passages' type above FLAT_MAX (titles: "ivfpq")


class Reranked:
    """An "ivfpq" index: `index` (faiss IVF-PQ fast-scan, ids = product or passage ids) proposes `rerank` candidates,
    scored again exactly with `exact` (float32 [max id + 1, d], row = id: memory-mapped from the version's file)
    and the vectors added since (`add_with_ids`, in memory). Answers the faiss calls search reads and updates make:
    search, reconstruct_batch, add_with_ids, remove_ids, ntotal, d."""

    def __init__(self, index, exact, rerank: int = RERANK, added: list | None = None):
        self.index, self.exact, self.rerank = index, exact, rerank
        self._added: list = list(added or [])  # (X, ids) added since the exact file was written
        self._extra = None  # (sorted ids, their vectors), made on first use after an add

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def d(self) -> int:
        return self.index.d

    def add_with_ids(self, X, ids) -> None:
        X, ids = np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        self.index.add_with_ids(X, ids)
        self._added.append((X, ids))
        self._extra = None

    def remove_ids(self, sel) -> int:
        return self.index.remove_ids(sel)  # the exact rows stay: removed ids are never proposed again

    def reconstruct_batch(self, ids) -> np.ndarray:
        """The exact vectors of `ids` (each must be in the index)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.d), dtype=np.float32)
        base = ids < len(self.exact)
        out[base] = self.exact[ids[base]]
        if not base.all():
            if self._extra is None:
                i = np.concatenate([x for _, x in self._added])
                X = np.concatenate([x for x, _ in self._added])
                order = np.argsort(i, kind="stable")
                self._extra = (i[order], X[order])
            i, X = self._extra
            out[~base] = X[np.searchsorted(i, ids[~base])]
        return out

    def search(self, xq, k: int):
        """(D [nq, k], I [nq, k]): the fast-scan index's top `rerank` re-scored with the exact vectors; -1 pads."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        _, C = self.index.search(xq, max(k, self.rerank))
        D = np.full((len(xq), k), -np.inf, dtype=np.float32)
        I = np.full((len(xq), k), -1, dtype=np.int64)
        for qi, c in enumerate(C):
            c = c[c >= 0]
            s = self.reconstruct_batch(c) @ xq[qi]
            top = np.argsort(-s, kind="stable")[:k]
            D[qi, : len(top)], I[qi, : len(top)] = s[top], c[top]
        return D, I

    def exact_rows(self) -> np.ndarray:
        """Every vector by id, the added ones included (for a compaction writing one file); the exact array itself
        when nothing was added (no second copy of gigabytes)."""
        if not self._added:
            return self.exact
        n = max([len(self.exact)] + [int(i.max()) + 1 for _, i in self._added if len(i)])
        out = np.zeros((n, self.d), dtype=np.float32)
        out[: len(self.exact)] = self.exact
        for X, i in self._added:
            out[i] = X
        return out


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU (faiss-gpu wheels, not faiss-cpu)."""
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def make_faiss(X, ids, index_type: str = "auto", large: str = "ivfpq"):
    """A CPU faiss index over normalised vectors X [n, d] with int64 `ids`."""
    return make_faiss_parts(lambda: iter([(X, ids)]), X.shape[0], X.shape[1], index_type, large)


RERANKED = ("ivfpq", "ivfsq")  # the index types searched as codes, then re-ranked with exact vectors


def coarse_codes(index_type: str, d: int, nlist: int, quantizer=None):
    """(untrained faiss IVF index, words for meta.json) of a re-ranked type: "ivfpq", 4-bit product-quantized
    codes scanned by fast-scan (one per PQ_DIMS_PER_CODE dimensions), or "ivfsq", 8-bit scalar codes (one byte
    a dimension: the static passage vectors, which product quantization loses, benchmarks/ann_full.py)."""
    import faiss

    quantizer = quantizer or faiss.IndexFlatIP(d)
    if index_type == "ivfsq":
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        return index, "8-bit scalar"
    m = max(1, d // PQ_DIMS_PER_CODE)
    while d % m:  # the codes must split the dimensions evenly
        m -= 1
    return faiss.IndexIVFPQFastScan(quantizer, d, nlist, m, 4, faiss.METRIC_INNER_PRODUCT), f"{m}x4-bit fast-scan"


def make_faiss_parts(parts, n: int, d: int, index_type: str = "auto", large: str = "ivfpq"):
    """(index, info) over the vectors that `parts()` yields as (X [m, d] float32, ids [m] int64) chunks;
    `parts` is called once more for the IVF training sample. "auto": exact up to FLAT_MAX vectors, `large` above
    (titles: "ivfpq", passages: PASSAGES_LARGE). IVF-Flat is trained and filled on the GPU if any (GPU faiss has
    no fast-scan codes: the re-ranked types are built on the CPU)."""
    import faiss

    if index_type == "auto":
        index_type = "flat" if n <= FLAT_MAX else large
    if index_type == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))  # inner product on unit vectors == cosine
        for X, ids in parts():
            index.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        return index, {"index_type": "flat"}
    per_sqrt = PQ_LISTS_PER_SQRT if index_type in RERANKED else LISTS_PER_SQRT
    nlist = int(2 ** round(np.log2(max(per_sqrt * np.sqrt(n), 16))))  # ivfpq: 2,048 at 2.2M; ivf: 8,192
    nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
    rng = np.random.default_rng(0)
    frac = min(1.0, 64 * nlist / max(n, 1))  # a seeded sample of ~64 points per list, taken part by part
    train = np.concatenate([np.asarray(X[rng.random(len(X)) < frac], dtype=np.float32) for X, _ in parts()])
    if index_type in RERANKED:
        index, codes = coarse_codes(index_type, d, nlist)
        index.train(train)
        exact = np.zeros((n, d), dtype=np.float32)  # row = id (a build's ids are 0..n-1)
        extra = []
        for X, ids in parts():
            X, ids = np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            index.add_with_ids(X, ids)
            inside = ids < n
            exact[ids[inside]] = X[inside]
            if not inside.all():  # ids past n (a compaction keeps ids): kept as added vectors
                extra.append((X[~inside], ids[~inside]))
        return Reranked(index, exact, added=extra), {"index_type": index_type, "nlist": nlist,
                     "nprobe": min(nlist, max(IVF_NPROBE, nlist // PROBE_SHARE_OF[index_type])), "codes": codes,
                     "rerank": RERANK}
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    target = index
    if gpu_available():
        res = faiss.StandardGpuResources()
        target = faiss.index_cpu_to_gpu(res, 0, index)
    target.train(train)
    for X, ids in parts():
        target.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    if target is not index:
        index = faiss.index_gpu_to_cpu(target)
    return index, {"index_type": "ivf", "nlist": nlist, "nprobe": min(nlist, max(IVF_NPROBE, nlist // PROBE_SHARE))}


def set_nprobe(index, info: dict) -> None:
    """Apply the stored nprobe (and short list) to a loaded IVF or ivfpq index (a no-op for exact ones)."""
    if info.get("index_type") in ("ivf", *RERANKED):
        import faiss

        if isinstance(index, Reranked):
            index.rerank = info.get("rerank", RERANK)
            index = index.index
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = info["nprobe"]
        # serving asks one question at a time: share its probed lists among the threads (faiss's default
        # shares the queries, leaving all but one core idle; ann_full.py: 18.2 -> 14.7 ms at nprobe 64)
        ivf.parallel_mode = 1


def to_gpu(index):
    """The same index searched on the GPU when faiss sees one; (index, resources to keep alive). An ivfpq index
    stays on the CPU (GPU faiss has no fast-scan codes)."""
    if not gpu_available() or isinstance(index, Reranked):
        return index, None
    import faiss

    res = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(res, 0, index), res
