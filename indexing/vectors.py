"""FAISS indexes over L2-normalised vectors (inner product == cosine), built from parts.

    from indexing.vectors import make_faiss
    index, info = make_faiss(X, ids)                       # one array
    index, info = make_faiss_parts(parts, n, d)            # parts(): yields (X, ids) chunks, e.g. shards on disk

The index type follows the size: exact search (IndexFlatIP) up to FLAT_MAX vectors; above that an
inverted-file index (IVF-Flat) whose nprobe was chosen in benchmarks/search.py for recall@10 >= 0.95
against exact search. IVF (unlike HNSW) supports removing vectors and runs on GPU faiss, and the same
file loads on CPU and GPU. Vectors are added part by part, so a build never holds two copies.
"""

from __future__ import annotations

FLAT_MAX = 200_000  # up to this many vectors, exact search is fast enough (< 20 ms a query here)
# Lists visited per query. benchmarks/search.py at 1.4M synthetic vectors: the smallest nprobe meeting
# recall@10 >= 0.95 on the harder data shape is 32 (0.96); 64 gives >= 0.986 for ~6-9 ms a query.
IVF_NPROBE = 64


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU (faiss-gpu wheels, not faiss-cpu)."""
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def make_faiss(X, ids, index_type: str = "auto"):
    """A CPU faiss index over normalised vectors X [n, d] with int64 `ids`."""
    return make_faiss_parts(lambda: iter([(X, ids)]), X.shape[0], X.shape[1], index_type)


def make_faiss_parts(parts, n: int, d: int, index_type: str = "auto"):
    """(index, info) over the vectors that `parts()` yields as (X [m, d] float32, ids [m] int64) chunks;
    `parts` is called once more for the IVF training sample. Trained and filled on the GPU if any."""
    import faiss
    import numpy as np

    if index_type == "auto":
        index_type = "flat" if n <= FLAT_MAX else "ivf"
    if index_type == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))  # inner product on unit vectors == cosine
        for X, ids in parts():
            index.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        return index, {"index_type": "flat"}
    nlist = int(2 ** round(np.log2(max(np.sqrt(n), 16))))  # ~sqrt(n) lists, 1024 at 1.4M: k-means stays cheap on CPU
    nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    frac = min(1.0, 64 * nlist / max(n, 1))  # a seeded sample of ~64 points per list, taken part by part
    train = np.concatenate([np.asarray(X[rng.random(len(X)) < frac], dtype=np.float32) for X, _ in parts()])
    target = index
    if gpu_available():
        res = faiss.StandardGpuResources()
        target = faiss.index_cpu_to_gpu(res, 0, index)
    target.train(train)
    for X, ids in parts():
        target.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    if target is not index:
        index = faiss.index_gpu_to_cpu(target)
    return index, {"index_type": "ivf", "nlist": nlist, "nprobe": min(IVF_NPROBE, nlist)}


def set_nprobe(index, info: dict) -> None:
    """Apply the stored nprobe to a loaded IVF index (a no-op for exact ones)."""
    if info.get("index_type") == "ivf":
        import faiss

        faiss.extract_index_ivf(index).nprobe = info["nprobe"]


def to_gpu(index):
    """The same index searched on the GPU when faiss sees one; (index, resources to keep alive)."""
    if not gpu_available():
        return index, None
    import faiss

    res = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(res, 0, index), res
