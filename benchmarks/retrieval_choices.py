"""What to embed and what BM25 should index, measured rather than guessed.

    python benchmarks/retrieval_choices.py [--catalog DIR]   # default: the real records in ../shared

Builds the index once per dense choice (title / title + description), swaps in BM25 over each
lexical choice and each fusion weighting, and runs the retrieval evaluation (5 phrasings per
product: exact, lower-case, partial, typo, Portuguese). Writes benchmarks/results/retrieval_choices.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from indexing.build import LEXICAL_FIELDS, BuildConfig, build_index, lexical_texts
    from indexing.catalog import read_catalog
    from indexing.evaluate import VARIANTS, evaluate_retrieval, make_eval_questions
    from indexing.lexical import build_bm25
    from indexing.prepare import prepare
    from indexing.search import load_index

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
    questions = make_eval_questions(docs, args.n)
    rows = []
    for embed in ("title", "title+content"):
        build_index(BuildConfig(catalog=str(catalog), out=str(tmp / embed), embed=embed, progress=False))
        idx = load_index(tmp / embed)
        dense = evaluate_retrieval(idx, questions, modes=("dense",))["dense"]
        rows.append((f"dense: {embed}", "-", "-", dense))
        for lexical in LEXICAL_FIELDS:
            idx.bm25 = build_bm25(lexical_texts(idx.docs["title"], idx.docs["content"], lexical))
            if embed == "title":
                rows.append(("BM25 only", lexical, "-", evaluate_retrieval(idx, questions, modes=("bm25",))["bm25"]))
            for w in (1.0, 2.0):
                idx.weights = {"dense": w, "bm25": 1.0}
                rows.append((f"hybrid: {embed}", lexical, f"{w:g}:1",
                             evaluate_retrieval(idx, questions, modes=("hybrid",))["hybrid"]))
    lines = [f"{len(questions)} questions about {len(questions) // 5} products of `{catalog}`. "
             "Command: `python benchmarks/retrieval_choices.py`", "",
             "| retriever: dense embeds | BM25 indexes | RRF weight dense:bm25 | " + " | ".join(VARIANTS)
             + " | hit@1 | hit@5 | MRR |", "|---|---|---|" + "---:|" * (len(VARIANTS) + 3)]
    for name, lex, w, per in rows:
        lines.append(f"| {name} | {lex} | {w} | " + " | ".join(f"{per[v]['hit@1']:.3f}" for v in VARIANTS)
                     + f" | {per['all']['hit@1']:.3f} | {per['all']['hit@5']:.3f} | {per['all']['mrr']:.3f} |")
    report = "\n".join(lines)
    print(report)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "retrieval_choices.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
