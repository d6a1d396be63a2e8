"""How titles and descriptions should be searched and fused, measured rather than guessed.

    python benchmarks/retrieval_choices.py [--catalog DIR] [--n 500]   # default: the real records in ../shared

Builds the index once per passage size (without the learned fusion: these are the rule's choices), then
runs the retrieval evaluation (indexing/evaluate.py: five ways of naming a product, three ways of describing
one, and the hand-written paraphrases in tests/indexing/data/description_questions.json) for each choice of
retrievers and RRF weights:
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

# The fusions the rule was measured against. They live here, not in indexing/search.py: each ranks the
# candidates `Index.candidates` returns for one question (indexing.search.Candidates), and `Ranked` searches
# an index with one of them. Where titles or passages were not both searched they leave it to the rule.
RRF_WEIGHTS = {"dense": 2.0, "bm25": 1.0, "dense_passage": 1.0, "bm25_passage": 1.0}  # fusion.py's "RRF of all"


def _both_sides(c) -> tuple | None:
    """The retrievers searched (fuzzy left out) when titles and passages were both searched by vectors, else None."""
    use = tuple(r for r in c.use if r != "fuzzy") or c.use
    return use if "dense" in use and "dense_passage" in use else None


def rrf_all(weights: dict | None = None):
    """Reciprocal rank fusion of every retriever (`weights` per retriever, default RRF_WEIGHTS), ties to the
    higher best cosine: Candidates -> product rows best first."""
    from indexing.search import route, rrf

    weights = dict(RRF_WEIGHTS if weights is None else weights)

    def rank(c) -> list[int]:
        use = _both_sides(c)
        if use is None:
            return route(c)[0]
        cosine = {r: c.cosine(r) for r in c.rows if c.cosine(r) is not None}
        return [r for r, _ in rrf({n: c.ranks[n] for n in use}, tiebreak=cosine, weights=weights)]

    return rank


def route_cosine(c) -> list[int]:
    """The rule before word coverage: titles first when the best title cosine is at least the best passage
    cosine, else the passages (their BM25 first), the other side filling up."""
    from indexing.search import description_ranking, route, title_ranking

    if _both_sides(c) is None:
        return route(c)[0]
    best = lambda d: max(d.values(), default=-1.0)  # noqa: E731
    first, then = title_ranking(c), description_ranking(c)
    if best(c.scores.get("dense_passage", {})) > best(c.scores.get("dense", {})):
        first, then = then, first
    seen = set(first)
    return first + [r for r in then if r not in seen]


class Ranked:
    """`index` searched with another fusion: `retrieve_many` (what indexing.evaluate calls) ranks each
    question's candidates with `rank` (Candidates -> product rows best first). Hits carry uid, title,
    content and a rank score, all the evaluation reads."""

    def __init__(self, index, rank):
        self.index, self.rank = index, rank

    def retrieve_many(self, questions: list[str], k: int = 5, mode: str = "hybrid") -> list:
        from indexing.search import RRF_K, Hit

        if not questions:
            return []
        out = []
        for c in self.index.candidates(questions, mode, k, for_ranker=False):
            d = self.index.docs.iloc[self.rank(c)[:k]]
            out.append([Hit(uid=u, title=t, content=x, score=1.0 / (RRF_K + pos + 1))
                        for pos, (u, t, x) in enumerate(zip(d["uid"], d["title"], d["content"]))])
        return out


# name -> how the candidates are ranked (None: the shipped rule, indexing.search.route, through the index itself)
FUSIONS = {
    "RRF of all four, 1:1:1:1": rrf_all({"dense": 1, "bm25": 1, "dense_passage": 1, "bm25_passage": 1}),
    "RRF of all four, 2:1:1:1": rrf_all({"dense": 2, "bm25": 1, "dense_passage": 1, "bm25_passage": 1}),
    "RRF of all four, 2:1:0.5:0.5": rrf_all({"dense": 2, "bm25": 1, "dense_passage": 0.5, "bm25_passage": 0.5}),
    "route by best cosine: titles if theirs wins, else description BM25": route_cosine,
    "route by word coverage, then cosine (default)": None,
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
        # the rule's choices: built without the learned fusion, so the index itself fuses by the rule
        build_index(BuildConfig(catalog=str(catalog), out=str(tmp / f"p{size}"), passage_tokens=size, progress=False,
                                ranker=False))
        idx = load_index(tmp / f"p{size}")
        if size == DEFAULT_PASSAGE_TOKENS:
            for mode in ("titles", "descriptions"):
                rows.append((f"{mode} only", size, evaluate_retrieval(idx, questions, modes=(mode,))[mode]))
            for name, rank in FUSIONS.items():
                searched = idx if rank is None else Ranked(idx, rank)
                rows.append((f"titles + descriptions: {name}", size,
                             evaluate_retrieval(searched, questions)["hybrid"]))
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
