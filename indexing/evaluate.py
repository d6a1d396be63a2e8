"""Retrieval evaluation: does search find the product a question is about?

    productqa eval retrieval --index data/index --catalog data/catalog [--n 500] [--seed 0] [--json FILE]

For a sample of catalog products, asks about each one in five ways, the ways users ask:
  exact       an English phrasing with the exact title         "What is 'Mog's Kittens'?"
  lower       the title lower-cased                            "tell me about mog's kittens."
  partial     the first ~60% of the title's words              "What is 'Girls Ballet Tutu'?"
  typo        one typo (two adjacent letters swapped)          "Describe the product Mgo's Kittens."
  portuguese  a Portuguese phrasing around the English title   "Qual é a descrição deste produto: Mog's Kittens?"
and reports hit@1, hit@5 and MRR (over the top 10) for dense, BM25 and hybrid retrieval.

A hit is the asked-about product, or a product with exactly the same title (two editions of one
book share a title; the question cannot tell them apart).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

VARIANTS = ("exact", "lower", "partial", "typo", "portuguese")
MODES = ("dense", "bm25", "hybrid")


def typo(title: str, rng: random.Random) -> str:
    """Swap two adjacent letters inside the title's longest word (of >= 4 letters)."""
    words = title.split()
    cands = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not cands:
        return title
    i = max(cands, key=lambda j: (len(words[j]), -j))
    w = words[i]
    pos = [j for j in range(len(w) - 1) if w[j].isalpha() and w[j + 1].isalpha() and w[j] != w[j + 1]]
    if not pos:
        return title
    j = rng.choice(pos)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def partial(title: str) -> str:
    words = title.split()
    if len(words) <= 2:
        return title
    return " ".join(words[: max(2, round(len(words) * 0.6))])


def make_eval_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """[{"qid", "variant", "question", "uid", "title"}] for a sample of `n` products."""
    from indexing.questions import make_question

    rng = random.Random(seed)
    rows = list(range(len(docs)))
    rng.shuffle(rows)
    out = []
    for r in rows[:n]:
        uid, title = docs["uid"].iloc[r], docs["title"].iloc[r]
        variants = {
            "exact": make_question(title, uid, "en"),
            "lower": make_question(title.lower(), uid, "en", salt="lower"),
            "partial": make_question(partial(title), uid, "en", salt="partial"),
            "typo": make_question(typo(title, rng), uid, "en", salt="typo"),
            "portuguese": make_question(title, uid, "pt"),
        }
        for v, q in variants.items():
            out.append({"qid": f"{uid}:{v}", "variant": v, "question": q, "uid": uid, "title": title})
    return out


def evaluate_retrieval(index, questions: list[dict], modes=MODES, batch: int = 256) -> dict:
    """{mode: {variant | "all": {"hit@1", "hit@5", "mrr", "n"}}} for a loaded `Index`."""
    report = {}
    for mode in modes:
        ranks = []  # 1-based rank of the first correct hit, or None
        for s in range(0, len(questions), batch):
            qs = questions[s: s + batch]
            for q, hits in zip(qs, index.retrieve_many([x["question"] for x in qs], k=10, mode=mode)):
                key = q["title"].casefold()
                rank = next((i for i, h in enumerate(hits, 1) if h.uid == q["uid"] or h.title.casefold() == key), None)
                ranks.append(rank)
        per = {}
        for v in (*VARIANTS, "all"):
            rs = [r for q, r in zip(questions, ranks) if v == "all" or q["variant"] == v]
            if not rs:
                continue
            per[v] = {"hit@1": sum(r == 1 for r in rs) / len(rs),
                      "hit@5": sum(r is not None and r <= 5 for r in rs) / len(rs),
                      "mrr": sum(1 / r for r in rs if r) / len(rs), "n": len(rs)}
        report[mode] = per
    return report


def format_report(report: dict) -> str:
    lines = ["| retriever | questions | " + " | ".join(f"hit@1 {v}" for v in VARIANTS) + " | hit@1 | hit@5 | MRR |",
             "|---|---:|" + "---:|" * (len(VARIANTS) + 3)]
    for mode, per in report.items():
        a = per["all"]
        lines.append(f"| {mode} | {a['n']} | " + " | ".join(f"{per[v]['hit@1']:.3f}" for v in VARIANTS if v in per)
                     + f" | **{a['hit@1']:.3f}** | {a['hit@5']:.3f} | {a['mrr']:.3f} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder from `productqa index build`")
    p.add_argument("--catalog", required=True, metavar="DIR", help="catalog the questions are generated from")
    p.add_argument("--n", type=int, default=500, help="products to ask about (default 500; 5 questions each)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def main(args: argparse.Namespace) -> int:
    from indexing.catalog import read_catalog
    from indexing.errors import UserError
    from indexing.search import load_index

    if args.n < 1:
        raise UserError("--n must be >= 1")
    index = load_index(args.index)
    docs = read_catalog(args.catalog)
    docs = docs[docs["uid"].isin(set(index.docs["uid"]))]
    if docs.empty:
        raise UserError(f"no product of {args.catalog} is in {args.index}: wrong catalog for this index?")
    questions = make_eval_questions(docs, args.n, args.seed)
    report = evaluate_retrieval(index, questions)
    print(f"{len(questions):,} questions about {len(questions) // len(VARIANTS):,} products; index {args.index} "
          f"({len(index):,} products, dense embeds {index.meta['embed']})\n")
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"index": str(args.index), "catalog": str(args.catalog),
                                               "n_questions": len(questions), "report": report}, indent=2))
    return 0
