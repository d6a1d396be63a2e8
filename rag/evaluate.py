"""Answer evaluation: how much retrieval and fine-tuning each add, with numbers.

    productqa eval answers --index data/index --catalog data/catalog --adapter data/adapter [--n 40] [--out DIR]

On held-out products (the adapter's validation products: it never trained on them) asks one
question each and compares four systems:
  base                the base model alone (no catalog context)
  base + RAG          the base model with the retrieved descriptions in its prompt
  fine-tuned          the adapter without retrieval (the earlier student notebooks' approach)
  fine-tuned + RAG    the adapter with retrieval (ProductQA)
Metrics against the true description: ROUGE-L F (rouge-score), BLEU (sacrebleu, corpus), token F1;
grounding = share of answer tokens found in the retrieved descriptions; abstention on questions about
invented products (correct "not in the catalog" rate) and on real ones (false-abstain rate); latency.
Writes DIR/report.md, DIR/report.json and DIR/report.png (default DIR: ADAPTER_DIR/eval).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from indexing.errors import UserError

SYSTEMS = ("base", "base + RAG", "fine-tuned", "fine-tuned + RAG")
SYSTEM_KEYS = {"base": "base", "base+rag": "base + RAG", "fine-tuned": "fine-tuned", "fine-tuned+rag": "fine-tuned + RAG"}
_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_f1(pred: str, ref: str) -> float:
    from collections import Counter

    p, r = tokens(pred), tokens(ref)
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or not common:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def grounding(pred: str, contexts: list[str]) -> float:
    """Share of the answer's word tokens that appear in the retrieved descriptions."""
    p = tokens(pred)
    if not p:
        return 0.0
    vocab = set(tokens(" ".join(contexts)))
    return sum(t in vocab for t in p) / len(p)


def loops(text: str, n: int = 3, times: int = 3) -> bool:
    """Does some word n-gram occur `times` or more (a generation stuck in a loop)?"""
    from collections import Counter

    t = tokens(text)
    grams = Counter(tuple(t[i: i + n]) for i in range(len(t) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def score(answers: list, refs: list[str], contexts: list[list[str]]) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    preds = [a.text for a in answers]
    n = max(len(preds), 1)
    return {
        "rougeL": sum(sc.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / n,
        "bleu": sacrebleu.corpus_bleu(preds, [refs]).score,
        "token_f1": sum(token_f1(p, r) for p, r in zip(preds, refs)) / n,
        "grounding": sum(grounding(p, c) for p, c in zip(preds, contexts)) / n,
        "false_abstain": sum(a.abstained for a in answers) / n,
        "loops": sum(loops(p) and not loops(r) for p, r in zip(preds, refs)) / n,
    }


def evaluate_answers(qa, docs, n: int = 40, n_invented: int | None = None, batch_size: int = 8,
                     max_new_tokens: int = 256, progress: bool = True, systems=SYSTEMS) -> dict:
    """Run the four systems on held-out products and invented ones; return the report dict."""

    from tqdm import tqdm

    from indexing.calibrate import invented_titles
    from indexing.questions import make_question

    data = (qa.adapter_meta or {}).get("data", {})
    val_uids = set(data.get("held_out_uids") or data.get("val_uids", []))
    held = docs[docs["uid"].isin(val_uids)] if val_uids else docs
    held = held[held["uid"].isin(set(qa.index.docs["uid"]))].head(n)
    if held.empty:
        raise UserError("no held-out product of this adapter is in the index/catalog")
    questions = [make_question(t, u, "any", salt="eval") for u, t in zip(held["uid"], held["title"])]
    refs = list(held["content"])
    fake = [make_question(t, t, "any", salt="eval")
            for t in invented_titles(n_invented or len(held), {t.casefold() for t in docs["title"]}, seed=1)]
    # what retrieval returns for each question: the grounding reference for every system
    contexts = [[h.content for h in hits] for hits in qa.retrieve(questions, 3)]

    report = {"n_questions": len(questions), "n_invented": len(fake), "systems": {}, "examples": []}
    outputs = {}
    for system in systems:
        tuned, rag = system.startswith("fine-tuned"), system.endswith("RAG")
        if tuned and qa.adapter is None:
            continue
        answers, abst, t0 = [], [], time.perf_counter()
        for s in tqdm(range(0, len(questions), batch_size), desc=system, disable=not progress):
            answers += qa.ask_many(questions[s: s + batch_size], max_new_tokens=max_new_tokens, use_retrieval=rag,
                                   use_adapter=tuned)
        secs = time.perf_counter() - t0
        for s in range(0, len(fake), batch_size):
            abst += qa.ask_many(fake[s: s + batch_size], max_new_tokens=64, use_retrieval=rag, use_adapter=tuned)
        m = score(answers, refs, contexts)
        # answers whose citation line names the product asked about (RAG systems cite; others cannot)
        m["cited_right"] = sum(bool(a.cited_source and a.cited_source.uid == u)
                               for a, u in zip(answers, held["uid"])) / len(answers)
        m["correct_abstain"] = sum(a.abstained for a in abst) / max(len(abst), 1)
        m["latency_ms_per_question"] = secs * 1000 / len(questions)
        report["systems"][system] = m
        outputs[system] = answers
    for i in range(min(3, len(questions))):
        report["examples"].append({"question": questions[i], "reference": refs[i],
                                   **{s: outputs[s][i].text for s in outputs}})
    return report


def format_report(report: dict) -> str:
    penalty = report.get("repetition_penalty")
    lines = [f"{report['n_questions']} questions about held-out products, {report['n_invented']} about invented ones"
             + (f"; repetition penalty {penalty}" if penalty else "") + ".", "",
             "| system | ROUGE-L | BLEU | token F1 | grounding | correct 'not in catalog' (invented) | "
             "false abstain (real) | cites the right product | looping answers | latency / question (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s, m in report["systems"].items():
        lines.append(f"| {s} | {m['rougeL']:.3f} | {m['bleu']:.1f} | {m['token_f1']:.3f} | {m['grounding']:.3f} | "
                     f"{m['correct_abstain']:.1%} | {m['false_abstain']:.1%} | {m.get('cited_right', 0):.1%} | "
                     f"{m.get('loops', 0):.1%} | "
                     f"{m['latency_ms_per_question']:,.0f} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = list(report["systems"])
    metrics = [("rougeL", "ROUGE-L"), ("token_f1", "token F1"), ("grounding", "grounding"),
               ("correct_abstain", "correct abstain")]
    x = np.arange(len(systems))
    fig, ax = plt.subplots(figsize=(8, 3.8), dpi=100)
    for i, (key, label) in enumerate(metrics):
        ax.bar(x + (i - 1.5) * 0.2, [report["systems"][s][key] for s in systems], 0.2, label=label)
    ax.set_xticks(x, systems)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    ax.set_title("ProductQA answer quality on held-out products")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, metavar="INDEX_DIR")
    p.add_argument("--catalog", required=True, metavar="DIR")
    p.add_argument("--adapter", required=True, metavar="ADAPTER_DIR")
    p.add_argument("--n", type=int, default=40, help="held-out products to ask about (default 40)")
    p.add_argument("--n-invented", type=int, help="questions about invented products (default: --n)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--systems", default=",".join(SYSTEM_KEYS), metavar="LIST",
                   help="comma-separated subset of " + ",".join(SYSTEM_KEYS) + " (default: all four)")
    p.add_argument("--repetition-penalty", type=float, metavar="X",
                   help="generation's repetition penalty (default: rag.answer.REPETITION_PENALTY)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: ADAPTER_DIR/eval)")
    p.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from indexing.catalog import read_catalog
    from rag.answer import REPETITION_PENALTY, Answerer

    if args.n < 1:
        raise UserError("--n must be >= 1")
    keys = [k.strip().lower() for k in args.systems.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEM_KEYS]
    if unknown or not keys:
        raise UserError(f"--systems: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SYSTEM_KEYS)}")
    penalty = REPETITION_PENALTY if args.repetition_penalty is None else args.repetition_penalty
    if penalty <= 0:
        raise UserError("--repetition-penalty must be > 0 (1.0 = none)")
    qa = Answerer(args.index, adapter=args.adapter, progress=not args.quiet, repetition_penalty=penalty)
    report = evaluate_answers(qa, read_catalog(args.catalog), n=args.n, n_invented=args.n_invented,
                              batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=not args.quiet,
                              systems=[SYSTEM_KEYS[k] for k in keys])
    report["repetition_penalty"] = penalty
    out = Path(args.out) if args.out else Path(args.adapter) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    table = format_report(report)
    cmd = f"productqa eval answers --index {args.index} --catalog {args.catalog} --adapter {args.adapter} --n {args.n}"
    if args.systems != ",".join(SYSTEM_KEYS):
        cmd += f" --systems {args.systems}"
    if args.repetition_penalty is not None:
        cmd += f" --repetition-penalty {args.repetition_penalty}"
    (out / "report.md").write_text(f"Command: `{cmd}`\n\n{table}\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot(report, out / "report.png")
    print(table)
    print(f"\nreport: {out / 'report.md'}, chart: {out / 'report.png'}")
    return 0
