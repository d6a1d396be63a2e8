"""Descriptions are searchable: passages, fusion with titles, which passage matched, old indexes,
and the retrieval and abstention targets on the real records."""

import json
import shutil
from pathlib import Path

import pytest

from indexing.search import load_index
from indexing.store import BM25_PASSAGES, PASSAGE_VECTORS, PASSAGES

pytestmark = pytest.mark.slow
HANDWRITTEN = Path(__file__).parent / "data" / "description_questions.json"


def test_passages_cover_each_description_in_order(demo_index):
    idx = load_index(demo_index)
    meta = idx.meta
    assert meta["fields"] == ["title", "description"] and meta["passages"]["count"] == len(idx.passages)
    assert meta["passages"]["max_tokens"] == 128
    for pid, rows in idx.passages.groupby("id"):
        content = idx.docs.loc[idx.docs["id"] == pid, "content"].iloc[0]
        spans = list(zip(rows["start"], rows["end"]))
        assert spans == sorted(spans) and spans[0][0] >= 0 and spans[-1][1] <= len(content)
        # passages are the description, cut (only whitespace between them)
        assert "".join(content[s:e] for s, e in spans).replace(" ", "") == content.replace(" ", "")


def test_a_description_question_finds_its_product_and_says_which_passage(demo_index):
    idx = load_index(demo_index)
    row = idx.docs.loc[idx.docs["content"].str.len().idxmax()]
    words = row.content.split()
    span = " ".join(words[len(words) // 2: len(words) // 2 + 10])
    hit = idx.retrieve(f"I'm looking for something that {span}", k=3)[0]
    assert hit.uid == row.uid and hit.match == "description"
    assert hit.passage and hit.passage in row.content and span.split()[0] in hit.passage
    d = hit.to_dict()
    assert d["match"] == "description" and d["passage"] == hit.passage
    # a question that names the product still matches its title
    named = idx.retrieve(f"What is '{row.title}'?", k=1)[0]
    assert named.uid == row.uid and named.match == "title"


def test_an_index_from_before_descriptions_still_searches_titles(demo_index, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(demo_index, old)
    for f in (PASSAGE_VECTORS, PASSAGES):
        (old / f).unlink()
    shutil.rmtree(old / BM25_PASSAGES)
    meta = json.loads((old / "meta.json").read_text())
    meta["format_version"] = 1
    for key in ("passages", "abstain_threshold_described"):
        meta.pop(key, None)
    meta["file_sizes"] = {f: s for f, s in meta["file_sizes"].items() if f in ("index.faiss", "docs.parquet")}
    (old / "meta.json").write_text(json.dumps(meta))
    idx = load_index(old)
    assert "rebuild with `productqa index build` to search descriptions" in capsys.readouterr().err
    assert idx.passages is None
    title = idx.docs["title"].iloc[4]
    hits = idx.retrieve(f"What is '{title}'?", k=2)
    assert hits[0].title == title and all(h.match == "title" for h in hits)


def test_add_and_remove_keep_passages_in_step(demo_index, tmp_path):
    from indexing.update import add_products, remove_products
    from tests.conftest import write_jsonl

    idx_dir = tmp_path / "index"
    shutil.copytree(demo_index, idx_dir)
    n0 = len(load_index(idx_dir).passages)
    new = write_jsonl(tmp_path / "new.jsonl", [
        {"uid": "ZZDESC01", "title": "Model 7 Kit",
         "content": "A cedar birdhouse you assemble without glue; the roof slides off for cleaning the nest box."}])
    add_products(idx_dir, [new], progress=False)
    idx = load_index(idx_dir)
    hit = idx.retrieve("a wooden bird house whose roof comes off so you can clean it", k=1)[0]
    assert hit.uid == "ZZDESC01" and hit.match == "description"
    assert len(idx.passages) == n0 + 1 and idx.passage_index.ntotal == n0 + 1
    remove_products(idx_dir, ["ZZDESC01"])
    idx = load_index(idx_dir)
    assert len(idx.passages) == n0 and idx.passage_index.ntotal == n0
    assert all(h.uid != "ZZDESC01" for h in idx.retrieve("cedar birdhouse nest box", k=5))


def test_real_records_named_and_described(real_index):
    """On the 498 real records (the issue's targets): questions that name a product stay at hit@1 >= 0.97
    (0.973 measured, 0.975 with titles only); generated description questions reach >= 0.9 (0.965
    measured; 0.868 counting only the asked-about product, not others sharing the quoted blurb); the
    hand-written paraphrases too (18 of 20 measured)."""
    from indexing.catalog import read_catalog
    from indexing.evaluate import evaluate_retrieval, handwritten_questions
    from indexing.questions import make_description_questions, make_eval_questions

    idx, catalog = real_index
    docs = read_catalog(catalog)
    qs = make_eval_questions(docs, n=498) + make_description_questions(docs, n=498)
    qs += handwritten_questions(HANDWRITTEN, docs)
    report = evaluate_retrieval(idx, qs, modes=("hybrid", "titles"))
    hybrid = report["hybrid"]
    assert hybrid["names"]["hit@1"] >= 0.97, hybrid
    assert hybrid["descriptions"]["hit@1"] >= 0.9, hybrid
    assert hybrid["descriptions"]["hit@1_strict"] >= 0.8, hybrid
    assert hybrid["handwritten"]["n"] >= 15 and hybrid["handwritten"]["hit@1"] >= 0.85, hybrid
    # describing questions are what titles alone cannot answer
    assert hybrid["descriptions"]["hit@1"] > report["titles"]["descriptions"]["hit@1"] + 0.5


def test_real_records_abstention_on_questions_calibration_never_saw(real_index):
    """Thresholds calibrated at build time (seed 0) hold on other questions (seed 7): >= 90% of
    invented products rejected, named or described, and <= 5% false refusals on every kind of real
    question, describing ones included (measured: 100% / 100%; at most 4.6%, typos)."""
    import numpy as np

    from indexing.calibrate import invented_descriptions, invented_titles
    from indexing.questions import make_description_questions, make_eval_questions, make_question
    from rag.answer import should_abstain

    idx, _ = real_index
    cal = idx.meta["calibration"]
    assert idx.meta["abstain_score"] == "cosine+coverage"
    assert cal["correct_abstain_rate"] >= 0.9 and cal["correct_abstain_rate_described"] >= 0.9, cal

    def refused(questions):
        return np.asarray([should_abstain(h, idx.threshold_for(h), idx.support)
                           for h in idx.retrieve_many(questions, k=3)])

    rows = make_eval_questions(idx.docs, 498, seed=7) + make_description_questions(idx.docs, 498, seed=7)
    real = refused([r["question"] for r in rows])
    for kind in sorted({r["variant"] for r in rows}):
        rate = real[[r["variant"] == kind for r in rows]].mean()
        assert rate <= 0.05, (kind, rate)
    names = invented_titles(200, {t.casefold() for t in idx.docs["title"]}, seed=7)
    assert refused([make_question(t, t, "any", salt="held-out") for t in names]).mean() >= 0.9
    assert refused(invented_descriptions(200, seed=7)).mean() >= 0.9


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare
    from tests.conftest import SHARED

    if not (SHARED / "trn_first500_title_content_alpaca.json").exists():
        pytest.skip(f"real records not found at {SHARED} (../shared is absent)")
    tmp = tmp_path_factory.mktemp("real")
    prepare([SHARED / "trn_first500_title_content_alpaca.json", SHARED / "trn_raw_lines_from_readme.jsonl"],
            tmp / "cat", progress=False)
    build_index(BuildConfig(catalog=str(tmp / "cat"), out=str(tmp / "idx"), progress=False))
    return load_index(tmp / "idx"), tmp / "cat"
