"""Answer evaluation: how much retrieval and fine-tuning each add, and whether answers are the right
product's text and nothing else, with numbers.

    productqa eval answers --index data/index --catalog data/catalog --adapter data/adapter [--n 40] [--out DIR]
        [--systems base,base+rag,fine-tuned,fine-tuned+rag,retrieval] [--answer-mode verbatim,generate]

`--detail FILE` instead runs the hand-written detail questions (see `evaluate_detail`): retrieval,
retrieval+sentence (quote mode, no model), auto, and with --adapter fine-tuned + RAG (generate).

On held-out products (the adapter's held-out products: it never trained on them) asks about each one
in five ways (the phrasings of `eval retrieval`: exact title, lower-case, partial title, a typo,
Portuguese) and compares systems:
  base                the base model alone (no catalog context)
  base + RAG          the base model with the retrieved descriptions in its prompt
  fine-tuned          the adapter without retrieval (the earlier student notebooks' approach)
  fine-tuned + RAG    the adapter with retrieval (ProductQA)
  retrieval           no model: the best retrieved product's description (the baseline for "verbatim")
Systems with retrieval run once per `--answer-mode` (rag.answer: verbatim = the model picks the entry
and the answer is its catalog text; generate = the model writes it; auto = by question).
Metrics against the true description, both cut to what the prompt shows (the first
rag.prompt.MAX_CONTEXT_CHARS characters, at a word boundary): ROUGE-L F (rouge-score), BLEU
(sacrebleu, corpus), token F1; right product (the answer is about the product asked, or an edition
with the same title); grounding = share of answer tokens found in the retrieved descriptions; answers
holding another entry's text (a word 8-gram of another retrieved description that the description the
answer is drawn from lacks: overruns and mixes, not wrong-product picks, which "right product" counts);
citation-only or empty answers; looping answers (a word 3-gram three times, where the reference has
none); fallbacks (generated answers replaced by the catalog text); abstention on questions about
invented products (correct "not in the catalog" rate) and on real ones (false-abstain rate); latency.
Writes DIR/report.md, DIR/report.json and DIR/report.png (default DIR: ADAPTER_DIR/eval).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from indexing.errors import UserError
from rag.answer import loops, tokens

SYSTEMS = ("base", "base + RAG", "fine-tuned", "fine-tuned + RAG", "retrieval")
SYSTEM_KEYS = {"base": "base", "base+rag": "base + RAG", "fine-tuned": "fine-tuned",
               "fine-tuned+rag": "fine-tuned + RAG", "retrieval": "retrieval"}
DEFAULT_SYSTEMS = "base,base+rag,fine-tuned,fine-tuned+rag"
_BARE_CITATION = re.compile(r"\A\s*\[\d{1,2}\][^\n]*\Z")


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


def _grams(text: str, n: int) -> set:
    t = tokens(text)
    return {tuple(t[i: i + n]) for i in range(len(t) - n + 1)}


def borrows(pred: str, ref: str, others: list[str], n: int = 8) -> bool:
    """Does the answer hold text of another entry: a word n-gram found in another description but not
    in the true one? (8 words: long enough that two descriptions do not share it by chance.)"""
    mine = _grams(pred, n) - _grams(ref, n)
    return any(mine & _grams(o, n) for o in others)


def mixes(a, ref: str) -> bool:
    """Does the answer hold text of a retrieved entry other than the one it answers from (the cited
    source; the true description when nothing is cited)? An overrun into the next entry does; a
    wrong product's whole description does not (that is "right product"'s miss)."""
    own = a.cited_source.content if a.cited_source else ref
    return borrows(a.text, own, [h.content for h in a.sources if h.content != own])


def bare(text: str, titles: list[str]) -> bool:
    """An answer that is empty, only a citation line ("[1] Title"), or only a title."""
    t = text.strip()
    return not t or bool(_BARE_CITATION.match(t)) or t.casefold() in {x.casefold() for x in titles}


def score(answers: list, refs: list[str], contexts: list[list[str]]) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    from rag.prompt import truncate

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    # both sides cut to what the prompt shows: a generated answer can only copy that much
    preds, refs = [truncate(a.text) for a in answers], [truncate(r) for r in refs]
    n = max(len(preds), 1)
    rouge = [sc.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    return {
        "rougeL": sum(rouge) / n,
        "rougeL_each": rouge,
        "bleu": sacrebleu.corpus_bleu(preds, [refs]).score,
        "token_f1": sum(token_f1(p, r) for p, r in zip(preds, refs)) / n,
        "grounding": sum(grounding(p, c) for p, c in zip(preds, contexts)) / n,
        "false_abstain": sum(a.abstained for a in answers) / n,
        "loops": sum(loops(p) and not loops(r) for p, r in zip(preds, refs)) / n,
        "fallbacks": sum(a.origin == "fallback" for a in answers) / n,
    }


def right_product(a, uid: str, title: str) -> bool:
    """Is the answer about the asked product (or an edition with exactly its title)?"""
    src = a.cited_source
    return bool(src) and not a.abstained and (src.uid == uid or src.title == title)


class TopRetrieved:
    """The "retrieval" system: no model, the best retrieved product's description (or abstain)."""

    def __init__(self, qa):
        self.qa = qa

    def ask_many(self, questions, **kw):
        from rag.answer import Answer
        from rag.prompt import NOT_IN_CATALOG

        t0 = time.perf_counter()
        out = []
        for q, hits in zip(questions, self.qa.retrieve(questions, 3)):
            if self.qa.should_abstain(hits):
                out.append(Answer(q, NOT_IN_CATALOG, hits, abstained=True, origin="refused"))
            else:
                out.append(Answer(q, hits[0].content, hits, cited=1, origin="catalog"))
        for a in out:
            a.latency_ms = (time.perf_counter() - t0) * 1000 / max(len(out), 1)
        return out


def evaluate_answers(qa, docs, n: int = 40, n_invented: int | None = None, batch_size: int = 8,
                     max_new_tokens: int = 256, progress: bool = True, systems=SYSTEMS[:4],
                     modes=("auto",), variants=None) -> dict:
    """Run the systems on held-out products and invented ones; return the report dict."""

    from tqdm import tqdm

    from indexing.calibrate import invented_titles
    from indexing.catalog import described
    from indexing.questions import VARIANTS, make_eval_questions, make_question

    variants = tuple(variants or VARIANTS)
    titles = {t.casefold() for t in docs["title"]}  # the invented products must not be any of them
    docs = described(docs)  # the metrics compare answers with descriptions
    data = (qa.adapter_meta or {}).get("data", {})
    val_uids = set(data.get("held_out_uids", []))  # products training never saw
    held = docs[docs["uid"].isin(val_uids)] if val_uids else docs
    held = held[held["uid"].isin(set(qa.index.docs["uid"]))].head(n).reset_index(drop=True)
    if held.empty:
        raise UserError("no held-out product of this adapter is in the index/catalog")
    rows = [r for r in make_eval_questions(held, n=len(held), seed=0) if r["variant"] in variants]
    questions = [r["question"] for r in rows]
    content = dict(zip(held["uid"], held["content"]))
    refs = [content[r["uid"]] for r in rows]
    fake = [make_question(t, t, "any", salt="eval")
            for t in invented_titles(n_invented or len(held), titles, seed=1)]
    # what retrieval returns for each question: the grounding reference for every system
    retrieved = qa.retrieve(questions, 3)
    contexts = [[h.content for h in hits] for hits in retrieved]

    report = {"n_products": len(held), "n_questions": len(questions), "n_invented": len(fake),
              "variants": list(variants), "systems": {}, "examples": []}
    outputs = {}
    runs = []
    for system in systems:
        tuned, rag = system.startswith("fine-tuned"), system.endswith("RAG")
        if tuned and qa.adapter is None:
            continue
        for mode in (modes if rag else [None]):
            runs.append((system + (f" ({mode})" if mode else ""), system, mode))
    for name, system, mode in runs:
        tuned, rag = system.startswith("fine-tuned"), system.endswith("RAG")
        asker = TopRetrieved(qa) if system == "retrieval" else qa
        kw = {} if system == "retrieval" else dict(max_new_tokens=max_new_tokens, use_retrieval=rag,
                                                    use_adapter=tuned, mode=mode or "generate")
        answers, abst, t0 = [], [], time.perf_counter()
        for s in tqdm(range(0, len(questions), batch_size), desc=name, disable=not progress):
            answers += asker.ask_many(questions[s: s + batch_size], **kw)
        secs = time.perf_counter() - t0
        for s in range(0, len(fake), batch_size):
            abst += asker.ask_many(fake[s: s + batch_size], **{**kw, "max_new_tokens": 64} if kw else {})
        m = score(answers, refs, contexts)
        each = m.pop("rougeL_each")
        m["by_variant"] = {v: sum(x for x, r in zip(each, rows) if r["variant"] == v)
                           / max(sum(r["variant"] == v for r in rows), 1) for v in variants}
        m["right_product"] = sum(right_product(a, r["uid"], r["title"]) for a, r in zip(answers, rows)) / len(rows)
        m["other_entry"] = sum(mixes(a, ref) for a, ref in zip(answers, refs)) / len(rows)
        m["bare"] = sum(bare(a.text, [h.title for h in a.sources]) for a in answers) / len(rows)
        m["correct_abstain"] = sum(a.abstained for a in abst) / max(len(abst), 1)
        m["latency_ms_per_question"] = secs * 1000 / len(questions)
        # per answer (its share of its batch; with --batch-size 1, one question at a time)
        m["latency_p50_ms"] = float(statistics.median(a.latency_ms for a in answers)) if answers else 0.0
        m["without_model"] = sum(a.picked_by == "retrieval" for a in answers) / len(rows)  # auto's sure answers
        report["systems"][name] = m
        report.setdefault("answers", {})[name] = [
            {"question": q, "uid": r["uid"], "answer": a.text,
             "cited_uid": a.cited_source.uid if a.cited_source else None,
             "origin": a.origin, "fallback_reason": a.fallback_reason} for q, r, a in zip(questions, rows, answers)]
        outputs[name] = answers
    for i in range(0, min(3 * len(variants), len(questions)), len(variants)):
        report["examples"].append({"question": questions[i], "reference": refs[i],
                                   **{s: outputs[s][i].text for s in outputs}})
    return report


def format_report(report: dict) -> str:
    penalty = report.get("repetition_penalty")
    lines = [f"{report['n_questions']} questions about {report.get('n_products', '?')} held-out products "
             f"({', '.join(report.get('variants', []))}), {report['n_invented']} about invented ones"
             + (f"; repetition penalty {penalty}" if penalty else "") + ".", "",
             "| system | ROUGE-L | right product | another entry's text | citation-only or empty | looping | "
             "fallbacks | BLEU | token F1 | grounding | correct 'not in catalog' (invented) | false abstain (real) | "
             "latency / question (ms) | p50 latency (ms) | answered without the model |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s, m in report["systems"].items():
        lines.append(f"| {s} | {m['rougeL']:.3f} | {m['right_product']:.1%} | {m['other_entry']:.1%} | "
                     f"{m['bare']:.1%} | {m['loops']:.1%} | {m['fallbacks']:.1%} | {m['bleu']:.1f} | "
                     f"{m['token_f1']:.3f} | {m['grounding']:.3f} | {m['correct_abstain']:.1%} | "
                     f"{m['false_abstain']:.1%} | {m['latency_ms_per_question']:,.0f} | "
                     f"{m.get('latency_p50_ms', 0):,.0f} | {m.get('without_model', 0):.1%} |")
    variants = report.get("variants") or []
    if variants:
        lines += ["", "ROUGE-L by phrasing:", "", "| system | " + " | ".join(variants) + " |",
                  "|---|" + "---:|" * len(variants)]
        for s, m in report["systems"].items():
            lines.append(f"| {s} | " + " | ".join(f"{m['by_variant'][v]:.3f}" for v in variants) + " |")
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
    from rag.answer import add_answer_arguments

    # an evaluation run during updates answers from each new version (--reload-seconds 0: one version);
    # --adapter: the fine-tuned adapter (needed for the fine-tuned systems)
    add_answer_arguments(p, mode=False, draft=False)
    p.add_argument("--catalog", required=True, metavar="DIR")
    p.add_argument("--detail", metavar="FILE",
                   help="instead: detail questions (tests/rag/data/detail_questions.json) answered by retrieval, "
                        "retrieval+sentence (quote mode, no model) and, with --adapter, fine-tuned + RAG (generate) "
                        "-> DIR/detail.md, DIR/detail.json")
    p.add_argument("--n", type=int, default=40, help="held-out products to ask about (default 40)")
    p.add_argument("--n-invented", type=int, help="questions about invented products (default: --n)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--systems", default=DEFAULT_SYSTEMS, metavar="LIST",
                   help="comma-separated subset of " + ",".join(SYSTEM_KEYS) + f" (default: {DEFAULT_SYSTEMS})")
    p.add_argument("--answer-mode", default="auto", metavar="LIST",
                   help="comma-separated answer modes to run the RAG systems in: auto, verbatim, generate "
                        "(default auto)")
    p.add_argument("--variants", metavar="LIST",
                   help="question phrasings (default: exact,lower,partial,typo,portuguese)")
    p.add_argument("--repetition-penalty", type=float, metavar="X",
                   help="generation's repetition penalty (default: rag.local.REPETITION_PENALTY)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: ADAPTER_DIR/eval)")
    p.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from indexing.catalog import read_catalog
    from indexing.questions import VARIANTS
    from rag.answer import MODES, Answerer, answer_config
    from rag.local import REPETITION_PENALTY

    if args.n < 1:
        raise UserError("--n must be >= 1")
    keys = [k.strip().lower() for k in args.systems.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEM_KEYS]
    if unknown or not keys:
        raise UserError(f"--systems: unknown {', '.join(unknown) or '(none given)'}; "
                        f"choose from {', '.join(SYSTEM_KEYS)}")
    modes = [m.strip().lower() for m in args.answer_mode.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise UserError(f"--answer-mode: choose from {', '.join(MODES)} (comma-separated)")
    variants = [v.strip() for v in (args.variants or ",".join(VARIANTS)).split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        raise UserError(f"--variants: choose from {', '.join(VARIANTS)} (comma-separated)")
    penalty = REPETITION_PENALTY if args.repetition_penalty is None else args.repetition_penalty
    if penalty <= 0:
        raise UserError("--repetition-penalty must be > 0 (1.0 = none)")
    if args.detail:
        return main_detail(args)
    if not args.adapter and any(k.startswith("fine-tuned") for k in keys):
        raise UserError("--adapter is needed for the fine-tuned systems (base, base+rag and retrieval run without one)")
    if not args.adapter and not args.out:
        raise UserError("--out DIR is needed without --adapter (the report goes to ADAPTER_DIR/eval by default)")
    needs_base = any(k.startswith("base") for k in keys)  # base systems answer with the adapter off
    qa = Answerer(answer_config(args, mode=modes[0], repetition_penalty=penalty, serve_base=needs_base),
                  progress=not args.quiet)
    report = evaluate_answers(qa, read_catalog(args.catalog), n=args.n, n_invented=args.n_invented,
                              batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=not args.quiet,
                              systems=[SYSTEM_KEYS[k] for k in keys], modes=modes, variants=variants)
    report["repetition_penalty"] = penalty
    out = Path(args.out) if args.out else Path(args.adapter) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    table = format_report(report)
    cmd = (f"productqa eval answers --index {args.index} --catalog {args.catalog}"
           + (f" --adapter {args.adapter}" if args.adapter else "") + f" --n {args.n}")
    if args.batch_size != 8:
        cmd += f" --batch-size {args.batch_size}"
    if args.systems != DEFAULT_SYSTEMS:
        cmd += f" --systems {args.systems}"
    if args.answer_mode != "auto":
        cmd += f" --answer-mode {args.answer_mode}"
    if args.llm_url:
        cmd += f" --llm-url {args.llm_url}"
    elif args.engine != "transformers":
        cmd += f" --engine {args.engine}"
    if args.variants:
        cmd += f" --variants {args.variants}"
    if args.repetition_penalty is not None:
        cmd += f" --repetition-penalty {args.repetition_penalty}"
    (out / "report.md").write_text(f"Command: `{cmd}`\n\n{table}\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot(report, out / "report.png")
    print(table)
    print(f"\nreport: {out / 'report.md'}, chart: {out / 'report.png'}")
    return 0


# --------------------------------------------------------------------------- detail questions

# retrieval: the best retrieved description, whole; retrieval+sentence: its sentence stating the detail
# (quote mode, no model); auto: what ProductQA answers by default (quote, or verbatim for "what is X");
# fine-tuned + RAG (read): the adapter quotes the sentence, checked (needs --adapter); (generate): it
# writes the answer
DETAIL_SYSTEMS = {"retrieval": None, "retrieval+sentence": "quote", "auto": "auto",
                  "fine-tuned + RAG (read)": "read", "fine-tuned + RAG (generate)": "generate"}  # system -> mode


def tuning_part(title: str) -> str:
    """"dev" or "held-out": the half of the detail fixture's products rag/detail.py's rules were written
    while looking at, and the half they never were (by a hash of the title, so it never changes)."""
    import zlib

    return "dev" if zlib.crc32(title.encode()) % 2 == 0 else "held-out"


def read_detail_questions(path) -> list[dict]:
    """The detail fixture: [{"title", "question", "lang", "kind", "answers": [gold substrings]}];
    `answers: []` marks a question the description does not answer."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"--detail {path}: {e}") from None
    if not isinstance(items, list):
        raise UserError(f"--detail {path}: expected a JSON list of questions")
    bad = [i for i, it in enumerate(items) if not isinstance(it, dict) or not isinstance(it.get("title"), str)
           or not isinstance(it.get("question"), str) or not it["question"].strip()
           or not isinstance(it.get("answers"), list) or not all(isinstance(g, str) and g for g in it["answers"])]
    if bad:
        raise UserError(f"--detail {path}: every item needs a title, a question and answers (a list of the gold "
                        f"strings, [] for none); items {bad[:5]} do not")
    bad = [i for i, it in enumerate(items) if it.get("kind") == "compare" and not (
        isinstance(it.get("titles"), list) and len(it["titles"]) == 2
        and isinstance(it.get("answers_by_title"), dict) and set(it["answers_by_title"]) == set(it["titles"]))]
    bad += [i for i, it in enumerate(items) if it.get("kind") == "yesno" and it.get("yesno") not in ("yes", "no", None)]
    if bad:
        raise UserError(f"--detail {path}: a compare item needs \"titles\" (two) and \"answers_by_title\" (gold "
                        f"strings for each), a yes/no item \"yesno\": \"yes\", \"no\" or null; items {bad[:5]} do not")
    return items


# what a fixture item measures (its "kind"): one detail of one product, another shopper question (who,
# where, when, how many, why), a yes/no question, two products compared, or (answers []) a question the
# description does not answer
OTHER_KINDS = ("who", "where", "when", "how_many", "why")
GROUPS = ("detail", "other", "yesno", "compare", "unanswerable")


def question_group(item: dict) -> str:
    kind = item.get("kind")
    if kind in ("yesno", "compare"):
        return kind
    if not item["answers"]:
        return "unanswerable"
    return "other" if kind in OTHER_KINDS else "detail"


_VERDICT = re.compile(r"^\W*(yes|no|sim|não|nao)\b", re.I)


def verdict(text: str) -> str | None:
    """The yes/no an answer leads with ("Yes, ...", "Não: ..."), or None."""
    m = _VERDICT.match(text or "")
    return None if m is None else ("yes" if m.group(1).lower() in ("yes", "sim") else "no")


def evidence_sentence(content: str, gold: list[str]) -> str:
    """The sentence of `content` holding the first gold string (token F1's reference)."""
    from rag.detail import sentences

    low = content.lower()
    for g in gold:
        at = low.find(g.lower())
        if at >= 0:
            for s, e in sentences(content):
                if s <= at < e:
                    return content[s:e]
            return g
    return ""


def evaluate_detail(qa, items: list[dict], docs, systems=DETAIL_SYSTEMS, progress: bool = True) -> dict:
    """Run each system on the detail questions, one question at a time (latency as a shopper sees it);
    metrics per system and language, on all questions and on the held-out half (`tuning_part`)."""
    from tqdm import tqdm

    content = dict(zip(docs["title"], docs["content"]))
    report = {"n_questions": len(items), "systems": {}, "answers": {}}
    for name in systems:
        if name.startswith("fine-tuned") and qa.adapter is None:
            continue
        mode = DETAIL_SYSTEMS[name]
        asker, kw = (TopRetrieved(qa), {}) if mode is None else (qa, {"mode": mode})
        rows = []
        for it in tqdm(items, desc=name, disable=not progress):
            t0 = time.perf_counter()
            a = asker.ask_many([it["question"]], **kw)[0]
            ms = (time.perf_counter() - t0) * 1000
            gold, text = it["answers"], a.text
            src = a.cited_source
            group = question_group(it)
            cited = {h.title for h in a.sources} if a.sources and not a.abstained else set()
            rows.append({
                "question": it["question"], "lang": it.get("lang", "en"), "part": tuning_part(it["title"]),
                "kind": it.get("kind"), "group": group,
                "verdict": verdict(text), "verdict_gold": it.get("yesno") if group == "yesno" else None,
                "compare_right": group == "compare" and all(
                    t in cited and any(g.lower() in text.lower() for g in it["answers_by_title"][t])
                    for t in it["titles"]),
                "answerable": bool(gold), "answer": text, "origin": a.origin, "quote_span": a.quote_span,
                "fallback_reason": a.fallback_reason,
                "right_product": bool(src) and not a.abstained and src.title == it["title"],
                "refused": a.abstained, "not_stated": a.origin == "not_stated",
                "contains": any(g.lower() in text.lower() for g in gold), "words": len(text.split()),
                "f1": token_f1(text, evidence_sentence(content.get(it["title"], ""), gold)) if gold else None,
                "latency_ms": ms})
        report["answers"][name] = rows
        report["kinds"] = report.get("kinds", {})
        report["kinds"][name] = {part: kind_metrics([r for r in rows if part == "all" or r["part"] == part])
                                 for part in ("dev", "held-out", "all")}
        report["systems"][name] = {g: _detail_metrics([r for r in rows if sel(r)])
                                   for g, sel in (("en", lambda r: r["lang"] == "en"),
                                                  ("pt", lambda r: r["lang"] == "pt"),
                                                  ("held-out en",
                                                   lambda r: r["lang"] == "en" and r["part"] == "held-out"),
                                                  ("held-out pt",
                                                   lambda r: r["lang"] == "pt" and r["part"] == "held-out"),
                                                  ("all", lambda r: True))}
    return report


def _detail_metrics(rows: list[dict]) -> dict:

    ans, un = [r for r in rows if r["answerable"]], [r for r in rows if not r["answerable"]]
    n = max(len(ans), 1)
    return {"answerable": len(ans), "unanswerable": len(un),
            "contains_gold": sum(r["contains"] for r in ans) / n,
            "concise_correct": sum(r["contains"] and r["words"] <= 50 for r in ans) / n,
            "median_words": statistics.median([r["words"] for r in ans]) if ans else 0,
            "token_f1": sum(r["f1"] for r in ans) / n,
            "right_product": sum(r["right_product"] for r in ans) / n,
            "not_stated": sum(r["not_stated"] for r in un) / max(len(un), 1),
            "false_not_stated": sum(r["not_stated"] for r in ans) / n,
            "refused": sum(r["refused"] for r in rows) / max(len(rows), 1),
            "fallbacks": sum(r["origin"] == "fallback" for r in rows) / max(len(rows), 1),
            "latency_p50_ms": statistics.median([r["latency_ms"] for r in rows]) if rows else 0.0}


def kind_metrics(rows: list[dict]) -> dict:
    """Per question group (GROUPS) and language: detail / other questions: concise-correct (gold in ≤ 50
    words), false "doesn't say"; yes/no: how often a yes or no is said (coverage), how often it is wrong (of
    all yes/no questions: a verdict against the gold, or one where the description settles nothing) and its
    precision; compare: both products cited with a fact of each; unanswerable: "doesn't say"."""
    out = {}
    for group in GROUPS:
        for lang in ("en", "pt", "all"):
            rs = [r for r in rows if r["group"] == group and (lang == "all" or r["lang"] == lang)]
            if not rs:
                continue
            n = len(rs)
            m = {"n": n}
            if group in ("detail", "other"):
                m["concise_correct"] = sum(r["contains"] and r["words"] <= 50 for r in rs) / n
                m["false_not_stated"] = sum(r["not_stated"] for r in rs) / n
            elif group == "yesno":
                said = [r for r in rs if r["verdict"] is not None]
                wrong = [r for r in said if r["verdict"] != r["verdict_gold"]]
                m.update(said=len(said) / n, wrong=len(wrong) / n,
                         precision=(len(said) - len(wrong)) / len(said) if said else None,
                         settled=sum(r["verdict_gold"] is not None for r in rs) / n)
            elif group == "compare":
                m["right"] = sum(r["compare_right"] for r in rs) / n
            else:
                m["not_stated"] = sum(r["not_stated"] for r in rs) / n
            m["latency_p50_ms"] = statistics.median(r["latency_ms"] for r in rs)
            out[f"{group} {lang}"] = m
    return out


def format_kind_report(report: dict) -> str:
    """The per-kind table: one row per system, part (dev / held-out) and group."""
    lines = ["| system | part | questions | n | result | p50 (ms) |", "|---|---|---|---:|---|---:|"]
    for system, parts in report.get("kinds", {}).items():
        for part, groups in parts.items():
            if part == "all":
                continue
            for key, m in groups.items():
                group = key.split()[0]
                if group in ("detail", "other"):
                    res = (f"concise-correct {m['concise_correct']:.2f}, "
                           f"false \"doesn't say\" {m['false_not_stated']:.0%}")
                elif group == "yesno":
                    prec = "-" if m["precision"] is None else f"{m['precision']:.2f}"
                    res = (f"says yes/no {m['said']:.0%}, wrong {m['wrong']:.0%} (precision {prec}); "
                           f"{m['settled']:.0%} settled by the description")
                elif group == "compare":
                    res = f"right (both products, a fact of each) {m['right']:.2f}"
                else:
                    res = f"\"doesn't say\" {m['not_stated']:.2f}"
                lines.append(f"| {system} | {part} | {key} | {m['n']} | {res} | {m['latency_p50_ms']:,.0f} |")
    return "\n".join(lines)


def answered_right(r: dict) -> bool:
    """One answer row judged as its group is: detail / other: the gold in ≤ 50 words; unanswerable: "doesn't
    say"; compare: a fact of each product; yes/no: the evidence holds the gold in ≤ 50 words and no verdict
    goes against the gold."""
    group = r["group"]
    if group in ("detail", "other"):
        return bool(r["contains"] and r["words"] <= 50)
    if group == "unanswerable":
        return bool(r["not_stated"])
    if group == "compare":
        return bool(r["compare_right"])
    return bool(r["contains"] and r["words"] <= 50 and r["verdict"] in (None, r["verdict_gold"]))


def format_by_kind(report: dict) -> str:
    """Right answers (`answered_right`) per part, group and kind (author, age, who, ...), a column a system:
    where the model answers better than no model, kind by kind."""
    systems = list(report["answers"])
    rows = sorted({(r["part"], r["group"], r["kind"]) for r in report["answers"][systems[0]]})
    lines = ["| part | group | kind | n | " + " | ".join(systems) + " |", "|---|---|---|---:|" + "---:|" * len(systems)]
    for part, group, kind in rows:
        cells = []
        for s in systems:
            rs = [r for r in report["answers"][s] if (r["part"], r["group"], r["kind"]) == (part, group, kind)]
            cells.append(f"{sum(answered_right(r) for r in rs)}/{len(rs)}")
        lines.append(f"| {part} | {group} | {kind} | {len(rs)} | " + " | ".join(cells) + " |")
    for part in ("dev", "held-out"):
        cells = []
        for s in systems:
            rs = [r for r in report["answers"][s] if r["part"] == part]
            cells.append(f"**{sum(answered_right(r) for r in rs)}/{len(rs)}**")
        lines.append(f"| {part} | **all** | | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_detail_report(report: dict) -> str:
    lines = [f"{report['n_questions']} hand-written detail questions (answerable / unanswerable per row); "
             "'held-out' = the half of the products rag/detail.py's rules were not written against.", "",
             "| system | questions | concise-correct (gold, ≤ 50 words) | contains gold | median words | token F1 "
             "(evidence sentence) | right product | 'not stated' (unanswerable) | false 'not stated' | "
             "refused 'not in catalog' | fallbacks | p50 latency (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s, groups in report["systems"].items():
        for g, m in groups.items():
            lines.append(f"| {s} | {g} ({m['answerable']}/{m['unanswerable']}) | {m['concise_correct']:.3f} | "
                         f"{m['contains_gold']:.3f} | {m['median_words']:.0f} | {m['token_f1']:.3f} | "
                         f"{m['right_product']:.1%} | {m['not_stated']:.1%} | {m['false_not_stated']:.1%} | "
                         f"{m['refused']:.1%} | {m['fallbacks']:.1%} | {m['latency_p50_ms']:,.0f} |")
    return "\n".join(lines)


def main_detail(args: argparse.Namespace) -> int:
    """`eval answers --detail FILE`: the detail questions' report."""
    from indexing.catalog import read_catalog
    from rag.answer import Answerer, answer_config

    items = read_detail_questions(args.detail)
    if not args.out and not args.adapter:
        raise UserError("--out DIR is needed without --adapter")
    docs = read_catalog(args.catalog)
    titles = set(docs["title"])
    unknown = sorted({t for it in items for t in [it["title"], *it.get("titles", [])] if t not in titles})
    if unknown:  # their answers can never count as the right product: say so, don't score them silently
        print(f"warning: {len(unknown)} title(s) of {args.detail} are not in {args.catalog} (titles are compared "
              f"as the catalog holds them, entities decoded): {', '.join(unknown[:3])}", file=sys.stderr)
    qa = Answerer(answer_config(args, mode="auto"), progress=not args.quiet)  # each system names its mode
    report = evaluate_detail(qa, items, docs, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.adapter) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    cmd = (f"productqa eval answers --index {args.index} --catalog {args.catalog} --detail {args.detail}"
           + (f" --adapter {args.adapter}" if args.adapter else "") + f" --out {out}")
    table = format_detail_report(report) + "\n\nPer kind (" + "; ".join(
        f"{g}: {n}" for g, n in sorted(Counter(question_group(it) for it in items).items())) + \
        "):\n\n" + format_kind_report(report) + "\n\nRight answers by kind (`rag.evaluate.answered_right`):\n\n" + \
        format_by_kind(report)
    (out / "detail.md").write_text(f"Command: `{cmd}`\n\n{table}\n")
    (out / "detail.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(table)
    print(f"\nreport: {out / 'detail.md'}")
    return 0
