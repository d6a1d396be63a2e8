"""Build a search index from a prepared catalog: title and description-passage embeddings, FAISS and
BM25 for both, a calibrated abstention threshold; committed as a new version of the index folder
(indexing/store.py) under its writer lock; resumable after a crash.

    productqa index build --catalog data/catalog --out data/index [--passage-tokens 128] [--shard-size 4096]
    productqa index build ... --engine ray [--ray-address ADDR]      # embedding spread over a Ray cluster

Embedding is the long part (hours for the full catalog on a CPU). It runs shard by shard: each shard
(`shard_size` products: their titles and their description passages) is written to the build folder
beside the index as soon as it is embedded, with its size and checksum in a manifest. A build that
is killed (SIGKILL, Ctrl-C, a reboot) loses at most the shard it was working on: running the same
command again continues from the last finished shard, and the finished index is byte for byte what
an uninterrupted build writes (the vectors of a shard do not depend on what ran before it). A shard
whose file no longer matches the manifest is reported and embedded again; a build folder made with
another catalog, model or passage setting is refused (`--fresh` discards it).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from indexing.texts import DEFAULT_PASSAGE_TOKENS, LEXICAL_FIELDS, dense_texts, lexical_texts, passage_texts


@dataclass
class BuildConfig:
    catalog: str  # catalog folder from `productqa prepare`
    out: str  # index folder to write (replaced atomically)
    model: str | None = None  # sentence-transformers folder; None = packaged all-MiniLM-L6-v2
    batch_size: int = 64  # texts per forward pass
    device: str | None = None  # cpu | cuda | None (auto)
    embed: str = "title"  # what the title vectors encode: "title" or "title+content" (for comparisons)
    passages: bool = True  # also embed description passages (and BM25 them): descriptions become searchable
    passage_tokens: int = DEFAULT_PASSAGE_TOKENS  # most tokens in one passage
    lexical: str = "title"  # what the title BM25 indexes: "title", "title+content" or "2title+content"
    index_type: str = "auto"  # auto | flat | ivf
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see indexing/embed.py)
    shard_size: int = 4096  # products per shard: the most embedding work a crash can lose
    engine: str = "local"  # local (this process) | ray (Ray Data: local Ray or a cluster)
    ray_address: str | None = None  # with engine="ray": a running cluster ("auto", "ray://host:10001"); None = local
    fresh: bool = False  # discard an unfinished build of `out` instead of resuming it
    wait: float = 600  # seconds to wait for another writer of `out` (add/remove/build) before failing
    ranker: bool = True  # learn the fusion of the retrievers from the catalog's own questions (indexing/rank.py)
    progress: bool = True  # progress bars


def settings(cfg: BuildConfig, fingerprint: str, model_hash: str, n: int) -> dict:
    """What the shards depend on: a resume must match it exactly."""
    return {"catalog_fingerprint": fingerprint, "products": n, "model_hash": model_hash, "embed": cfg.embed,
            "passages": cfg.passages, "passage_tokens": cfg.passage_tokens, "shard_size": cfg.shard_size,
            "precision": cfg.precision}


def shard_texts(docs, passages, a: int, b: int, embed: str) -> tuple[list[str], list[str]]:
    """(title texts, passage texts) of products [a, b) (docs rows; ids == rows in a build)."""
    titles = dense_texts(docs["title"].iloc[a:b], docs["content"].iloc[a:b], embed)
    if passages is None:
        return titles, []
    lo, hi = passages["id"].searchsorted([a, b])
    part = passages.iloc[lo:hi]
    contents = dict(zip(range(a, b), docs["content"].iloc[a:b]))
    return titles, passage_texts(contents, part)


def embed_local(cfg: BuildConfig, docs, passages, todo: list[int], shards, bar) -> None:
    """Embed the shards in `todo` in this process, writing each as soon as it is done."""
    from indexing.embed import embed, load_encoder

    model = load_encoder(cfg.model, cfg.device)
    for k in todo:
        a, b = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(docs))
        titles, texts = shard_texts(docs, passages, a, b, cfg.embed)
        arrays = {"titles": embed(model, titles, cfg.batch_size, cfg.precision)}
        if passages is not None:
            arrays["passages"] = embed(model, texts, cfg.batch_size, cfg.precision)
        shards.write(k, arrays)
        bar.update(b - a)


def build_index(cfg: BuildConfig) -> dict:
    """catalog -> index folder (a new version of it, under its writer lock); returns meta.json's content."""
    from indexing.store import writer

    with writer(cfg.out, cfg.wait, what="index build", create=True):
        return _build(cfg)


def _build(cfg: BuildConfig) -> dict:
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from indexing.catalog import catalog_file, catalog_fingerprint, read_catalog
    from indexing.embed import model_identity
    from indexing.errors import UserError
    from indexing.lexical import GRAM, build_bm25, build_char_bm25
    from indexing.rank import fit_ranker
    from indexing.store import (BM25_CHARS, BM25_PASSAGES, RANKER, PASSAGE_VECTORS, PASSAGES, Shards, build_folder, commit, read_meta,
                                utc_now, write_bm25, write_docs, write_faiss, write_meta, write_passages)
    from indexing.texts import Splitter
    from indexing.vectors import make_faiss_parts

    if cfg.embed not in ("title", "title+content"):
        raise UserError(f"--embed must be title or title+content, not {cfg.embed!r}")
    if cfg.lexical not in LEXICAL_FIELDS:
        raise UserError(f"--lexical must be one of {', '.join(LEXICAL_FIELDS)}, not {cfg.lexical!r}")
    if cfg.shard_size < 1 or cfg.passage_tokens < 8:
        raise UserError("--shard-size must be >= 1 and --passage-tokens >= 8")
    if cfg.engine not in ("local", "ray"):
        raise UserError(f"--engine must be local or ray, not {cfg.engine!r}")
    t0 = time.time()
    docs = read_catalog(cfg.catalog)
    if len(docs) == 0:
        raise UserError(f"{cfg.catalog}: the catalog is empty")
    docs = docs.drop_duplicates("uid", keep="last").reset_index(drop=True)
    docs.insert(0, "id", np.arange(len(docs), dtype=np.int64))
    ident = model_identity(cfg.model)
    fingerprint = catalog_fingerprint(cfg.catalog)

    # 1. the build folder: resume what an earlier run of the same build finished
    shards = Shards(build_folder(cfg.out))
    resumed = shards.start(settings(cfg, fingerprint, ident["hash"], len(docs)), fresh=cfg.fresh)
    passages = None
    if cfg.passages:
        f = shards.folder / PASSAGES
        try:
            passages = pd.read_parquet(f) if resumed and f.exists() else None
        except Exception:  # torn by a crash: split again (deterministic)
            passages = None
        if passages is None:
            passages = Splitter(cfg.passage_tokens, cfg.model).split_many(docs["id"], docs["content"],
                                                                           progress=cfg.progress)
            write_passages(shards.folder, passages)
    n_shards = -(-len(docs) // cfg.shard_size)
    done = shards.finished()
    todo = [k for k in range(n_shards) if k not in done]
    done_products = sum(min((k + 1) * cfg.shard_size, len(docs)) - k * cfg.shard_size for k in done)
    if resumed and done:
        print(f"resuming {cfg.out}: {len(done)} of {n_shards} shards already embedded")

    # 2. embed the shards still to do
    with tqdm(total=len(docs), initial=done_products, unit="product", desc="embed", disable=not cfg.progress,
              mininterval=1.0, smoothing=0.1) as bar:
        if todo and cfg.engine == "ray":
            from indexing.ray_embed import embed_ray

            embed_ray(cfg, docs, passages, todo, shards, bar)
        elif todo:
            embed_local(cfg, docs, passages, todo, shards, bar)
    t_embed = time.time() - t0

    # 3. FAISS from the shards, part by part (never two copies of the vectors in memory)
    dim = int(shards.load(0, "titles").shape[1])

    def parts(kind: str):
        def it():
            for k in range(n_shards):
                X = shards.load(k, kind)
                if kind == "titles":
                    ids = docs["id"].to_numpy()[k * cfg.shard_size: k * cfg.shard_size + len(X)]
                else:
                    lo = passages["id"].searchsorted(k * cfg.shard_size)
                    ids = passages["pid"].to_numpy()[lo: lo + len(X)]
                yield X, ids
        return it

    index, info = make_faiss_parts(parts("titles"), len(docs), dim, cfg.index_type)
    bm = build_bm25(lexical_texts(docs["title"], docs["content"], cfg.lexical), progress=cfg.progress)
    meta = {
        "embedding_model": {"name": ident["name"], "hash": ident["hash"], "path": ident["path"]},
        "dim": dim,
        "metric": "cosine (inner product on L2-normalised vectors)",
        **info,
        "fields": ["title", "description"] if cfg.passages else ["title"],
        "embed": cfg.embed,
        "lexical": cfg.lexical,
        "bm25": f"bm25s over {cfg.lexical}" + (" and over description passages" if cfg.passages else "")
                + "; English stemming; EN+PT stop words",
        "count": len(docs),
        "next_id": len(docs),
        "catalog": {"path": str(catalog_file(cfg.catalog).resolve()), "fingerprint": fingerprint},
        "build": {"engine": cfg.engine, "shard_size": cfg.shard_size, "shards": n_shards,
                  "resumed_shards": len(done)},
        "device": cfg.device or "auto",
    }
    with commit(cfg.out) as tmp:
        write_faiss(tmp, index)
        del index
        write_docs(tmp, docs)
        write_bm25(tmp, bm)
        write_bm25(tmp, build_char_bm25(docs["title"].tolist(), progress=cfg.progress), BM25_CHARS)
        meta["fuzzy"] = f"bm25s over the titles' character {GRAM}-grams"
        if passages is not None:
            pindex, pinfo = make_faiss_parts(parts("passages"), len(passages), dim, cfg.index_type)
            write_faiss(tmp, pindex, PASSAGE_VECTORS)
            del pindex
            write_passages(tmp, passages)
            contents = dict(zip(docs["id"], docs["content"]))
            write_bm25(tmp, build_bm25(passage_texts(contents, passages), progress=cfg.progress), BM25_PASSAGES)
            meta["passages"] = {"count": len(passages), "max_tokens": cfg.passage_tokens, "next_pid": len(passages),
                                "splitter": "semantic-text-splitter (embedding model's tokenizer)", **pinfo}
        meta["build_seconds"] = {"embed": round(t_embed, 1)}
        meta = write_meta(tmp, meta)
        from indexing.calibrate import calibrate_index
        from indexing.search import Index

        index = Index(tmp, model=cfg.model)
        if cfg.ranker and passages is not None:  # the fusion, learned from questions about this catalog
            t1 = time.time()
            ranker, meta["ranker"] = fit_ranker(index)
            if ranker is not None:
                ranker.save(tmp / RANKER)
                index.ranker, index.fusion = ranker, "learned"
            else:
                print(f"note: no learned fusion: {meta['ranker']['skipped']}", file=sys.stderr)
                meta["ranker_skipped"] = meta.pop("ranker")["skipped"]
            meta["build_seconds"]["ranker"] = round(time.time() - t1, 1)
        # the abstention threshold is measured with the finished index, exactly as questions will use it
        meta.update(calibrate_index(index))
        meta["build_seconds"]["total"] = round(time.time() - t0, 1)
        meta["created"] = utc_now()
        write_meta(tmp, meta)
    shards.remove()
    return read_meta(cfg.out)
