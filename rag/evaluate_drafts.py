"""Draft evaluation: does fine-tuning make the model write better descriptions from a title alone?

    productqa eval describe --index data/index --catalog data/catalog --adapter data/adapter [--n 60] [--out DIR]

The seeds' before/after measure. Products with a description that the adapter never trained on (its
held-out products: training_meta.json's held_out_uids) have their description hidden: the model drafts
one from the title alone (rag.prompt.build_draft_prompt, asked "Describe the product X." and "Descreva o
produto X.", the same title in both languages), once with the base model ("base") and once with the
adapter ("fine-tuned"), and each draft is scored against the real description as a draft is trained to
write it (its first sentences, rag.prompt.build_draft_response):
  ROUGE-L F     rouge-score, per draft, averaged
  BLEU          sacrebleu, corpus
  words         mean length of the drafts
  invented      the share of drafts stating a number, a year or a proper name that is not in the title
                (`invented_facts`: what a title alone cannot back; a draft may be right by luck, but nothing
                the system holds says so)
  unusable      drafts with no words left once cut where they end or start to loop (rag.answer.clean_draft)
per system and per language of the question. Writes DIR/describe.md (the table, with the command and the
adapter's training steps) and DIR/describe.json (with every draft). Default DIR: ADAPTER_DIR/eval.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from indexing.errors import UserError

LANGS = ("en", "pt")
SYSTEMS = ("base", "fine-tuned")
# a number (1, 1,000, 3.5, 1998) or a capitalised word: candidates for facts a title cannot back
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*[a-z][\w'’-]*\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[\"“(]\s*|\n\s*)$")
# capitalised words that are not names (the first person, and words often capitalised mid-sentence)
_NOT_NAMES = frozenset({"i", "i'm", "i've", "english", "portuguese", "dvd", "cd", "usb", "tv", "ok"})


def invented_facts(draft: str, title: str) -> list[str]:
    """Numbers (years too) and proper names in `draft` that `title` does not hold: a number not among the
    title's, a capitalised word that does not open a sentence and is not one of the title's words."""
    title_numbers = {n.replace(",", "") for n in _NUMBER.findall(title)}
    title_words = {w.casefold() for w in re.findall(r"[\w'’-]+", title)}
    out = [n for n in _NUMBER.findall(draft) if n.replace(",", "") not in title_numbers]
    for m in _CAPITALISED.finditer(draft):
        word = m.group(0)
        if word.casefold() in title_words or word.casefold() in _NOT_NAMES:
            continue
        if _SENTENCE_START.search(draft[: m.start()]):  # the first word of a sentence is capitalised anyway
            continue
        out.append(word)
    return out


def score(drafts: list[str], refs: list[str], titles: list[str]) -> dict:
    """ROUGE-L F, BLEU, mean words, invented-fact and unusable rates of `drafts` against `refs`."""
    import sacrebleu
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    n = max(len(drafts), 1)
    rouge = [sc.score(r, d)["rougeL"].fmeasure if d else 0.0 for d, r in zip(drafts, refs)]
    invented = [bool(invented_facts(d, t)) for d, t in zip(drafts, titles)]
    return {"n": len(drafts), "rougeL": sum(rouge) / n, "bleu": sacrebleu.corpus_bleu(drafts, [refs]).score,
            "words": sum(len(d.split()) for d in drafts) / n, "invented": sum(invented) / n,
            "unusable": sum(not d for d in drafts) / n}


def evaluate_drafts(qa, products, langs=LANGS, systems=SYSTEMS, batch_size: int = 8, max_new_tokens: int = 160,
                    progress: bool = True) -> dict:
    """Draft `products` (a DataFrame: uid, title, content) in each language with each system; the report."""
    from tqdm import tqdm

    from rag.describe import draft_question
    from rag.prompt import build_draft_response

    refs = [build_draft_response(c) for c in products["content"]]
    titles = list(products["title"])
    report = {"n_products": len(products), "langs": list(langs), "systems": {}, "drafts": []}
    for system in systems:
        use_adapter = system == "fine-tuned"
        if use_adapter and qa.adapter is None:
            raise UserError("the fine-tuned system needs --adapter")
        for lang in langs:
            questions = [draft_question(t, lang) for t in titles]
            drafts, t0 = [], time.perf_counter()
            for s in tqdm(range(0, len(titles), batch_size), desc=f"{system} ({lang})", disable=not progress):
                drafts += [d for d, _ in qa.draft_many(titles[s: s + batch_size], questions[s: s + batch_size],
                                                       max_new_tokens, 0.0, use_adapter)]
            m = score(drafts, refs, titles)
            m["seconds_per_draft"] = (time.perf_counter() - t0) / max(len(titles), 1)
            report["systems"].setdefault(system, {})[lang] = m
            report["drafts"] += [{"system": system, "lang": lang, "uid": u, "title": t, "draft": d,
                                  "invented": invented_facts(d, t), "reference": r}
                                 for u, t, d, r in zip(products["uid"], titles, drafts, refs)]
        every = [d for d in report["drafts"] if d["system"] == system]
        report["systems"][system]["all"] = score([d["draft"] for d in every], [d["reference"] for d in every],
                                                 [d["title"] for d in every])
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['n_products']} held-out products (never trained on), each drafted from its title in "
             f"{' and '.join(report['langs'])}; scored against the description's first sentences (what a draft "
             "is trained to write).", "",
             "| system | question | drafts | ROUGE-L | BLEU | words | invented facts | unusable |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for system, per in report["systems"].items():
        for lang, m in per.items():
            lines.append(f"| {system} | {lang} | {m['n']} | {m['rougeL']:.3f} | {m['bleu']:.1f} | {m['words']:.0f} | "
                         f"{m['invented']:.1%} | {m['unusable']:.1%} |")
    return "\n".join(lines) + ("\n\n(invented facts: drafts stating a number, a year or a proper name the title does "
                              "not hold)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rag.answer import add_answer_arguments

    add_answer_arguments(p, mode=False, reload=False, draft=False)
    p.add_argument("--catalog", required=True, metavar="DIR", help="the catalog the descriptions come from")
    p.add_argument("--n", type=int, default=60, help="held-out products to draft (default 60)")
    p.add_argument("--langs", default=",".join(LANGS), metavar="LIST", help="question languages (default en,pt)")
    p.add_argument("--systems", default=",".join(SYSTEMS), metavar="LIST",
                   help="base (the adapter off) and/or fine-tuned (default both)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N")
    p.add_argument("--max-new-tokens", type=int, default=160, metavar="N")
    p.add_argument("--out", metavar="DIR", help="report folder (default: ADAPTER_DIR/eval)")
    p.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from indexing.catalog import described, read_catalog
    from rag.answer import Answerer, answer_config

    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    systems = [x.strip() for x in args.systems.split(",") if x.strip()]
    if not langs or any(x not in LANGS for x in langs):
        raise UserError(f"--langs: choose from {', '.join(LANGS)}")
    if not systems or any(x not in SYSTEMS for x in systems):
        raise UserError(f"--systems: choose from {', '.join(SYSTEMS)}")
    if args.n < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
        raise UserError("--n, --batch-size and --max-new-tokens must be >= 1")
    if not args.adapter:
        raise UserError("--adapter is needed: its held-out products are the ones never trained on")
    qa = Answerer(answer_config(args, serve_base="base" in systems), progress=not args.quiet)
    try:
        held = set((qa.adapter_meta or {}).get("data", {}).get("held_out_uids", []))
        docs = described(read_catalog(args.catalog))
        products = docs[docs["uid"].isin(held) & docs["uid"].isin(set(qa.serving.docs["uid"]))].head(args.n)
        if products.empty:
            raise UserError("no held-out product of this adapter with a description is in the catalog and index")
        report = evaluate_drafts(qa, products.reset_index(drop=True), langs, systems, args.batch_size,
                                 args.max_new_tokens, progress=not args.quiet)
    finally:
        qa.close()
    meta = qa.adapter_meta or {}
    report["adapter"] = {"path": str(args.adapter), "steps": meta.get("global_step"),
                         "best_checkpoint": meta.get("best_checkpoint"),
                         "train_kinds": meta.get("data", {}).get("train_kinds")}
    report["command"] = "productqa eval describe " + " ".join(getattr(args, "_argv", [])[2:])
    out = Path(args.out) if args.out else Path(args.adapter) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    table = format_report(report)
    steps = report["adapter"]["steps"]
    (out / "describe.md").write_text(f"Command: `{report['command']}`. Adapter {args.adapter}"
                                     + (f", {steps} training steps" if steps else "") + ".\n\n" + table + "\n")
    (out / "describe.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(table)
    print(f"\nreport: {out / 'describe.md'}")
    return 0
