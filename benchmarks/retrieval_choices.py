"""How titles and descriptions should be searched and fused, measured rather than guessed.

    python benchmarks/retrieval_choices.py [--catalog DIR] [--n 500]   # default: the real records in ../shared

Builds the index once per passage size, then runs the retrieval evaluation (indexing/evaluate.py:
five ways of naming a product, three ways of describing one, and the hand-written paraphrases in
tests/indexing/data/description_questions.json) for each choice of retrievers and RRF weights:
titles only (the index before descriptions), descriptions only, rank fusion of all four retrievers
(dense and BM25, over titles and over passages) with several weightings, and routing by evidence
(titles or descriptions first, by which covers more of the question's words, or by the best cosine:
the default is coverage, cosine on a tie). A description question counts as found by a product whose
description holds the same quoted words ("hit@1 descriptions"), or only by the asked-about product
("strict"). Writes benchmarks/results/retrieval_choices.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name -> (fusion, weights of the four retrievers for "rrf")
FUSIONS = {
    "RRF of all four, 1:1:1:1": ("rrf", {"dense": 1, "bm25": 1, "dense_passage": 1, "bm25_passage": 1}),
    "RRF of all four, 2:1:1:1": ("rrf", {"dense": 2, "bm25": 1, "dense_passage": 1, "bm25_passage": 1}),
    "RRF of all four, 2:1:0.5:0.5": ("rrf", {"dense": 2, "bm25": 1, "dense_passage": 0.5, "bm25_passage": 0.5}),
    "route by best cosine: titles if theirs wins, else description BM25": ("route-cosine", None),
    "route by word coverage, then cosine (default)": ("route", None),
}
SIZES = (64, 128, 256)


def main() -> None:
    from indexing.build import BuildConfig, build_index
    from indexing.catalog import read_catalog
    from indexing.errors import UserError
    from indexing.evaluate import evaluate_retrieval, handwritten_questions
    from indexing.prepare import prepare
    from indexing.questions import make_description_questions, make_eval_questions
    from indexing.search import load_index
    from indexing.texts import DEFAULT_PASSAGE_TOKENS

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--catalog", help="prepared catalog (default: prepare ../shared/data/amazontitles)")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pqa-choices-"))
    catalog = args.catalog
    if catalog is None:
        shared = ROOT.parent / "shared" / "data" / "amazontitles"
        catalog = tmp / "catalog"
        prepare([shared / "trn_first500_title_content_alpaca.json", shared / "trn_raw_lines_from_readme.jsonl"],
                catalog, progress=False)
    docs = read_catalog(catalog)
    questions = make_eval_questions(docs, args.n) + make_description_questions(docs, args.n)
    hand = ROOT / "tests" / "indexing" / "data" / "description_questions.json"
    try:
        questions += handwritten_questions(hand, docs)
    except UserError:  # another catalog than the real records: no hand-written questions about it
        pass
    rows = []
    for size in SIZES:
        build_index(BuildConfig(catalog=str(catalog), out=str(tmp / f"p{size}"), passage_tokens=size, progress=False))
        idx = load_index(tmp / f"p{size}")
        if size == DEFAULT_PASSAGE_TOKENS:
            for mode in ("titles", "descriptions"):
                rows.append((f"{mode} only", size, evaluate_retrieval(idx, questions, modes=(mode,))[mode]))
            for name, (fusion, w) in FUSIONS.items():
                idx.fusion = fusion
                if w:
                    idx.rrf_weights = dict(w)
                rows.append((f"titles + descriptions: {name}", size, evaluate_retrieval(idx, questions)["hybrid"]))
        else:
            rows.append(("titles + descriptions: route (default)", size, evaluate_retrieval(idx, questions)["hybrid"]))
    kinds = ["names", "descriptions", "descriptions strict", "handwritten", "all"]
    for _, _, per in rows:
        per["descriptions strict"] = {"hit@1": per["descriptions"]["hit@1_strict"]}
    lines = [f"{len(questions)} questions about the products of `{catalog}` ({len(docs)} products): five ways of "
             "naming each of a sample, three ways of describing it, and the hand-written paraphrases. "
             "Command: `python benchmarks/retrieval_choices.py`", "",
             "| retrieval (RRF weights: dense title : BM25 title : dense passage : BM25 passage) | passage tokens | "
             + " | ".join(f"hit@1 {k}" for k in kinds) + " | MRR all |", "|---|---:|" + "---:|" * (len(kinds) + 1)]
    for name, size, per in rows:
        lines.append(f"| {name} | {size} | " + " | ".join(f"{per[k]['hit@1']:.3f}" if k in per else "-" for k in kinds)
                     + f" | {per['all']['mrr']:.3f} |")
    report = "\n".join(lines)
    print(report)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "retrieval_choices.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
