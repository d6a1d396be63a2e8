"""FAISS indexes over L2-normalised vectors (inner product == cosine), built from parts.

    from indexing.vectors import make_faiss
    index, info = make_faiss(X, ids)                       # one array
    index, info = make_faiss_parts(parts, n, d)            # parts(): yields (X, ids) chunks, e.g. shards on disk

The index type follows the size: exact search (IndexFlatIP) up to FLAT_MAX vectors; above that an
inverted-file index (IVF-Flat) whose lists and probes were chosen at full size (benchmarks/ann_full.py,
below). IVF (unlike HNSW) supports removing vectors and runs on GPU faiss, and the same
file loads on CPU and GPU. Vectors are added part by part, so a build never holds two copies.
"""

from __future__ import annotations

FLAT_MAX = 200_000  # up to this many vectors, exact search is fast enough (< 20 ms a query here)
# Lists: ~4 sqrt(n), visited: nlist / 16 (at least IVF_NPROBE). benchmarks/ann_full.py on the full
# catalog's vectors (1.37M titles, 2.2M passages), one question at a time: 4x the lists at 4x the probes
# scans as many vectors for better recall in a third of the time (titles: nlist 4,096 / nprobe 256 recall@10
# 0.870 in 6.0 ms; nlist 1,024 / nprobe 64, the rule before: 0.836 in 18.2 ms; passages: 8,192 / 512
# 0.924 in 14.9 ms against 2,048 / 64 0.798 in 19.8 ms), for a longer k-means (110 s / 263 s at full size).
LISTS_PER_SQRT = 4
PROBE_SHARE = 16
IVF_NPROBE = 64  # benchmarks/search.py at 1.4M synthetic vectors: recall@10 >= 0.986 at nlist 1,024


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
    nlist = int(2 ** round(np.log2(max(LISTS_PER_SQRT * np.sqrt(n), 16))))  # 4,096 at 1.37M, 8,192 at 2.2M
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
    return index, {"index_type": "ivf", "nlist": nlist, "nprobe": min(nlist, max(IVF_NPROBE, nlist // PROBE_SHARE))}


def set_nprobe(index, info: dict) -> None:
    """Apply the stored nprobe to a loaded IVF index (a no-op for exact ones)."""
    if info.get("index_type") == "ivf":
        import faiss

        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = info["nprobe"]
        # serving asks one question at a time: share its probed lists among the threads (faiss's default
        # shares the queries, leaving all but one core idle; ann_full.py: 18.2 -> 14.7 ms at nprobe 64)
        ivf.parallel_mode = 1


def to_gpu(index):
    """The same index searched on the GPU when faiss sees one; (index, resources to keep alive)."""
    if not gpu_available():
        return index, None
    import faiss

    res = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(res, 0, index), res
