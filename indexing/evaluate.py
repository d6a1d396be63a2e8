"""Retrieval evaluation: does search find the product a question is about?

    productqa eval retrieval --index data/index --catalog data/catalog [--n 500] [--seed 0] [--json FILE]
        [--extra questions.json]

For a sample of catalog products (by default those the learned fusion never trains on:
`questions.held_out_product`), asks about each one the ways users ask (indexing/questions.py): by name
(exact title, lower-case, partial title, a typo, Portuguese; in conversational frames, a training one and
held-out ones, with typos and partial titles; short titles in held-out frames) and by description (a
quoted span, a "looking for something that..." phrasing, a Portuguese one, a held-out frame; never with
the title's words). `--extra FILE` adds hand-written questions ([{"title", "question", "kind"?}]: kind
"name" -> hand_name, "description" -> hand_desc, "description_pt" -> hand_pt_desc, none -> handwritten).
Reports hit@1, hit@5 and MRR (over the top 10) per kind of question, for each retriever. For hybrid
search (what answering uses) also the abstention table: how often "not in the catalog" is said (the
index's calibrated rule over the top 3 hits, as answering applies it) to naming questions about products
with a description and about title-only products (products without one: found by their title alone),
and to questions naming invented products (the calibration's made-up products, in the held-out frames).

A hit is the asked-about product, or a product with exactly the same title (two editions of one
book share a title; the question cannot tell them apart), or, for a question quoting a description,
a product whose description holds the same words (`questions.holds_span`: a series blurb, an
author's biography or a review quote shared by several products). "hit@1 strict" counts only the
asked-about product (and its title's twins).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexing.questions import (
    CHAT_DESCRIPTION_VARIANTS,
    CHAT_VARIANTS,
    DESCRIPTION_VARIANTS,
    VARIANTS,
    found,
    held_out_product,
    make_chat_description_questions,
    make_chat_questions,
    make_description_questions,
    make_eval_questions,
)

MODES = ("dense", "bm25", "fuzzy", "titles", "descriptions", "hybrid")

# hand-written (--extra): "handwritten" (description_questions.json: the 20 that chose the ranker's settings),
# "hand_name" / "hand_desc" (heldout_questions.json, items with "kind": written after, never used for a choice)
# "hand_pt_desc" (pt_describing_questions.json, "kind": "description_pt": Portuguese descriptions of products
# whose descriptions are in English, written after the multilingual stage's settings were chosen)
HANDWRITTEN = {None: "handwritten", "name": "hand_name", "description": "hand_desc", "description_pt": "hand_pt_desc"}
KINDS = (*VARIANTS, *CHAT_VARIANTS, "hand_name", *DESCRIPTION_VARIANTS, *CHAT_DESCRIPTION_VARIANTS, "hand_desc",
         "hand_pt_desc", "handwritten")
NAMING, DESCRIBING = (*VARIANTS, *CHAT_VARIANTS), (*DESCRIPTION_VARIANTS, *CHAT_DESCRIPTION_VARIANTS)
# phrasings the ranker never trained on, about products it never trained on
HELD_OUT_KINDS = ("chat", "chat_pt", "chat_typo", "chat_partial", "short", "hand_name", "desc_chat", "hand_desc",
                  "hand_pt_desc")
GROUPS = {"names": NAMING, "descriptions": DESCRIBING, "held-out frames": HELD_OUT_KINDS, "all": KINDS}
ABSTAIN_K = 3  # hits the "not in the catalog" rule looks at: answering retrieves 3 (ask -k 3)


def all_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """Every generated kind of question about a sample of `n` products of `docs`."""
    return (make_eval_questions(docs, n, seed) + make_chat_questions(docs, n, seed)
            + make_description_questions(docs, n, seed) + make_chat_description_questions(docs, n, seed))


def held_out(docs):
    """The products the learned fusion is never trained on (questions.held_out_product)."""
    return docs[[held_out_product(u) for u in docs["uid"]]]


def handwritten_questions(path, docs) -> list[dict]:
    """Questions from a JSON file [{"title", "question", "kind"?}] about products of `docs` (by exact title)."""
    from indexing.errors import UserError

    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a JSON list of {{\"title\", \"question\"}} ({e})") from None
    uid_of = dict(zip(docs["title"], docs["uid"]))
    missing = [it["title"] for it in items if it["title"] not in uid_of]
    if missing:
        raise UserError(f"{path}: {len(missing)} titles are not in the catalog, e.g. {missing[0]!r}")
    bad = [it.get("kind") for it in items if it.get("kind") not in HANDWRITTEN]
    if bad:
        raise UserError(f"{path}: \"kind\" must be name, description or description_pt, not {bad[0]!r}")
    return [{"qid": f"{Path(path).stem}:{i}", "variant": HANDWRITTEN[it.get("kind")], "question": it["question"],
             "uid": uid_of[it["title"]], "title": it["title"]} for i, it in enumerate(items)]


def evaluate_retrieval(index, questions: list[dict], modes=("hybrid",), batch: int = 256) -> dict:
    """{mode: {kind | "names" | "descriptions" | "all": {"hit@1", "hit@5", "mrr", "n"}}} for a loaded `Index`;
    in hybrid mode each group also has "refused": the share of its questions the index abstains on. A
    question may carry "title_only" (its product has no description): the names groups are also split by it
    ("names: described", "names: title-only")."""
    report = {}
    for mode in modes:
        ranks, strict, refused = [], [], []  # 1-based rank of the first correct hit, or None
        for s in range(0, len(questions), batch):
            qs = questions[s: s + batch]
            for q, hits in zip(qs, index.retrieve_many([x["question"] for x in qs], k=10, mode=mode)):
                same, shares = zip(*(found(q, h.uid, h.title, h.content) for h in hits)) if hits else ((), ())
                strict.append(next((i for i, ok in enumerate(same, 1) if ok), None))
                ranks.append(next((i for i, ok in enumerate(shares, 1) if ok), None))
                refused.append(mode == "hybrid" and index.abstains(hits[:ABSTAIN_K]))
        per = {}
        groups = {**{v: (v,) for v in KINDS}, **GROUPS}
        groups = {g: (lambda q, kinds=kinds: q["variant"] in kinds) for g, kinds in groups.items()}
        groups["names: described"] = lambda q: q["variant"] in (*NAMING, "hand_name") and not q.get("title_only")
        groups["names: title-only"] = lambda q: q["variant"] in (*NAMING, "hand_name") and bool(q.get("title_only"))
        for g, member in groups.items():
            rs = [r for q, r in zip(questions, ranks) if member(q)]
            if not rs:
                continue
            st = [r for q, r in zip(questions, strict) if member(q)]
            per[g] = {"hit@1": sum(r == 1 for r in rs) / len(rs), "hit@1_strict": sum(r == 1 for r in st) / len(st),
                      "hit@5": sum(r is not None and r <= 5 for r in rs) / len(rs),
                      "mrr": sum(1 / r for r in rs if r) / len(rs), "n": len(rs)}
            if mode == "hybrid":
                per[g]["refused"] = sum(x for q, x in zip(questions, refused) if member(q)) / len(rs)
        report[mode] = per
    return report


def invented_questions(docs, n: int = 300, seed: int = 0) -> list[str]:
    """Questions naming `n` invented products (indexing.calibrate's made-up names, checked absent from
    `docs`): half in the fine-tuning templates, half in the held-out conversational frames."""
    import random

    from indexing.calibrate import invented_titles
    from indexing.questions import HELD_OUT_FRAMES_EN, HELD_OUT_FRAMES_PT, make_question

    rng = random.Random(seed + 11)
    titles = invented_titles(n, {t.casefold() for t in docs["title"]}, seed + 7)  # not the calibration's own
    return [make_question(t, t, "any", salt="eval") if i % 2 else
            rng.choice(HELD_OUT_FRAMES_EN + HELD_OUT_FRAMES_PT).format(title=t) for i, t in enumerate(titles)]


def evaluate_abstention(index, report: dict, invented: list[str], batch: int = 256) -> dict:
    """The abstention table of a hybrid report: {"named, described": {"n", "refused", "hit@1"}, "named,
    title-only": ..., "invented": {"n", "refused"}}."""
    refused = []
    for s in range(0, len(invented), batch):
        refused += [index.abstains(h[:ABSTAIN_K]) for h in index.retrieve_many(invented[s: s + batch], k=ABSTAIN_K)]
    per = report.get("hybrid", {})
    out = {name: {k: per[g][k] for k in ("n", "refused", "hit@1")}
           for name, g in (("named, described", "names: described"), ("named, title-only", "names: title-only"))
           if g in per}
    out["invented"] = {"n": len(invented), "refused": sum(refused) / max(len(invented), 1)}
    return out


def format_abstention(table: dict) -> str:
    lines = ["| questions | n | hit@1 | \"not in the catalog\" |", "|---|---:|---:|---:|"]
    for name, row in table.items():
        hit = f"{row['hit@1']:.3f}" if "hit@1" in row else "-"
        lines.append(f"| {name} | {row['n']:,} | {hit} | {row['refused']:.1%} |")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    kinds = [v for v in KINDS if any(v in per for per in report.values())]
    lines = ["| retriever | " + " | ".join(kinds) + " | by name | by name, strict | by description "
             "| by description, strict | held-out frames | hit@1 | hit@5 | MRR |", "|---|" + "---:|" * (len(kinds) + 8)]
    for mode, per in report.items():
        a = per["all"]
        def cell(g, per=per):
            return f"{per[g]['hit@1']:.3f}" if g in per else "-"

        def strict(g, per=per):
            return f"{per[g]['hit@1_strict']:.3f}" if g in per else "-"

        lines.append(f"| {mode} | " + " | ".join(cell(v) for v in kinds)
                     + f" | {cell('names')} | {strict('names')} | {cell('descriptions')} | {strict('descriptions')} "
                       f"| {cell('held-out frames')} | **{a['hit@1']:.3f}** "
                       f"| {a['hit@5']:.3f} | "
                       f"{a['mrr']:.3f} |")
    return "\n".join(lines) + ("\n\n(hit@1 per kind of question; a partial title is also answered by a product whose "
                              "title starts with the same words, a description question by a product whose "
                              "description holds the same words; \"strict\" counts only the asked-about product "
                              "and its title's twins; hit@5 and MRR over all questions)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder from `productqa index build`")
    p.add_argument("--catalog", required=True, metavar="DIR", help="catalog the questions are generated from")
    p.add_argument("--n", type=int, default=500, help="products to ask about (default 500; 8 questions each)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--extra", metavar="FILE", action="append",
                   help='hand-written questions: JSON [{"title", "question"}] (repeatable)')
    p.add_argument("--products", choices=("held-out", "all"), default="held-out",
                   help="ask about the products the learned fusion never trains on (default; half the catalog, "
                        "by a hash of the uid) or about all")
    p.add_argument("--modes", default=",".join(MODES), metavar="LIST",
                   help=f"retrievers to compare (default: {','.join(MODES)})")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def main(args: argparse.Namespace) -> int:
    from indexing.catalog import read_catalog
    from indexing.errors import UserError
    from indexing.search import load_index

    if args.n < 1:
        raise UserError("--n must be >= 1")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise UserError(f"--modes: choose from {', '.join(MODES)}")
    docs = read_catalog(args.catalog)
    index = load_index(args.index)
    docs = docs[docs["uid"].isin(set(index.docs["uid"]))]
    if docs.empty:
        raise UserError(f"no product of {args.catalog} is in {args.index}: wrong catalog for this index?")
    asked = docs if args.products == "all" else held_out(docs)
    questions = all_questions(asked, args.n, args.seed)
    for extra in args.extra or ():
        questions += handwritten_questions(extra, docs)
    title_only = set(docs["uid"][docs["content"].str.len() == 0])
    for q in questions:
        q["title_only"] = q["uid"] in title_only
    if index.passages is None:
        modes = [m for m in modes if m != "descriptions"]
    report = evaluate_retrieval(index, questions, modes)
    print(f"{len(questions):,} questions about {min(args.n, len(asked)):,} {args.products} products; "
          f"index {args.index} (fusion: {index.fusion}; "
          f"{len(index):,} products, {len(title_only):,} of them title-only; "
          f"embeds {', '.join(index.meta.get('fields', ['title']))})\n")
    print(format_report(report))
    abstention = None
    if "hybrid" in modes:
        abstention = evaluate_abstention(index, report, invented_questions(docs, min(args.n, 300), args.seed))
        print("\nAbstention (hybrid search, the index's calibrated rule over the top 3 hits):\n")
        print(format_abstention(abstention))
    if args.json:
        Path(args.json).write_text(json.dumps({"index": str(args.index), "catalog": str(args.catalog),
                                               "n_questions": len(questions), "report": report,
                                               "abstention": abstention}, indent=2))
    return 0
