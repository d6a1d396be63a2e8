"""Which fusion of the five retrievers ships, measured on questions none of them was chosen on.

    python benchmarks/fusion.py [--slice 10000] [--searches 300]

1. Real records (../shared, prepared as docs/data.md says), one index with the learned fusion. Every fusion is
   scored on the same questions: the products `questions.held_out_product` keeps out of training, asked in
   every generated kind (trained phrasings and HELD_OUT frames) plus the hand-written questions
   (tests/indexing/data/description_questions.json chose the ranker's settings; heldout_questions.json was
   written after and never used for a choice). Fusions: the rule of 0.2 (route by word coverage), rank fusion
   of all retrievers, a logistic regression over the same features and training questions as the shipped
   ranker (the simpler learned model), and the shipped LightGBM LambdaMART ranker.
2. Speed: a 10,000-product slice of the synthetic full-size catalog (benchmarks/prepare.py), built with the
   learned fusion; one-question-at-a-time search p50/p95 with the rule and with the ranker, alternating in
   the same process; the build time the ranker adds.

Writes benchmarks/results/fusion.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT / "tests" / "indexing" / "data"


class Linear:
    """A logistic regression over the ranker's features (standardised), scoring like `Ranker.score`."""

    def __init__(self, data):
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        fit = ~data["val"][np.repeat(np.arange(len(data["group"])), data["group"])]
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        self.model.fit(data["X"][fit], data["y"][fit])

    def score(self, X):
        return self.model.decision_function(X)


def quality(idx, questions) -> list[tuple[str, dict]]:
    from retrieval_choices import Ranked, rrf_all

    from indexing.evaluate import evaluate_retrieval
    from indexing.rank import RankerConfig, hit_at_1, training_data

    data = training_data(idx, RankerConfig())
    shipped = idx.ranker
    rows = []
    # fusion: the index's own ("route": the rule, "learned": `ranker`), or a ranking of the candidates that
    # only the benchmarks try (benchmarks/retrieval_choices.py), searched through `Ranked`
    for name, fusion, ranker in (("rule: route by word coverage (0.2)", "route", None),
                                 ("RRF of all retrievers", rrf_all(), None),
                                 ("learned: logistic regression", "learned", Linear(data)),
                                 ("learned: LightGBM LambdaMART (shipped)", "learned", shipped)):
        own = isinstance(fusion, str)
        idx.fusion, idx.ranker = fusion if own else "route", ranker or shipped
        per = evaluate_retrieval(idx if own else Ranked(idx, fusion), questions)["hybrid"]
        per["validation"] = hit_at_1(idx.ranker.score, data, data["val"]) if ranker else None
        rows.append((name, per))
    idx.fusion, idx.ranker = "learned", shipped
    return rows


def latency(idx, questions: list[str]) -> dict:
    import numpy as np

    t = {"route": [], "learned": []}
    idx.retrieve(questions[0])
    for q in questions:
        for fusion in t:
            idx.fusion = fusion
            t0 = time.perf_counter()
            idx.retrieve(q, k=5)
            t[fusion].append((time.perf_counter() - t0) * 1000)
    idx.fusion = "learned"
    return {f: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for f, v in t.items()}


def main() -> None:
    import pyarrow.parquet as pq
    from prepare import generate, write_result

    from indexing.build import BuildConfig, build_index
    from indexing.catalog import read_catalog
    from indexing.evaluate import all_questions, handwritten_questions, held_out
    from indexing.prepare import prepare
    from indexing.search import load_index
    from tests.conftest import SHARED

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice", type=int, default=10_000, help="products of the synthetic catalog for the speed part")
    ap.add_argument("--searches", type=int, default=300, help="questions timed per fusion")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pqa-fusion-"))
    t_start = time.time()
    load0 = os.getloadavg()[0]

    prepare([SHARED / "trn_first500_title_content_alpaca.json", SHARED / "trn_raw_lines_from_readme.jsonl"],
            tmp / "real", progress=False)
    meta = build_index(BuildConfig(catalog=str(tmp / "real"), out=str(tmp / "real_idx"), progress=False))
    rule_meta = build_index(BuildConfig(catalog=str(tmp / "real"), out=str(tmp / "real_rule"), progress=False,
                                        ranker=False))
    idx = load_index(tmp / "real_idx")
    docs = read_catalog(tmp / "real")
    questions = all_questions(held_out(docs), 500)
    for f in ("description_questions.json", "heldout_questions.json"):
        questions += handwritten_questions(DATA / f, docs)
    rows = quality(idx, questions)

    generate(tmp / "synth.jsonl", int(args.slice * 1.7))  # ~60% of raw lines survive prepare
    prepare([tmp / "synth.jsonl"], tmp / "synth", progress=False)
    table = pq.read_table(tmp / "synth" / "catalog.parquet").slice(0, args.slice)
    (tmp / "slice").mkdir()
    pq.write_table(table, tmp / "slice" / "catalog.parquet")
    smeta = build_index(BuildConfig(catalog=str(tmp / "slice"), out=str(tmp / "slice_idx"), progress=False))
    sidx = load_index(tmp / "slice_idx")
    sq = [q["question"] for q in all_questions(sidx.docs, args.searches // 2 + 1, seed=7)][: args.searches]
    lat = latency(sidx, sq)

    kinds = ["exact", "partial", "typo", "chat", "chat_pt", "chat_typo", "chat_partial", "short", "hand_name",
             "quote", "desc_chat", "hand_desc", "handwritten"]
    n = {k: next(per[k]["n"] for _, per in rows if k in per) for k in kinds}
    lines = [f"Command: `python benchmarks/fusion.py --slice {args.slice} --searches {args.searches}`. "
             f"{len(questions):,} questions about the {len(held_out(docs))} real products the ranker never trained "
             f"on (../shared, 498 products); hit@1 per kind (n in the header); \"held-out\" = every kind in a "
             "frame the ranker never saw. validation = hit@1 on the ranker's own validation products (trained "
             "phrasings), where the learned models were compared before any held-out figure was read.", "",
             "| fusion | " + " | ".join(f"{k} ({n[k]})" for k in kinds)
             + " | by name | by description (strict) | held-out | all | validation |",
             "|---|" + "---:|" * (len(kinds) + 5)]
    for name, per in rows:
        def cell(k, per=per):
            return f"{per[k]['hit@1']:.3f}" if k in per else "-"

        lines.append(f"| {name} | " + " | ".join(cell(k) for k in kinds)
                     + f" | {cell('names')} | {cell('descriptions')} ({per['descriptions']['hit@1_strict']:.3f}) "
                       f"| {cell('held-out frames')} | {cell('all')} | "
                       + ("-" if per["validation"] is None else f"{per['validation']:.3f}") + " |")
    b, r = meta["build_seconds"], rule_meta["build_seconds"]
    lines += ["", f"Build time on the real records: {b['total']:.1f} s with the learned fusion (training it: "
              f"{b['ranker']:.1f} s, {meta['ranker']['training']['questions']:,} questions) against "
              f"{r['total']:.1f} s with the rule (same run).", "",
              f"Search on {len(sidx):,} synthetic products ({smeta['passages']['count']:,} passages), one question "
              f"at a time, {len(sq)} questions, the two fusions alternating in one process:", "",
              "| fusion | p50 (ms) | p95 (ms) | p50 ratio |", "|---|---:|---:|---:|"]
    base = lat["route"][0]
    for f, label in (("route", "rule (0.2)"), ("learned", "learned (LightGBM)")):
        lines.append(f"| {label} | {lat[f][0]:.1f} | {lat[f][1]:.1f} | {lat[f][0] / base:.2f}x |")
    sb = smeta["build_seconds"]
    lines += ["", f"Slice build: {sb['total']:.0f} s, of which training the ranker {sb['ranker']:.0f} s "
              f"({smeta['ranker']['training']['questions']:,} questions about "
              f"{smeta['ranker']['training']['products']:,} products; the ranker trains on at most 2,000 "
              f"products whatever the catalog's size). {os.cpu_count()} CPUs, no GPU; load average "
              f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; {(time.time() - t_start) / 60:.1f} min."]
    write_result("fusion.md", "\n".join(lines))


if __name__ == "__main__":
    main()
