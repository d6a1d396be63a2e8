"""RAFT example builder: no leakage across the split, distractor mix, Portuguese phrasings."""

import pandas as pd

from finetune.examples import ExampleConfig, build_examples, is_validation
from rag.prompt import NOT_IN_CATALOG
from tests.conftest import FakeIndex


def catalog(n=200):
    return pd.DataFrame({"uid": [f"U{i:04d}" for i in range(n)],
                         "title": [f"Product {i} widget model {i % 17}" for i in range(n)],
                         "content": [f"Description of product {i}, unique text {i * 31}." for i in range(n)]})


def test_split_is_by_product_and_stable():
    docs = catalog(1000)
    val = [u for u in docs["uid"] if is_validation(u)]
    assert 60 < len(val) < 140  # ~10%
    assert val == [u for u in docs["uid"] if is_validation(u)]


def test_no_validation_product_in_training_prompts():
    docs = catalog()
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig())
    val_uids = {e["uid"] for e in val}
    assert val_uids and not val_uids & {e["uid"] for e in train}
    val_texts = [docs.set_index("uid").loc[u, "content"] for u in val_uids]
    for e in train:
        assert not any(t in e["prompt"] or t in e["completion"] for t in val_texts)


def test_mix_of_oracle_distractor_and_not_first():
    docs = catalog()
    train, _ = build_examples(docs, FakeIndex(docs), ExampleConfig(p_distractor_only=0.2, p_not_first=0.3))
    kinds = pd.Series([e["kind"] for e in train]).value_counts(normalize=True)
    assert 0.1 < kinds["distractor"] < 0.3
    assert 0.15 < kinds["oracle-not-first"] < 0.35
    by_uid = docs.set_index("uid")
    for e in train:
        desc = by_uid.loc[e["uid"], "content"]
        if e["kind"] == "distractor":
            assert e["completion"] == NOT_IN_CATALOG and desc not in e["prompt"]
        else:
            title = by_uid.loc[e["uid"], "title"]
            rank = int(e["completion"][1])
            # the response cites the entry as the prompt labels it, then copies its description
            assert e["completion"] == f"[{rank}] {title}\n{desc}" and f"[{rank}] {title}\n{desc}" in e["prompt"]
            first_entry = e["prompt"].split("### Input:\n[1] ")[1].split("\n")[0]
            assert (first_entry == title) == (e["kind"] == "oracle") == (rank == 1)
        assert e["prompt"].count("\n[") <= 3  # k = 3 entries


def test_questions_in_both_languages():
    docs = catalog()
    train, _ = build_examples(docs, FakeIndex(docs), ExampleConfig())
    qs = [e["question"] for e in train]
    pt = [q for q in qs if any(w in q for w in ("descrição", "O que é", "Me fale", "Descreva"))]
    assert 0.2 < len(pt) / len(qs) < 0.7
    assert all(f"Question: {e['question']}" in e["prompt"] for e in train)
