"""Export question -> description training pairs from a prepared catalog.

    productqa export --catalog data/catalog --format alpaca --out pairs.alpaca.jsonl
    productqa export --catalog data/catalog --format openai --out pairs.openai.jsonl --per-product 3

alpaca: {"instruction": question, "input": "", "output": description} per line
openai: {"messages": [system, user question, assistant description]} per line (chat fine-tuning format)
Questions use the project's English and Portuguese phrasings (indexing/questions.py), chosen per
product deterministically, so re-exporting gives the same file. Only products with a description give
pairs (a title-only product has no answer to learn: `productqa describe` drafts one instead).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from indexing.errors import UserError


def export_pairs(catalog: str | Path, fmt: str, out: str | Path, per_product: int = 1, lang: str = "any",
                 limit: int | None = None, progress: bool = True) -> int:
    """Write the pairs to `out` (atomically: temp file + rename) for the products with a description (the
    first `limit` of them); return the number of lines."""
    import orjson
    from tqdm import tqdm

    from indexing.catalog import described, read_catalog
    from indexing.questions import make_questions
    from rag.prompt import INSTRUCTION

    if fmt not in ("alpaca", "openai"):
        raise UserError(f"--format must be alpaca or openai, not {fmt!r}")
    if per_product < 1:
        raise UserError("--per-product must be >= 1")
    df = described(read_catalog(catalog))
    if limit is not None:
        df = df.head(limit)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for uid, title, content in tqdm(zip(df["uid"], df["title"], df["content"]), total=len(df),
                                            desc="export", unit="product", disable=not progress):
                for q in make_questions(title, uid, per_product, lang):
                    if fmt == "alpaca":
                        rec = {"instruction": q, "input": "", "output": content}
                    else:
                        rec = {"messages": [{"role": "system", "content": INSTRUCTION},
                                            {"role": "user", "content": q},
                                            {"role": "assistant", "content": content}]}
                    f.write(orjson.dumps(rec) + b"\n")
                    n += 1
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", required=True, metavar="DIR", help="catalog folder written by `productqa prepare`")
    p.add_argument("--format", required=True, choices=("alpaca", "openai"), help="output format")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON lines file to write")
    p.add_argument("--per-product", type=int, default=1, metavar="N",
                   help="questions per product, each a different phrasing (default 1)")
    p.add_argument("--lang", choices=("any", "en", "pt"), default="any",
                   help="question language: English, Portuguese or both (default any)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N products")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    n = export_pairs(args.catalog, args.format, args.out, args.per_product, args.lang, args.limit,
                     progress=not args.quiet)
    print(f"wrote {n:,} {args.format} pairs to {args.out}")
    return 0
