"""Training examples built the way the model will be used: question + retrieved descriptions -> answer.

    productqa examples --catalog data/catalog --index data/index --out data/examples --sample 100000
    productqa examples ... --max-products 5000          # the first 5,000 products instead
    (rerun the same command after a crash or Ctrl-C: it continues; --fresh starts over)

    from finetune.examples import ExampleConfig, build_examples, write_examples
    train, val = build_examples(docs, index, ExampleConfig())      # in memory, for a DataFrame

RAFT-style mix (Zhang et al., 2024): for each product, a question in one of the project's English or
Portuguese phrasings, and a context of k products retrieved by the real index for that question.
  * oracle examples: the product is in the context (usually first, as retrieval ranks it, but moved to
    a later slot in `p_not_first` of them) -> the answer is its description;
  * distractor-only examples (`p_distractor_only`): the product is removed, the context holds only its
    nearest neighbours -> the answer is "This product is not in the catalog."
  * detail examples (`p_detail` of products whose description states a known detail; rag/detail.py):
    the question asks about one detail ("Who illustrated 'X'?", "Quantas páginas tem X?") -> the
    answer is the citation line and the entry's sentence stating it, word for word, as the rule
    reader picks it (kind "detail"); in `p_not_stated` of them it asks about a detail the
    description lacks -> "The description does not say." (kind "detail-not-stated"). As a
    distractor-only example a detail question is answered "not in the catalog" like any other.
  * draft examples (`p_draft` of products, besides their example above): the title alone, no catalog
    entries (rag.prompt.build_draft_prompt), asked in one of the phrasings -> the description's first
    sentences (build_draft_response; kind "draft"): what the model writes for a product the catalog holds
    without a description (`productqa describe`, answers with --draft-missing).
`hold_out` (a JSON list of questions naming products by "title", e.g. `eval answers --detail`'s
fixture) keeps those products out of training like validation products: no example, no distractor.
Products are split 90/10 by uid (hash-based, so stable); a training prompt never shows a validation
product, not even as a distractor. Every random choice is seeded by (seed, uid), so a product's
examples do not depend on which other products were chosen or on where a run was interrupted.

`write_examples` streams the catalog in chunks of `chunk_size` chosen products (retrieval in batches
against the whole index), appending to the folder as it goes:
    EXAMPLES_DIR/
      train.jsonl, val.jsonl   one example per line: prompt, completion, uid, kind, question
      examples.json            what made them (catalog and index identity, settings), how far the
                               build got (chunks done, byte length of each file), and when finished:
                               counts per kind, held-out uids, fingerprint of both files
A rerun truncates the files to the last finished chunk and continues; the result is byte-identical
to an uninterrupted run (tested). Memory holds one chunk, the chosen uids, and the index.
Only products with a description give examples (a title-only product has no answer to learn).
Choosing products without reading the catalog into memory: `max_products` takes the first N,
`sample` draws N stratified by description length (each length band keeps its share of the
catalog), by a seeded hash of the uid: the same N, seed and catalog give the same products.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune.flags import add_fields, given, option
from indexing.errors import UserError

TRAIN, VAL, META = "train.jsonl", "val.jsonl", "examples.json"
# description length bands (characters) for --sample: short blurbs, paragraphs, long descriptions
LENGTH_BANDS = (200, 600, 1500)
FORMAT = 2
EXAMPLE_KINDS = ("oracle", "oracle-not-first", "distractor", "detail", "detail-not-stated", "draft")


@dataclass
class ExampleConfig:
    """Which products, and how their examples are made. Each field is a flag of `productqa examples` and
    `productqa finetune` (finetune/flags.py: the help and default shown come from here)."""

    max_products: int | None = option(None, "the first N catalog products with a description only", metavar="N",
                                      group="examples", exclusive="products")
    sample: int | None = option(None, "N products at random (seeded), stratified by description length",
                                metavar="N", group="examples", exclusive="products")
    # products in each prompt's context (same as `productqa ask -k 3`)
    k: int = option(3, "retrieved products per prompt", group="examples")
    # examples without the right product -> "not in the catalog"
    p_distractor_only: float = option(0.2, "share of 'not in the catalog' examples", group="examples")
    p_not_first: float = option(0.3, "share of examples with the right product not first", group="examples")
    questions_per_product: int = option(1, "phrasings per product", group="examples")
    # products held out for validation (and answer evaluation)
    val_fraction: float = option(0.1, "share of products held out for validation", group="examples")
    # everything random: phrasings, the example mix, the sample (and training's shuffling, LoRA init)
    seed: int = option(3407, "seed of questions, example mix, sample; in training also shuffling, LoRA init",
                       metavar="N", group="hyper")
    chunk_size: int = option(2048, "products per written chunk, the unit a rerun resumes from", group="examples")
    # of the products whose description states a detail of a known kind
    p_detail: float = option(0.5, "share of questions about one detail of the product", group="examples")
    p_not_stated: float = option(0.25, "share of detail questions about a detail the description lacks",
                                 group="examples")
    hold_out: str | None = option(None, "JSON list of questions naming products by \"title\" (e.g. `eval answers "
                                  "--detail`'s fixture): those products get no training example",
                                  metavar="FILE", group="examples")
    # draft examples: the title alone -> the description's first sentences (for products without one)
    p_draft: float = option(0.25, "share of products that also get a draft example (their description written "
                                  "from the title alone)", group="examples")
    # e.g. "draft": an adapter that only drafts descriptions (productqa describe), trained in a fraction
    # of the time of one that also answers from retrieved entries
    kinds: str | None = option(None, "only examples of these kinds, comma-separated (" + ", ".join(EXAMPLE_KINDS)
                               + ")", metavar="KINDS", group="examples")

    def __post_init__(self):
        chosen_kinds(self.kinds)  # a misspelt kind is an error before any work, not after the index loads


def is_validation(uid: str, val_fraction: float = 0.1) -> bool:
    """Stable 90/10 split by product: the same uid is always on the same side."""
    h = int.from_bytes(hashlib.blake2b(f"split:{uid}".encode(), digest_size=4).digest(), "little")
    return (h % 10_000) < val_fraction * 10_000


def held_out_titles(path) -> frozenset:
    """The (case-folded) titles of the products a questions file names: `hold_out`."""
    if not path:
        return frozenset()
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"--hold-out {path}: {e}") from None
    if not isinstance(items, list) or not all(isinstance(it, dict) and isinstance(it.get("title"), str)
                                              for it in items):
        raise UserError(f"--hold-out {path}: expected a JSON list of objects with a \"title\"")
    return frozenset(it["title"].casefold() for it in items)


def _question(uid: str, j: int, title: str, content: str, cfg: ExampleConfig):
    """(question, detail kind or None, quote or None, whether the description states a known detail)
    of a product's j-th example."""
    from indexing.questions import make_question
    from rag.detail import detail_example, stated_kinds
    from rag.prompt import truncate

    shown = truncate(content or "")  # the description as the prompt shows it: all the model can quote
    stated = stated_kinds(shown)
    states = bool(stated)
    rng = random.Random(f"{cfg.seed}:{uid}:{j}:detail")
    if cfg.p_detail > 0 and rng.random() < cfg.p_detail:
        ex = detail_example(title, shown, rng, cfg.p_not_stated, stated=stated)
        if ex is not None:
            return ex[0], ex[1], ex[2], states
    return make_question(title, uid, "any", salt=f"{cfg.seed}:{j}"), None, None, states


def build_examples(docs, index, cfg: ExampleConfig | None = None, progress: bool = False):
    """(train, val) lists of {"prompt", "completion", "uid", "kind", "question"} for the products in `docs`."""
    if cfg is None:
        cfg = ExampleConfig()
    from tqdm import tqdm

    from indexing.questions import make_question
    from rag.prompt import build_detail_response, build_draft_prompt, build_draft_response, build_prompt, build_response

    hold = held_out_titles(cfg.hold_out)
    keep = chosen_kinds(cfg.kinds)

    def held_out(uid, title):
        return is_validation(uid, cfg.val_fraction) or title.casefold() in hold

    items = []
    for uid, title, content in zip(docs["uid"], docs["title"], docs["content"]):
        for j in range(cfg.questions_per_product):
            items.append((uid, j, title, content, *_question(uid, j, title, content, cfg)))
    train, val = [], []
    batch = 128
    for s in tqdm(range(0, len(items), batch), desc="examples", unit="batch", disable=not progress):
        chunk = items[s: s + batch]
        # more candidates than k: the right product and validation products may be dropped below
        results = index.retrieve_many([it[4] for it in chunk], k=cfg.k + 8)
        for (uid, j, title, content, q, detail, quote, states), hits in zip(chunk, results):
            rng = random.Random(f"{cfg.seed}:{uid}:{j}")  # this product's choices, whatever else is chosen
            val_side = held_out(uid, title)
            others = [(h.title, h.content) for h in hits
                      if h.uid != uid and h.title.casefold() != title.casefold()
                      and (val_side or not held_out(h.uid, h.title))]
            if rng.random() < cfg.p_distractor_only:
                ctx, completion, kind = others[: cfg.k], build_response(None), "distractor"
            else:
                ctx = others[: cfg.k - 1]
                pos = rng.randint(1, len(ctx)) if ctx and rng.random() < cfg.p_not_first else 0
                ctx.insert(pos, (title, content))
                if detail is not None:
                    completion = build_detail_response(quote, title, pos + 1)
                    kind = "detail" if quote is not None else "detail-not-stated"
                else:
                    completion = build_response(content, title, pos + 1)
                    kind = "oracle" if pos == 0 else "oracle-not-first"
            ex = {"prompt": build_prompt(q, ctx), "completion": completion, "uid": uid, "kind": kind,
                  "question": q, "detail": detail, "states_detail": states}
            (val if val_side else train).append(ex)
            if j == 0 and cfg.p_draft > 0 and random.Random(f"{cfg.seed}:{uid}:draft").random() < cfg.p_draft:
                dq = make_question(title, uid, "any", salt=f"{cfg.seed}:draft")
                (val if val_side else train).append(
                    {"prompt": build_draft_prompt(dq, title), "completion": build_draft_response(content), "uid": uid,
                     "kind": "draft", "question": dq, "detail": None, "states_detail": states})
    if keep is not None:
        train = [ex for ex in train if ex["kind"] in keep]
        val = [ex for ex in val if ex["kind"] in keep]
    return train, val


def chosen_kinds(kinds: str | None) -> frozenset | None:
    """The example kinds `--kinds` keeps (None: all of them)."""
    if not kinds:
        return None
    chosen = frozenset(k.strip() for k in kinds.split(",") if k.strip())
    unknown = sorted(chosen - set(EXAMPLE_KINDS))
    if unknown or not chosen:
        raise UserError(f"--kinds {kinds!r}: unknown kind(s) {', '.join(unknown) or '(none given)'}; "
                        f"the kinds are {', '.join(EXAMPLE_KINDS)}")
    return chosen


# ---- choosing products from a catalog of any size (streamed, never loaded whole)

def _sample_key(seed: int, uid: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"sample:{seed}:{uid}".encode(), digest_size=8).digest(), "little")


def _band(n_chars: int) -> int:
    return sum(n_chars >= edge for edge in LENGTH_BANDS)


def stratified_sample(catalog, n: int, seed: int = 3407) -> set[str]:
    """uids of `n` products, each description-length band represented in its catalog share (largest
    remainders), the products of a band chosen by a seeded hash of their uid. One streamed pass;
    memory: at most n (key, uid) pairs per band."""
    import pyarrow.compute as pc

    from indexing.catalog import iter_catalog

    counts = [0] * (len(LENGTH_BANDS) + 1)
    heaps = [[] for _ in counts]  # per band: the n smallest keys so far (a max-heap of negated keys)
    for b in iter_catalog(catalog, ["uid", "content"]):
        lengths = pc.utf8_length(b.column("content")).to_pylist()
        for uid, length in zip(b.column("uid").to_pylist(), lengths):
            if not length:  # a title-only product: nothing to learn from
                continue
            band = _band(length)
            counts[band] += 1
            item = (-_sample_key(seed, uid), uid)
            if len(heaps[band]) < n:
                heapq.heappush(heaps[band], item)
            elif item > heaps[band][0]:
                heapq.heapreplace(heaps[band], item)
    total = sum(counts)
    n = min(n, total)
    quota = [n * c // total for c in counts] if total else counts
    for band in sorted(range(len(counts)), key=lambda i: -(n * counts[i] % max(total, 1)))[: n - sum(quota)]:
        quota[band] += 1
    chosen = set()
    for heap, q in zip(heaps, quota):
        chosen.update(uid for _, uid in heapq.nlargest(q, heap))  # largest negated key = smallest key
    return chosen


def chosen_products(catalog, cfg: ExampleConfig):
    """Yield (uid, title, content) of the chosen products, in catalog order, streamed: products with a
    description only (a title-only product has no answer to learn)."""
    from indexing.catalog import iter_catalog

    keep = stratified_sample(catalog, cfg.sample, cfg.seed) if cfg.sample is not None else None
    left = cfg.max_products
    for b in iter_catalog(catalog, ["uid", "title", "content"]):
        for uid, title, content in zip(*(b.column(c).to_pylist() for c in ("uid", "title", "content"))):
            if not content or (keep is not None and uid not in keep):
                continue
            if left is not None:
                if left <= 0:
                    return
                left -= 1
            yield uid, title, content


def count_chosen(catalog, cfg: ExampleConfig) -> int:
    from indexing.catalog import described_rows

    rows = described_rows(catalog)
    return min(rows, cfg.sample if cfg.sample is not None else cfg.max_products or rows)


# ---- the examples folder

def settings(catalog, index, cfg: ExampleConfig) -> dict:
    """What the examples depend on: a resumed run must match it exactly."""
    from indexing.catalog import catalog_fingerprint
    from indexing.store import read_meta
    from rag.prompt import PROMPT_VERSION

    imeta = read_meta(index)
    return {"format": FORMAT, "prompt_version": PROMPT_VERSION,
            "catalog": str(Path(catalog).resolve()), "catalog_fingerprint": catalog_fingerprint(catalog),
            "index": str(Path(index).resolve()), "index_created": imeta["created"],
            "index_model": imeta.get("embedding_model", {}).get("hash"), "config": asdict(cfg),
            "hold_out_titles": hashlib.blake2b("\n".join(sorted(held_out_titles(cfg.hold_out))).encode(),
                                              digest_size=8).hexdigest() if cfg.hold_out else None}


def read_examples_meta(folder: str | Path) -> dict:
    f = Path(folder) / META
    if not f.exists():
        raise UserError(f"{folder}: no {META} (not an examples folder: run `productqa examples`)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{f}: unreadable ({e})") from None


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, folder / META)  # the progress record moves only after the lines are on disk


def files_fingerprint(folder: Path) -> str:
    from indexing.runtime import digest

    return hashlib.blake2b(" ".join(digest(folder / name) for name in (TRAIN, VAL)).encode(),
                           digest_size=16).hexdigest()


def write_examples(catalog, index, out, cfg: ExampleConfig | None = None, fresh: bool = False,
                   progress: bool = True, on_chunk=None) -> dict:
    """Build (or finish building) the examples folder `out`; returns its examples.json.
    `on_chunk(chunks_done)` is called after each chunk is safely written."""
    if cfg is None:
        cfg = ExampleConfig()
    _check_choice(cfg)
    out = Path(out)
    meta = _open_folder(out, settings(catalog, index, cfg), fresh)
    if meta.get("finished"):
        return meta
    from indexing.search import load_index

    idx = load_index(index)
    indexed = set(idx.docs["uid"])
    _write_chunks(catalog, index, idx, indexed, out, meta, cfg, progress, on_chunk)
    return _finish(catalog, out, meta, indexed)


def _check_choice(cfg: ExampleConfig) -> None:
    """The settings mistakes that can be caught before reading anything."""
    if cfg.chunk_size < 1:
        raise UserError("--chunk-size must be >= 1")
    if cfg.max_products is not None and cfg.sample is not None:
        raise UserError("--max-products and --sample choose the products two ways: give one")
    for name, v in (("--max-products", cfg.max_products), ("--sample", cfg.sample)):
        if v is not None and v < 1:
            raise UserError(f"{name} must be >= 1")


def _open_folder(out: Path, want: dict, fresh: bool) -> dict:
    """examples.json of `out`: a finished one made with the settings `want`, or an unfinished one whose
    files are cut back to its last finished chunk, or a new one (with empty files)."""
    from indexing.runtime import utc_now

    meta = None
    if (out / META).exists() and not fresh:
        meta = read_examples_meta(out)
        if meta.get("settings") != want:
            old = meta.get("settings", {})
            diff = sorted(k for k in set(old) | set(want) if k != "config" and old.get(k) != want.get(k))
            diff += sorted(f"config.{k}" for k in want["config"] if old.get("config", {}).get(k) != want["config"][k])
            raise UserError(f"{out}: holds examples made with other settings ({', '.join(diff)} differ); "
                            "pass --fresh to replace them, or choose another --out")
        if meta.get("finished"):
            return meta
    if meta is None:
        out.mkdir(parents=True, exist_ok=True)
        for name in (TRAIN, VAL):
            (out / name).write_bytes(b"")
        meta = {"settings": want, "chunks_done": 0, "products_done": 0, "bytes": {TRAIN: 0, VAL: 0},
                "finished": False, "started": utc_now()}
        _write_meta(out, meta)
    for name in (TRAIN, VAL):  # drop lines written after the last recorded chunk (a crash mid-chunk)
        with open(out / name, "r+b") as f:
            f.truncate(meta["bytes"][name])
    return meta


def _write_chunks(catalog, index, idx, indexed: set, out: Path, meta: dict, cfg: ExampleConfig, progress: bool,
                  on_chunk) -> None:
    """Append the examples of the chosen products not done yet, `chunk_size` products at a time,
    recording each finished chunk in `meta` (and examples.json)."""
    import orjson
    import pandas as pd
    from tqdm import tqdm

    total = count_chosen(catalog, cfg)
    bar = tqdm(total=total, initial=meta["products_done"], desc="examples", unit="product", disable=not progress)
    products = chosen_products(catalog, cfg)
    for _ in range(meta["products_done"]):  # skip what earlier runs finished (streamed, cheap)
        next(products, None)
    files = {name: open(out / name, "ab") for name in (TRAIN, VAL)}
    try:
        while True:
            rows = [r for _, r in zip(range(cfg.chunk_size), products)]
            if not rows:
                break
            docs = pd.DataFrame(rows, columns=["uid", "title", "content"])
            if meta["chunks_done"] == 0 and not docs["uid"].isin(indexed).any():  # fail before hours of work
                raise UserError(f"none of the first {len(docs):,} chosen products of {catalog} is in the index "
                                f"{index}: wrong index?")
            train, val = build_examples(docs, idx, cfg)
            for name, exs in ((TRAIN, train), (VAL, val)):
                files[name].write(b"".join(orjson.dumps(e) + b"\n" for e in exs))
                files[name].flush()
                os.fsync(files[name].fileno())
                meta["bytes"][name] = files[name].tell()
            meta["chunks_done"] += 1
            meta["products_done"] += len(rows)
            _write_meta(out, meta)
            bar.update(len(rows))
            if on_chunk:
                on_chunk(meta["chunks_done"])
    finally:
        for f in files.values():
            f.close()
        bar.close()


def _finish(catalog, out: Path, meta: dict, indexed: set) -> dict:
    """Mark the folder finished: counts, fingerprint of both files, version (examples.json)."""
    from indexing import __version__
    from indexing.runtime import utc_now

    if meta["products_done"] == 0:
        raise UserError(f"{catalog}: no products chosen (empty catalog?)")
    meta.update(_summary(out, indexed))
    meta.update(finished=True, fingerprint=files_fingerprint(out), created=utc_now())
    meta["productqa_version"] = __version__
    _write_meta(out, meta)
    return meta


def _summary(out: Path, indexed: set) -> dict:
    """Counts per split and kind, held-out uids, and how many chosen products the index holds."""
    import orjson

    counts, kinds, details, held_out, in_index, products, stating = {}, {}, {}, set(), 0, set(), 0
    for name in (TRAIN, VAL):
        n = 0
        with open(out / name, "rb") as f:
            for line in f:
                e = orjson.loads(line)
                n += 1
                if name == TRAIN:
                    kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
                    if e["kind"].startswith("detail"):
                        details[e["detail"]] = details.get(e["detail"], 0) + 1
                else:
                    held_out.add(e["uid"])
                if e["uid"] not in products:
                    products.add(e["uid"])
                    in_index += e["uid"] in indexed
                    stating += bool(e.get("states_detail"))
        counts[name.split(".")[0]] = n
    return {"examples": counts, "train_kinds": kinds, "train_detail_kinds": dict(sorted(details.items())),
            "held_out_uids": sorted(held_out), "products": len(products), "products_in_index": in_index,
            # products whose description (as the prompt shows it) states a detail of a known kind
            "products_stating_a_detail": stating}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", required=True, metavar="DIR", help="catalog folder (productqa prepare)")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder: retrieves each example's context")
    p.add_argument("--out", required=True, metavar="DIR", help="examples folder to write (or to continue)")
    add_example_arguments(p)
    add_fields(p, ExampleConfig, "hyper")  # --seed
    p.add_argument("--fresh", action="store_true", help="discard examples already in --out and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_example_arguments(p: argparse.ArgumentParser) -> None:
    """The "training examples" flags of ExampleConfig (shared with `productqa finetune`)."""
    add_fields(p.add_argument_group("training examples"), ExampleConfig, "examples")


def config_from(values: dict) -> ExampleConfig:
    """ExampleConfig from any mapping holding (some of) its field names; None = the default."""
    return ExampleConfig(**given(values, ExampleConfig))


def main(args: argparse.Namespace) -> int:
    cfg = config_from(vars(args))
    meta = write_examples(args.catalog, args.index, args.out, cfg, fresh=args.fresh, progress=not args.quiet)
    c = meta["examples"]
    print(f"examples: {args.out}  ({c['train']:,} training, {c['val']:,} validation, from {meta['products']:,} "
          f"products; {meta['products_in_index']:,} of them in the index; "
          f"{meta['products_stating_a_detail']:,} state a detail of a known kind)", file=sys.stdout)
    return 0
