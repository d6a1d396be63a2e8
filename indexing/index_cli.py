"""The `productqa index` command group: build, add, remove, info.

    productqa index build  --catalog data/catalog --out data/index [--passage-tokens 128] [--shard-size 4096]
                           [--engine local|ray] [--ray-address ADDR] [--fresh] [--wait SECONDS]
    productqa index add    --index data/index --input new_products.jsonl [--wait SECONDS]
    productqa index remove --index data/index --uid 0001360000 [--uid ...] [--wait SECONDS]
    productqa index compact --index data/index [--wait SECONDS] [--if-needed] [--nice N]
    productqa index info   --index data/index [--json]

An add writes its products as a delta and a remove writes tombstones (indexing/update.py); compact
rewrites them into the base (started in the background by an add or remove past a threshold, see
--compact-now / --no-compact). Each build, add, remove or compact
commits a new version of the index folder under its writer lock: a second
writer waits (--wait, default 600 s; 0 = fail at once with a one-line error), running chats and
batches keep answering and pick up the new version within seconds (`--reload-seconds`). A build that
was interrupted (kill -9, Ctrl-C, a reboot) continues where it stopped when the same command runs
again (see indexing/build.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from indexing.embed import DEFAULT_PASSAGE_ENCODER, DEFAULT_TITLE_ENCODER, ENCODERS, PASSAGE_ENCODERS
from indexing.texts import DEFAULT_PASSAGE_TOKENS, LEXICAL_FIELDS
from indexing.vectors import FLAT_MAX, RERANKED


def ivfpq(info: dict) -> str:
    """`index info`'s words for an ivfpq index's codes and short list."""
    return f", {info['codes']} codes, re-rank {info['rerank']}" if info.get("index_type") in RERANKED else ""


def format_info(folder: str | Path, meta: dict, versions: dict | None = None) -> str:
    from indexing.store import REBUILD_HINT

    m = meta
    p = m.get("passages")
    cal = m.get("calibration", {})
    lines = [
        f"index:      {folder}",
        f"products:   {m['count']:,}",
        f"dense:      {m['index_type']}"
        + (f" (nlist {m['nlist']}, nprobe {m['nprobe']}{ivfpq(m)})" if m["index_type"] in ("ivf", *RERANKED) else "")
        + f", dim {m['dim']}, {m['metric']}, embeds {m['embed']}",
        (f"passages:   {p['count']:,} description passages of at most {p['max_tokens']} tokens"
         f"{' (counted in characters)' if p.get('split') == 'chars' else ''}, "
         f"{p.get('index_type', 'no vectors (BM25 alone)')}"
         + (f" (nlist {p['nlist']}, nprobe {p['nprobe']}{ivfpq(p)})" if p.get("index_type") in ("ivf", *RERANKED)
            else ""))
        if p else f"passages:   none: titles only ({REBUILD_HINT})",
        f"model:      {m['embedding_model']['name']} (hash {m['embedding_model']['hash'][:12]}), titles"
        + (f"; passages: {pe['name']} (hash {pe['hash'][:12]})"
           if (pe := m.get("passage_encoder", m["embedding_model"])).get("kind") != "none"
           else "; passages: BM25 alone (--passage-encoder none)"),
        (f"fusion:     learned ({m['ranker']['library']} {m['ranker']['objective']}, {m['ranker']['trees']} trees, "
         f"{len(m['ranker']['features'])} features; {m['ranker']['training']['questions']:,} training questions about "
         f"{m['ranker']['training']['products']:,} products; validation hit@1 {m['ranker']['validation_hit@1']})")
        if m.get("ranker") else "fusion:     rule (route by word coverage)"
        + (f": {m['ranker_skipped']}" if m.get("ranker_skipped") else ""),
        (f"second:     multilingual cards ({m['multilingual']['package']} {m['multilingual']['version']}, "
         f"{m['multilingual']['count']:,} products) for questions the fusion is not sure name a product"
         if m.get("multilingual") else "second:     none (no multilingual stage)"),
        f"lexical:    {m['bm25']}",
        f"abstain:    best {m.get('abstain_score', 'cosine')} < {m.get('abstain_threshold', 0):.3f} (found by title)"
        + (f", < {m['abstain_threshold_described']:.3f} (found by description)"
           if "abstain_threshold_described" in m else "")
        + f" -> 'not in the catalog' (calibrated: {cal.get('correct_abstain_rate', 0):.1%} of invented products "
          f"rejected" + (f" ({cal['correct_abstain_rate_described']:.1%} of invented descriptions)"
                         if cal.get("correct_abstain_rate_described") is not None else "")
        + f", {cal.get('false_abstain_rate', 0):.1%} of real questions)",
        f"catalog:    {m['catalog']['path']} (fingerprint {m['catalog']['fingerprint'][:12]})",
        f"created:    {m['created']} by productqa {m['productqa_version']}"
        + (f", updated {m['updated']}" if m.get("updated") else ""),
    ]
    if versions is not None:
        v = versions
        lines.insert(1, f"version:    {v['current']} (live)" + (f"; on disk: {', '.join(map(str, v['on_disk']))}"
                                                              if v["on_disk"] else f"; {v['layout']}"))
        lines.insert(2, f"writer:     {v['writer'] or 'none'}")
        deltas = m.get("deltas", [])
        lines.insert(3, f"updates:    {len(deltas)} delta{'s' * (len(deltas) != 1)} "
                        f"({sum(d['count'] for d in deltas):,} products), {m.get('tombstones', 0):,} tombstones"
                        + (f" over a {m['base']['products']:,}-product base" if "base" in m else "")
                        + (f"; compacted {m['compacted']}" if m.get("compacted") else ""))
    return "\n".join(lines)


def _compact_argument(p) -> None:
    from indexing.update import COMPACT_FRACTION

    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-compact", action="store_true",
                   help=f"keep the change as a delta/tombstones even past {COMPACT_FRACTION:.0%} of the base "
                        f"(compact later with `productqa index compact`)")
    g.add_argument("--compact-now", action="store_true",
                   help=f"past {COMPACT_FRACTION:.0%} of the base, compact before returning (default: compact in a "
                        f"background process, logged to INDEX_DIR/compact.log)")


def _compact_mode(args) -> str:
    return "never" if args.no_compact else "now" if args.compact_now else "background"


def _compacted(r: dict) -> str:
    return (", compacted" if r["compacted"] else
            f"; compacting in the background, pid {r['compacting']}" if r.get("compacting") else "")


def _wait_argument(p) -> None:
    from indexing.store import WAIT

    p.add_argument("--wait", type=float, default=WAIT, metavar="SECONDS",
                   help=f"wait this long for another writer of the index to finish (default {WAIT}); "
                        "0 = fail at once")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="embed a catalog and write a new index (atomically)",
                       description="Embed every product of a catalog and build the FAISS + BM25 index.")
    b.add_argument("--catalog", required=True, metavar="DIR", help="catalog folder from `productqa prepare`")
    b.add_argument("--out", required=True, metavar="INDEX_DIR",
                   help="index folder to write (its new version goes live only when done)")
    b.add_argument("--model", metavar="PATH",
                   help="local sentence-transformers folder (default: packaged all-MiniLM-L6-v2)")
    b.add_argument("--batch-size", type=int, default=64, metavar="N", help="texts per forward pass (default 64)")
    b.add_argument("--title-encoder", choices=("auto", *ENCODERS), default=DEFAULT_TITLE_ENCODER,
                   help="what embeds titles: the model (minilm), its int8 ONNX export (minilm-int8, CPU) or a static "
                        "model distilled from it (static); made once, offline; auto: minilm-int8 on a CPU, minilm on "
                        "CUDA (default minilm)")
    b.add_argument("--passage-encoder", choices=("auto", *PASSAGE_ENCODERS), default=DEFAULT_PASSAGE_ENCODER,
                   help=f"what embeds description passages: as --title-encoder, or none (BM25 alone) "
                        f"(default {DEFAULT_PASSAGE_ENCODER})")
    b.add_argument("--passage-tokens", type=int, default=DEFAULT_PASSAGE_TOKENS, metavar="N",
                   help=f"most tokens in one description passage (default {DEFAULT_PASSAGE_TOKENS})")
    b.add_argument("--passage-split", choices=("tokens", "chars"), default="tokens",
                   help="count a passage's size in model tokens (exact) or in characters (~4.5 a token; ~50x faster "
                        "to split, retrieval within the same bounds: docs/results.md \"Encoders\") (default tokens)")
    b.add_argument("--titles-only", action="store_true", help="do not index descriptions (the pre-0.2 index)")
    b.add_argument("--shard-size", type=int, default=4096, metavar="N",
                   help="products embedded per shard; a crash loses at most one shard (default 4096)")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray Data actors (pip install -e '.[ray]')")
    b.add_argument("--ray-address", metavar="ADDR",
                   help="with --engine ray: a running cluster (e.g. auto); default: a local Ray on 127.0.0.1")
    b.add_argument("--resume", action="store_true",
                   help="continue an interrupted build (also what re-running the same command does)")
    b.add_argument("--fresh", action="store_true", help="discard an interrupted build's shards and start over")
    b.add_argument("--device", choices=("cpu", "cuda"), help="embedding device (default: cuda if available)")
    b.add_argument("--embed", choices=("title", "title+content"), default="title",
                   help="what the dense vectors encode (default: title; see docs/results.md for the measurement)")
    b.add_argument("--lexical", choices=tuple(LEXICAL_FIELDS), default="title",
                   help="what BM25 indexes (default: title; see docs/results.md for the measurement)")
    b.add_argument("--index-type", choices=("auto", "flat", "ivf", *RERANKED), default="auto",
                   help=f"auto = exact up to {FLAT_MAX:,} products; above: titles ivfpq (IVF with 4-bit "
                        "fast-scan codes + exact re-rank), passages ivfsq (8-bit codes + exact re-rank); "
                        "ivf: IVF-Flat, the type before")
    b.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto = bf16 on bf16-capable CPUs, fp16 on CUDA")
    b.add_argument("--fusion", choices=("learned", "rule"), default="learned",
                   help="learned: a ranker trained at build time on questions about this catalog (default); "
                        "rule: route by word coverage (indexes before 0.3)")
    b.add_argument("--ranker-products", type=int, default=1000, metavar="N",
                   help="products whose generated questions train the learned fusion (default 1000)")
    b.add_argument("--multilingual", choices=("auto", "use", "none"), default="auto",
                   help="the multilingual second stage for Portuguese and describing questions "
                        "(indexing/multilingual.py): auto = when its extra is installed (default), use = required, "
                        "none = without it")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    _wait_argument(b)
    b.set_defaults(_index_main=_main_build)

    a = sub.add_parser("add", help="add or replace products (upsert by uid) without re-embedding the rest",
                       description="Add new or changed products (same cleaning as prepare), upserted by uid.")
    a.add_argument("--index", required=True, metavar="INDEX_DIR")
    a.add_argument("--input", required=True, action="append", metavar="FILE",
                   help="raw AmazonTitles JSON lines or Alpaca JSON (as for prepare); repeatable")
    a.add_argument("--batch-size", type=int, default=64, metavar="N")
    a.add_argument("--device", choices=("cpu", "cuda"))
    a.add_argument("--skipped", metavar="FILE",
                   help="write every record the add did not take (with its reason) to FILE as JSON lines; the "
                        "first ones are printed either way")
    a.add_argument("--quiet", action="store_true")
    _wait_argument(a)
    _compact_argument(a)
    a.set_defaults(_index_main=_main_add)

    r = sub.add_parser("remove", help="remove products by uid", description="Remove products from an index by uid.")
    r.add_argument("--index", required=True, metavar="INDEX_DIR")
    r.add_argument("--uid", required=True, nargs="+", action="extend", metavar="UID", help="uids to remove")
    _wait_argument(r)
    _compact_argument(r)
    r.set_defaults(_index_main=_main_remove)

    c = sub.add_parser("compact", help="merge the deltas and tombstones of updates into the base",
                       description="Rewrite base + deltas - tombstones as one base (a new version; no re-embedding).")
    c.add_argument("--index", required=True, metavar="INDEX_DIR")
    c.add_argument("--if-needed", action="store_true",
                   help="only if the deltas and tombstones are still past the threshold (what updates start)")
    c.add_argument("--nice", type=int, default=0, metavar="N", help="lower this process's priority by N first")
    _wait_argument(c)
    c.set_defaults(_index_main=_main_compact)

    i = sub.add_parser("info", help="what an index holds and what made it",
                       description="Print an index's meta.json, readably.")
    i.add_argument("--index", required=True, metavar="INDEX_DIR")
    i.add_argument("--json", action="store_true", help="print the live version's meta.json, plus \"versions\"")
    i.set_defaults(_index_main=_main_info)


def main(args: argparse.Namespace) -> int:
    return args._index_main(args)


def _main_build(args) -> int:
    from indexing.build import BuildConfig, build_index
    from indexing.errors import UserError

    if args.resume and args.fresh:
        raise UserError("--resume and --fresh contradict each other")
    cfg = BuildConfig(catalog=args.catalog, out=args.out, model=args.model, batch_size=args.batch_size,
                      device=args.device, embed=args.embed, lexical=args.lexical, index_type=args.index_type,
                      precision=args.precision, passages=not args.titles_only, passage_tokens=args.passage_tokens,
                      shard_size=args.shard_size, engine=args.engine, ray_address=args.ray_address,
                      fresh=args.fresh, ranker=args.fusion == "learned", progress=not args.quiet,
                      wait=args.wait, title_encoder=args.title_encoder, passage_encoder=args.passage_encoder,
                      ranker_products=args.ranker_products, passage_split=args.passage_split,
                      multilingual=args.multilingual)
    meta = build_index(cfg)
    print(format_info(args.out, meta))
    print(f"version {meta['version']} committed; built in {meta['build_seconds']['total']} s "
          f"(embedding {meta['build_seconds']['embed']} s)")
    return 0


def _main_add(args) -> int:
    from indexing.update import add_products

    r = add_products(args.index, args.input, batch_size=args.batch_size, device=args.device, progress=not args.quiet,
                     wait=args.wait, compact=_compact_mode(args))
    print(f"added {r['added']:,}, replaced {r['replaced']:,} ({r['title_only']:,} of them without a description: "
          f"title-only products); index now holds {r['count']:,} products (version {r['version']}{_compacted(r)})")
    print_skipped(r["skipped"], args.skipped)
    return 0


SHOWN_SKIPPED = 20  # skipped records printed; --skipped FILE lists them all


def print_skipped(skipped: list, out: str | None) -> None:
    """Every record an add did not take: a count per reason, the first SHOWN_SKIPPED ones, all of them in `out`."""
    import json
    from collections import Counter

    if out:
        with open(out, "w", encoding="utf-8") as f:
            for s in skipped:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
    if not skipped:
        return
    print(f"skipped {len(skipped):,} records: " + "; ".join(f"{n:,} {why}" for why, n in Counter(
        s["reason"] for s in skipped).most_common()))
    for s in skipped[:SHOWN_SKIPPED]:
        where = f"line {s['line']}" if "line" in s else f"record {s['record']}" if "record" in s else "a record"
        what = " ".join(x for x in (f"uid {s['uid']}" if s.get("uid") else "",
                                    repr(s["title"]) if s.get("title") else "") if x)
        print(f"  {s['file']}: {where}{' (' + what + ')' if what else ''}: {s['reason']}")
    if len(skipped) > SHOWN_SKIPPED:
        print(f"  ... {len(skipped) - SHOWN_SKIPPED:,} more" + (f" (all in {out})" if out else
                                                                " (--skipped FILE lists them all)"))


def _main_remove(args) -> int:
    from indexing.update import remove_products

    r = remove_products(args.index, args.uid, wait=args.wait, compact=_compact_mode(args))
    if r["not_found"]:
        print(f"not in the index: {', '.join(r['not_found'])}")
    print(f"removed {r['removed']:,}; index now holds {r['count']:,} products"
          + (f" (version {r['version']}{_compacted(r)})" if r["version"] is not None
             else " (no new version)"))
    return 0 if r["removed"] or not r["not_found"] else 1


def _main_compact(args) -> int:
    import os

    from indexing.runtime import utc_now
    from indexing.update import compact

    if args.nice:
        os.nice(args.nice)
    if args.if_needed:  # a background compaction: its log (compact.log) says when it ran
        print(f"{utc_now()} pid {os.getpid()}: compaction started", flush=True)
    r = compact(args.index, wait=args.wait, if_needed=args.if_needed)
    if not r["compacted"]:
        print(f"nothing to compact: {args.index} has no deltas or tombstones"
              + (" past the threshold" if args.if_needed else "") + f" (version {r['version']})")
    else:
        print(f"compacted {r['deltas']} deltas and {r['tombstones']:,} tombstones: {r['count']:,} products "
              f"(version {r['version']})")
    return 0


def _main_info(args) -> int:
    import json

    from indexing.store import read_meta, versions

    meta = read_meta(args.index)
    v = versions(args.index)
    print(json.dumps({**meta, "versions": v}, indent=2) if args.json else format_info(args.index, meta, v))
    return 0


if __name__ == "__main__":  # `python -m indexing.index_cli compact ...`: how an update starts a background compaction
    import sys

    from indexing.errors import UserError

    parser = argparse.ArgumentParser(prog="productqa index")
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except UserError as e:
        print(f"productqa index: error: {e}", file=sys.stderr)
        sys.exit(2)
