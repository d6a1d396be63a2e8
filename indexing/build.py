"""Build a search index from a prepared catalog: title and description-passage embeddings, FAISS and
BM25 for both, a calibrated abstention threshold; committed as a new version of the index folder
(indexing/store.py) under its writer lock; resumable after a crash.

    productqa index build --catalog data/catalog --out data/index [--passage-tokens 128] [--shard-size 4096]
    productqa index build ... --engine ray [--ray-address ADDR]      # embedding spread over a Ray cluster
    productqa index build ... --title-encoder minilm --passage-encoder static   # the encoders (indexing/embed.py)

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
from contextlib import contextmanager
from dataclasses import dataclass

from indexing.embed import DEFAULT_PASSAGE_ENCODER, DEFAULT_TITLE_ENCODER
from indexing.texts import (
    CHARS_PER_TOKEN,
    DEFAULT_PASSAGE_TOKENS,
    LEXICAL_FIELDS,
    SPLIT_UNITS,
    dense_texts,
    lexical_texts,
    passage_texts,
)


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
    passage_split: str = "tokens"  # tokens | chars: what a passage's size is counted in (indexing/texts.py)
    title_encoder: str = DEFAULT_TITLE_ENCODER  # auto | minilm | minilm-int8 | static (indexing/embed.py)
    passage_encoder: str = DEFAULT_PASSAGE_ENCODER  # minilm | minilm-int8 | static | none (BM25 alone)
    lexical: str = "title"  # what the title BM25 indexes: "title", "title+content" or "2title+content"
    index_type: str = "auto"  # auto | flat | ivf | ivfpq (indexing/vectors.py)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see indexing/embed.py)
    shard_size: int = 4096  # products per shard: the most embedding work a crash can lose
    engine: str = "local"  # local (this process) | ray (Ray Data: local Ray or a cluster)
    ray_address: str | None = None  # with engine="ray": a running cluster ("auto", "ray://host:10001"); None = local
    fresh: bool = False  # discard an unfinished build of `out` instead of resuming it
    wait: float = 600  # seconds to wait for another writer of `out` (add/remove/build) before failing
    ranker: bool = True  # learn the fusion of the retrievers from the catalog's own questions (indexing/rank.py)
    ranker_products: int = 1000  # products whose questions train (and validate) it: its build time grows with them
    multilingual: str = "auto"  # the multilingual second stage (indexing/multilingual.py): auto (when its extra
    # is installed) | use (required) | none
    progress: bool = True  # progress bars


def settings(cfg: BuildConfig, fingerprint: str, encoders: dict, n: int) -> dict:
    """What the shards depend on: a resume must match it exactly."""
    return {"catalog_fingerprint": fingerprint, "products": n, "model_hash": encoders["titles"]["hash"],
            "passage_encoder_hash": encoders["passages"]["hash"] if encoders["passages"] else None,
            "embed": cfg.embed, "passages": cfg.passages, "passage_tokens": cfg.passage_tokens,
            "passage_split": cfg.passage_split,
            "shard_size": cfg.shard_size, "precision": cfg.precision}


def build_encoders(cfg: BuildConfig) -> dict:
    """{"titles": identity, "passages": identity or None} (indexing.embed.encoder_identity), made once."""
    from indexing.embed import ENCODERS, PASSAGE_ENCODERS, encoder_identity, resolve_encoder
    from indexing.errors import UserError

    title_kind, passage_kind = (resolve_encoder(k, cfg.device) for k in (cfg.title_encoder, cfg.passage_encoder))
    if title_kind not in ENCODERS:
        raise UserError(f"--title-encoder must be one of auto, {', '.join(ENCODERS)}, not {cfg.title_encoder!r}")
    if passage_kind not in PASSAGE_ENCODERS:
        raise UserError(f"--passage-encoder must be one of auto, {', '.join(PASSAGE_ENCODERS)}, "
                        f"not {cfg.passage_encoder!r}")
    titles = encoder_identity(title_kind, cfg.model)
    passages = None
    if cfg.passages and passage_kind != "none":
        passages = titles if passage_kind == title_kind else encoder_identity(passage_kind, cfg.model)
    return {"titles": titles, "passages": passages}


def shard_count(cfg: BuildConfig, n: int) -> int:
    """Shards of `n` products (the last one may be short)."""
    return -(-n // cfg.shard_size)


def shard_texts(docs, passages, a: int, b: int, embed: str) -> tuple[list[str], list[str]]:
    """(title texts, passage texts) of products [a, b) (docs rows; ids == rows in a build)."""
    titles = dense_texts(docs["title"].iloc[a:b], docs["content"].iloc[a:b], embed)
    if passages is None:
        return titles, []
    lo, hi = passages["id"].searchsorted([a, b])
    part = passages.iloc[lo:hi]
    contents = dict(zip(range(a, b), docs["content"].iloc[a:b]))
    return titles, passage_texts(contents, part)


def embed_local(cfg: BuildConfig, encoders: dict, docs, passages, todo: list[int], shards, bar) -> None:
    """Embed the shards in `todo` in this process, writing each as soon as it is done."""
    from indexing.embed import embed, load_kind

    model = load_kind(encoders["titles"], cfg.device)
    passage_model = None
    if encoders["passages"] is not None:
        same = encoders["passages"]["hash"] == encoders["titles"]["hash"]
        passage_model = model if same else load_kind(encoders["passages"], cfg.device)
    for k in todo:
        a, b = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(docs))
        titles, texts = shard_texts(docs, passages, a, b, cfg.embed)
        arrays = {"titles": embed(model, titles, cfg.batch_size, cfg.precision)}
        if passage_model is not None:
            arrays["passages"] = embed(passage_model, texts, cfg.batch_size, cfg.precision)
        shards.write(k, arrays)
        bar.update(b - a)


def build_index(cfg: BuildConfig) -> dict:
    """catalog -> index folder (a new version of it, under its writer lock); returns meta.json's content."""
    from indexing.store import writer

    with writer(cfg.out, cfg.wait, what="index build", create=True):
        return _build(cfg)


def _build(cfg: BuildConfig) -> dict:
    """The build, step by step: load the catalog, embed it shard by shard (resuming a killed build), build the
    title and passage indexes into a new version, train the learned fusion, calibrate abstention, commit."""
    from indexing.calibrate import calibrate_index
    from indexing.catalog import catalog_fingerprint
    from indexing.search import Index
    from indexing.store import commit, read_meta, utc_now, write_faiss, write_meta
    from indexing.vectors import make_faiss_parts

    check_config(cfg)
    t0 = time.time()
    seconds = {}  # per stage, into meta.json's build_seconds

    # 1. load: the catalog, the encoders, the build folder (what an earlier run of the same build finished)
    docs = load_docs(cfg)
    encoders = build_encoders(cfg)
    fingerprint = catalog_fingerprint(cfg.catalog)
    shards, passages, done = start_shards(cfg, docs, encoders, fingerprint, seconds)
    n_shards = shard_count(cfg, len(docs))

    # 2. embed the shards still to do
    embed_shards(cfg, encoders, docs, passages, shards, [k for k in range(n_shards) if k not in done], done)
    t_embed = time.time() - t0

    # 3. the indexes: FAISS from the shards, part by part (never two copies of the vectors in memory), BM25
    with timed(seconds, "faiss_titles"):
        dim = int(shards.load(0, "titles").shape[1])
        title_index, info = make_faiss_parts(shard_parts(cfg, shards, docs, passages, "titles"), len(docs), dim,
                                             cfg.index_type)
    meta = describe(cfg, encoders, docs, dim, info, fingerprint, n_shards, done)
    with commit(cfg.out) as tmp:
        with timed(seconds, "bm25_titles"):
            write_faiss(tmp, title_index)
            del title_index
            write_titles(cfg, tmp, docs, meta)
        if passages is not None:
            write_passage_indexes(cfg, tmp, encoders, docs, passages, shards, meta, seconds)
        if use_multilingual(cfg, passages):
            with timed(seconds, "multilingual"):
                write_cards(cfg, tmp, docs, meta)
        meta["build_seconds"] = {"embed": round(t_embed, 1), **seconds}
        meta = write_meta(tmp, meta)
        described = passages is not None
        del docs, passages  # the loaded version holds its own copies: at full size ~2 GB less at the peak
        index = Index(tmp, model=cfg.model)

        # 4. the fusion, learned from questions about this catalog
        if cfg.ranker and described:
            with timed(meta["build_seconds"], "ranker"):
                train_ranker(cfg, tmp, index, meta)

        # 5. the abstention threshold, measured with the finished index as questions will use it, less the
        # multilingual stage: it reorders only what the fusion is not sure of, which needs the margin measured here
        with timed(meta["build_seconds"], "calibrate"):
            second, index.cards = index.cards, None
            meta.update(calibrate_index(index))
            index.cards = second
        meta["build_seconds"]["total"] = round(time.time() - t0, 1)
        meta["created"] = utc_now()
        write_meta(tmp, meta)

    # 6. committed (the block above published the version): the shards are no longer needed
    shards.remove()
    return read_meta(cfg.out)


@contextmanager
def timed(seconds: dict, stage: str):
    """Record the block's wall time in `seconds[stage]` (meta.json's build_seconds), when it succeeds."""
    t1 = time.time()
    yield
    seconds[stage] = round(time.time() - t1, 1)


def check_config(cfg: BuildConfig) -> None:
    """Refuse settings no build can use, before any work."""
    from indexing.errors import UserError

    if cfg.embed not in ("title", "title+content"):
        raise UserError(f"--embed must be title or title+content, not {cfg.embed!r}")
    if cfg.lexical not in LEXICAL_FIELDS:
        raise UserError(f"--lexical must be one of {', '.join(LEXICAL_FIELDS)}, not {cfg.lexical!r}")
    if cfg.passage_split not in SPLIT_UNITS:
        raise UserError(f"--passage-split must be one of {', '.join(SPLIT_UNITS)}, not {cfg.passage_split!r}")
    if cfg.shard_size < 1 or cfg.passage_tokens < 8:
        raise UserError("--shard-size must be >= 1 and --passage-tokens >= 8")
    if cfg.engine not in ("local", "ray"):
        raise UserError(f"--engine must be local or ray, not {cfg.engine!r}")
    if cfg.multilingual not in ("auto", "use", "none"):
        raise UserError(f"--multilingual must be auto, use or none, not {cfg.multilingual!r}")
    if cfg.multilingual == "use":  # before the embedding, not hours into it
        if not cfg.passages or not cfg.ranker:
            raise UserError("--multilingual use reranks the learned fusion: it needs descriptions and the ranker")
        from indexing import multilingual

        multilingual.identity()  # installed and the pinned one, or a one-line error


def load_docs(cfg: BuildConfig):
    """The catalog's products, one per uid (the last one), with ids 0..n-1 (== rows)."""
    import numpy as np

    from indexing.catalog import read_catalog
    from indexing.errors import UserError

    docs = read_catalog(cfg.catalog)
    if len(docs) == 0:
        raise UserError(f"{cfg.catalog}: the catalog is empty")
    docs = docs.drop_duplicates("uid", keep="last").reset_index(drop=True)
    docs.insert(0, "id", np.arange(len(docs), dtype=np.int64))
    return docs


def start_shards(cfg: BuildConfig, docs, encoders: dict, fingerprint: str, seconds: dict):
    """(the build folder's Shards, the description passages or None, the shards already embedded): resumes
    what an earlier run of the same build finished; splits the descriptions into passages unless it did."""
    import pandas as pd

    from indexing.store import PASSAGES, Shards, build_folder, write_passages
    from indexing.texts import Splitter

    shards = Shards(build_folder(cfg.out))
    resumed = shards.start(settings(cfg, fingerprint, encoders, len(docs)), fresh=cfg.fresh)
    passages = None
    if cfg.passages:
        f = shards.folder / PASSAGES
        try:
            passages = pd.read_parquet(f) if resumed and f.exists() else None
        except Exception:  # torn by a crash: split again (deterministic)
            passages = None
        if passages is None:
            with timed(seconds, "split"):
                passages = Splitter(cfg.passage_tokens, cfg.model, cfg.passage_split).split_many(
                    docs["id"], docs["content"], progress=cfg.progress)
                write_passages(shards.folder, passages)
    done = shards.finished()
    if resumed and done:
        print(f"resuming {cfg.out}: {len(done)} of {shard_count(cfg, len(docs))} shards already embedded")
    return shards, passages, done


def embed_shards(cfg: BuildConfig, encoders: dict, docs, passages, shards, todo: list[int], done) -> None:
    """Embed the shards in `todo` with the configured engine (this process, or Ray), with a progress bar."""
    from tqdm import tqdm

    done_products = sum(min((k + 1) * cfg.shard_size, len(docs)) - k * cfg.shard_size for k in done)
    with tqdm(total=len(docs), initial=done_products, unit="product", desc="embed", disable=not cfg.progress,
              mininterval=1.0, smoothing=0.1) as bar:
        if todo and cfg.engine == "ray":
            from indexing.ray_embed import embed_ray

            embed_ray(cfg, encoders, docs, passages, todo, shards, bar)
        elif todo:
            embed_local(cfg, encoders, docs, passages, todo, shards, bar)


def shard_parts(cfg: BuildConfig, shards, docs, passages, kind: str):
    """A function giving the embedded shards of `kind` ("titles" or "passages") one by one as (vectors, ids):
    indexing.vectors.make_faiss_parts reads it (twice for IVF: once to train, once to add)."""
    def it():
        for k in range(shard_count(cfg, len(docs))):
            X = shards.load(k, kind)
            if kind == "titles":
                ids = docs["id"].to_numpy()[k * cfg.shard_size: k * cfg.shard_size + len(X)]
            else:
                lo = passages["id"].searchsorted(k * cfg.shard_size)
                ids = passages["pid"].to_numpy()[lo: lo + len(X)]
            if len(X):  # a shard without passages holds an empty array of any width
                yield X, ids
    return it


def describe(cfg: BuildConfig, encoders: dict, docs, dim: int, info: dict, fingerprint: str, n_shards: int,
             done) -> dict:
    """meta.json's description of the build (the steps after add to it)."""
    from indexing.catalog import catalog_file

    return {
        "embedding_model": encoders["titles"],  # the title encoder
        "passage_encoder": encoders["passages"] or {"kind": "none"},
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


def write_titles(cfg: BuildConfig, tmp, docs, meta: dict) -> None:
    """Into the new version `tmp`: the products, BM25 over their titles (cfg.lexical) and over the titles'
    character grams (the typo-tolerant retriever)."""
    from indexing.lexical import GRAM, build_bm25, build_char_bm25
    from indexing.store import BM25_CHARS, write_bm25, write_docs

    write_docs(tmp, docs)
    write_bm25(tmp, build_bm25(lexical_texts(docs["title"], docs["content"], cfg.lexical), progress=cfg.progress))
    write_bm25(tmp, build_char_bm25(docs["title"].tolist(), progress=cfg.progress), BM25_CHARS)
    meta["fuzzy"] = f"bm25s over the titles' character {GRAM}-grams"


def write_passage_indexes(cfg: BuildConfig, tmp, encoders: dict, docs, passages, shards, meta: dict,
                          seconds: dict) -> None:
    """Into the new version `tmp`: the passages, their FAISS (unless searched by BM25 alone) and their BM25;
    meta["passages"] describes them."""
    from indexing.lexical import build_bm25
    from indexing.store import BM25_PASSAGES, PASSAGE_VECTORS, write_bm25, write_faiss, write_passages
    from indexing.vectors import PASSAGES_LARGE, make_faiss_parts

    pinfo = {}
    with timed(seconds, "faiss_passages"):
        if encoders["passages"] is not None:  # else passages are searched by BM25 alone
            parts = shard_parts(cfg, shards, docs, passages, "passages")
            pdim = next((int(X.shape[1]) for X, _ in parts()), None)
            if pdim is None:  # no product has a description: the encoder's width, for later adds
                from indexing.embed import embed, load_kind

                pdim = int(embed(load_kind(encoders["passages"], cfg.device), ["width"]).shape[1])
            pindex, pinfo = make_faiss_parts(parts, len(passages), pdim, cfg.index_type, PASSAGES_LARGE)
            pinfo["dim"] = pdim
            write_faiss(tmp, pindex, PASSAGE_VECTORS)
            del pindex
    with timed(seconds, "bm25_passages"):
        write_passages(tmp, passages)
        contents = dict(zip(docs["id"], docs["content"]))
        write_bm25(tmp, build_bm25(passage_texts(contents, passages), progress=cfg.progress), BM25_PASSAGES)
    meta["passages"] = {"count": len(passages), "max_tokens": cfg.passage_tokens, "next_pid": len(passages),
                        "split": cfg.passage_split,
                        "splitter": "semantic-text-splitter (embedding model's tokenizer)" if cfg.passage_split
                        == "tokens" else f"semantic-text-splitter ({CHARS_PER_TOKEN} characters per token)",
                        **pinfo}


def use_multilingual(cfg: BuildConfig, passages) -> bool:
    """Whether this build embeds the products' multilingual cards: with a learned fusion to rerank (it needs
    descriptions), when asked ("use": the extra must be installed) or, by default, when the extra is installed."""
    from indexing import multilingual

    if cfg.multilingual == "none" or passages is None or not cfg.ranker:  # "use" without them: check_config
        return False
    if cfg.multilingual == "use" or multilingual.available():
        multilingual.identity()  # installed and the pinned one, or a one-line error
        return True
    print(f"note: no multilingual stage (questions in Portuguese, questions that describe): {multilingual.INSTALL}",
          file=sys.stderr)
    return False


def write_cards(cfg: BuildConfig, tmp, docs, meta: dict) -> None:
    """Into the new version `tmp`: every product's multilingual card vector (indexing/multilingual.py) by id."""
    from indexing import multilingual
    from indexing.store import write_faiss
    from indexing.vectors import make_faiss

    X = multilingual.embed(multilingual.card_texts(docs["title"].tolist(), docs["content"].tolist()),
                           progress=cfg.progress)
    index, info = make_faiss(X, docs["id"].to_numpy(), cfg.index_type, large="ivf")  # the type cards were measured with
    write_faiss(tmp, index, multilingual.CARDS)
    meta["multilingual"] = {**multilingual.identity(), "count": len(docs), "dim": int(X.shape[1]), **info}


def train_ranker(cfg: BuildConfig, tmp, index, meta: dict) -> None:
    """Fit the learned fusion on questions about the catalog (indexing/rank.py), save it into `tmp` and switch
    `index` to it; meta records it, or why none was learned."""
    from indexing.rank import RankerConfig, fit_ranker
    from indexing.store import RANKER

    ranker, meta["ranker"] = fit_ranker(index, RankerConfig(products=cfg.ranker_products))
    if ranker is not None:
        ranker.save(tmp / RANKER)
        index.ranker, index.fusion = ranker, "learned"
    else:
        print(f"note: no learned fusion: {meta['ranker']['skipped']}", file=sys.stderr)
        meta["ranker_skipped"] = meta.pop("ranker")["skipped"]
