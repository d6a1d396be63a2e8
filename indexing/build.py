"""Build a search index from a prepared catalog: embeddings + FAISS + BM25, written atomically.

    productqa index build --catalog data/catalog --out data/index [--model PATH] [--batch-size 64] [--device cpu|cuda]
    productqa index add    --index data/index --input new_products.jsonl
    productqa index remove --index data/index --uid 0001360000 [--uid ...]
    productqa index info   --index data/index

The index type follows the catalog size: exact search (IndexFlatIP on normalised vectors, i.e.
cosine) up to FLAT_MAX products; above that an inverted-file index (IVF-Flat) whose nprobe was
chosen in benchmarks/search.py for recall@10 >= 0.95 against exact search. IVF (unlike HNSW)
supports removing vectors and runs on GPU faiss, and the same file loads on CPU and GPU.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

FLAT_MAX = 200_000  # up to this many products, exact search is fast enough (< 20 ms a query here)
# Lists visited per query. benchmarks/search.py at 1.4M synthetic vectors: the smallest nprobe meeting
# recall@10 >= 0.95 on the harder data shape is 32 (0.96); 64 gives >= 0.986 for ~6-9 ms a query.
IVF_NPROBE = 64


@dataclass
class BuildConfig:
    catalog: str  # catalog folder from `productqa prepare`
    out: str  # index folder to write (replaced atomically)
    model: str | None = None  # sentence-transformers folder; None = packaged all-MiniLM-L6-v2
    batch_size: int = 64  # texts per forward pass
    device: str | None = None  # cpu | cuda | None (auto)
    embed: str = "title"  # what the dense vectors encode: "title" or "title+content" (eval retrieval decides)
    lexical: str = "title"  # what BM25 indexes: "title", "title+content" or "2title+content"
    index_type: str = "auto"  # auto | flat | ivf
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see indexing/embed.py)
    progress: bool = True  # progress bars


def dense_texts(titles, contents, embed: str) -> list[str]:
    """The text each product is embedded as."""
    if embed == "title":
        return list(titles)
    if embed == "title+content":
        return [f"{t}. {c}" for t, c in zip(titles, contents)]
    raise ValueError(f"unknown embed field {embed!r}")


LEXICAL_FIELDS = {  # what BM25 indexes; benchmarks/retrieval_choices.py compares them
    "title": lambda t, c: t,
    "title+content": lambda t, c: f"{t} {c}",
    "2title+content": lambda t, c: f"{t} {t} {c}",  # title twice: it is what questions quote
}


def lexical_texts(titles, contents, lexical: str = "title") -> list[str]:
    """The text BM25 indexes for each product."""
    f = LEXICAL_FIELDS[lexical]
    return [f(t, c) for t, c in zip(titles, contents)]


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU (faiss-gpu wheels, not faiss-cpu)."""
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def make_faiss(X, ids, index_type: str = "auto"):
    """A CPU faiss index over normalised vectors X [n, d] with int64 `ids` (trained/filled on GPU if any)."""
    import faiss
    import numpy as np

    n, d = X.shape
    if index_type == "auto":
        index_type = "flat" if n <= FLAT_MAX else "ivf"
    if index_type == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))  # inner product on unit vectors == cosine
        index.add_with_ids(X, ids)
        return index, {"index_type": "flat"}
    nlist = int(2 ** round(np.log2(max(np.sqrt(n), 16))))  # ~sqrt(n) lists, 1024 at 1.4M: k-means stays cheap on CPU
    nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = X[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
    if gpu_available():
        res = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, 0, index)
        gpu.train(train)
        gpu.add_with_ids(X, ids)
        index = faiss.index_gpu_to_cpu(gpu)
    else:
        index.train(train)
        index.add_with_ids(X, ids)
    return index, {"index_type": "ivf", "nlist": nlist, "nprobe": min(IVF_NPROBE, nlist)}


def build_index(cfg: BuildConfig) -> dict:
    """catalog -> index folder; returns meta.json's content."""
    import faiss
    import numpy as np

    from indexing.catalog import catalog_fingerprint, catalog_file, read_catalog
    from indexing.embed import embed, load_encoder, model_identity
    from indexing.errors import UserError
    from indexing.lexical import build_bm25
    from indexing.store import write_atomically, write_docs, write_meta

    if cfg.embed not in ("title", "title+content"):
        raise UserError(f"--embed must be title or title+content, not {cfg.embed!r}")
    if cfg.lexical not in LEXICAL_FIELDS:
        raise UserError(f"--lexical must be one of {', '.join(LEXICAL_FIELDS)}, not {cfg.lexical!r}")
    t0 = time.time()
    docs = read_catalog(cfg.catalog)
    if len(docs) == 0:
        raise UserError(f"{cfg.catalog}: the catalog is empty")
    docs = docs.drop_duplicates("uid", keep="last").reset_index(drop=True)
    docs.insert(0, "id", np.arange(len(docs), dtype=np.int64))
    ident = model_identity(cfg.model)
    model = load_encoder(cfg.model, cfg.device)
    X = embed(model, dense_texts(docs["title"], docs["content"], cfg.embed), cfg.batch_size, cfg.precision,
              progress=cfg.progress)
    t_embed = time.time() - t0
    index, info = make_faiss(X, docs["id"].to_numpy(), cfg.index_type)
    bm = build_bm25(lexical_texts(docs["title"], docs["content"], cfg.lexical), progress=cfg.progress)
    calib = calibrate(model, index, info, docs, cfg.embed)
    meta = {
        "embedding_model": {"name": ident["name"], "hash": ident["hash"], "path": ident["path"]},
        "dim": int(X.shape[1]),
        "metric": "cosine (inner product on L2-normalised vectors)",
        **info,
        "embed": cfg.embed,
        "lexical": cfg.lexical,
        "bm25": f"bm25s over {cfg.lexical}; English stemming; EN+PT stop words",
        "count": len(docs),
        "next_id": len(docs),
        **calib,
        "catalog": {"path": str(catalog_file(cfg.catalog).resolve()), "fingerprint": catalog_fingerprint(cfg.catalog)},
        "build_seconds": {"embed": round(t_embed, 1), "total": round(time.time() - t0, 1)},
        "device": model.device.type,
    }
    with write_atomically(cfg.out) as tmp:
        faiss.write_index(index, str(tmp / "index.faiss"))
        write_docs(tmp, docs)
        bm.save(str(tmp / "bm25"))
        meta = write_meta(tmp, meta)
    return meta


def calibrate(model, index, info: dict, docs, embed_field: str) -> dict:
    """The "not in the catalog" cosine threshold for this catalog (indexing/calibrate.py)."""
    import faiss

    from indexing.calibrate import calibrate_threshold
    from indexing.embed import embed
    from indexing.search import focus

    if info["index_type"] == "ivf":
        faiss.extract_index_ivf(index).nprobe = info["nprobe"]

    def best_cosine(questions):
        D, _ = index.search(embed(model, [focus(q) for q in questions]), 1)
        return D[:, 0]

    return calibrate_threshold(best_cosine, docs)


def format_info(folder: str | Path, meta: dict) -> str:
    m = meta
    lines = [
        f"index:      {folder}",
        f"products:   {m['count']:,}",
        f"dense:      {m['index_type']}" + (f" (nlist {m['nlist']}, nprobe {m['nprobe']})" if m["index_type"] == "ivf" else "")
        + f", dim {m['dim']}, {m['metric']}, embeds {m['embed']}",
        f"model:      {m['embedding_model']['name']} (hash {m['embedding_model']['hash'][:12]})",
        f"lexical:    {m['bm25']}",
        f"abstain:    best cosine < {m.get('abstain_threshold', 0):.3f} -> 'not in the catalog' "
        f"(calibrated: {m.get('calibration', {}).get('correct_abstain_rate', 0):.1%} of invented products rejected, "
        f"{m.get('calibration', {}).get('false_abstain_rate', 0):.1%} of real ones)",
        f"catalog:    {m['catalog']['path']} (fingerprint {m['catalog']['fingerprint'][:12]})",
        f"created:    {m['created']} by productqa {m['productqa_version']}"
        + (f", updated {m['updated']}" if m.get("updated") else ""),
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="embed a catalog and write a new index (atomically)",
                       description="Embed every product of a catalog and build the FAISS + BM25 index.")
    b.add_argument("--catalog", required=True, metavar="DIR", help="catalog folder from `productqa prepare`")
    b.add_argument("--out", required=True, metavar="INDEX_DIR", help="index folder to write (replaced only when done)")
    b.add_argument("--model", metavar="PATH", help="local sentence-transformers folder (default: packaged all-MiniLM-L6-v2)")
    b.add_argument("--batch-size", type=int, default=64, metavar="N", help="texts per forward pass (default 64)")
    b.add_argument("--device", choices=("cpu", "cuda"), help="embedding device (default: cuda if available)")
    b.add_argument("--embed", choices=("title", "title+content"), default="title",
                   help="what the dense vectors encode (default: title; see README for the measurement)")
    b.add_argument("--lexical", choices=tuple(LEXICAL_FIELDS), default="title",
                   help="what BM25 indexes (default: title; see README for the measurement)")
    b.add_argument("--index-type", choices=("auto", "flat", "ivf"), default="auto",
                   help=f"auto = exact up to {FLAT_MAX:,} products, IVF above")
    b.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto = bf16 on bf16-capable CPUs, fp16 on CUDA")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(_index_main=_main_build)

    a = sub.add_parser("add", help="add or replace products (upsert by uid) without re-embedding the rest",
                       description="Add new or changed products (same cleaning as prepare), upserted by uid.")
    a.add_argument("--index", required=True, metavar="INDEX_DIR")
    a.add_argument("--input", required=True, action="append", metavar="FILE",
                   help="raw AmazonTitles JSON lines or Alpaca JSON (as for prepare); repeatable")
    a.add_argument("--batch-size", type=int, default=64, metavar="N")
    a.add_argument("--device", choices=("cpu", "cuda"))
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(_index_main=_main_add)

    r = sub.add_parser("remove", help="remove products by uid", description="Remove products from an index by uid.")
    r.add_argument("--index", required=True, metavar="INDEX_DIR")
    r.add_argument("--uid", required=True, nargs="+", action="extend", metavar="UID", help="uids to remove")
    r.set_defaults(_index_main=_main_remove)

    i = sub.add_parser("info", help="what an index holds and what made it", description="Print an index's meta.json, readably.")
    i.add_argument("--index", required=True, metavar="INDEX_DIR")
    i.add_argument("--json", action="store_true", help="print meta.json as is")
    i.set_defaults(_index_main=_main_info)


def main(args: argparse.Namespace) -> int:
    return args._index_main(args)


def _main_build(args) -> int:
    cfg = BuildConfig(catalog=args.catalog, out=args.out, model=args.model, batch_size=args.batch_size,
                      device=args.device, embed=args.embed, lexical=args.lexical, index_type=args.index_type, precision=args.precision,
                      progress=not args.quiet)
    meta = build_index(cfg)
    print(format_info(args.out, meta))
    print(f"built in {meta['build_seconds']['total']} s (embedding {meta['build_seconds']['embed']} s)")
    return 0


def _main_add(args) -> int:
    from indexing.update import add_products

    r = add_products(args.index, args.input, batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    print(f"added {r['added']:,}, replaced {r['replaced']:,}; index now holds {r['count']:,} products")
    return 0


def _main_remove(args) -> int:
    from indexing.update import remove_products

    r = remove_products(args.index, args.uid)
    if r["not_found"]:
        print(f"not in the index: {', '.join(r['not_found'])}")
    print(f"removed {r['removed']:,}; index now holds {r['count']:,} products")
    return 0 if r["removed"] or not r["not_found"] else 1


def _main_info(args) -> int:
    import json

    from indexing.store import read_meta

    meta = read_meta(args.index)
    print(json.dumps(meta, indent=2) if args.json else format_info(args.index, meta))
    return 0
