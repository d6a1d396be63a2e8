"""rag/evidence.py: the learned evidence ranker (features, training, save/load) and read_detail through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexing.errors import UserError
from rag.detail import cognate as _cognate
from rag.detail import sentences, without_title
from rag.evidence import (
    FEATURES,
    EvidenceRanker,
    candidates,
    read_ranked,
    sentence_features,
    train,
    training_questions,
)

DEMO = Path(__file__).resolve().parents[2] / "indexing" / "demo" / "demo_trn.jsonl"
MOG = ("Judith Kerr's best-selling adventures of that endearing cat Mog have entertained children for more than "
       "30 years. These sturdy little board books are just the thing to delight the very young. Ages 0-3. "
       "Written by Judith Kerr, illustrated by the author. 24 pages.")


def _rows():
    rows = []
    for line in DEMO.read_text(encoding="utf-8").split("\n"):
        try:  # the demo file holds broken lines on purpose (prepare's error report shows them)
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("content") and r.get("title"):
            rows.append((r["title"], r["content"]))
    return rows + [("Mog's Kittens", MOG)]


@pytest.fixture(scope="module")
def ranker():
    return train(_rows(), trees=30)


def test_features_one_row_per_sentence_and_evidence_marked():
    spans = sentences(MOG)
    asked = without_title("what age is Mog's Kittens for?", "Mog's Kittens")
    X = sentence_features(asked, "age", "Mog's Kittens", MOG, spans)
    assert X.shape == (len(spans), len(FEATURES))
    ev = X[:, FEATURES.index("evidence")]
    assert [i for i in range(len(spans)) if ev[i]] == [2]  # "Ages 0-3."
    assert set(X[:, FEATURES.index("evidence_sentences")]) == {1.0}


def test_candidates_are_the_rules():
    spans = sentences(MOG)
    assert candidates("age", MOG, spans) == [2]
    assert candidates("weight", MOG, spans) == []  # not stated
    assert candidates(None, MOG, spans) == list(range(len(spans)))


def test_cognates_meet_portuguese_and_inflected_words():
    assert _cognate("bibliografia") == _cognate("bibliography")
    assert _cognate("fotografias") == _cognate("photographs")
    assert _cognate("Protagonista") == _cognate("protagonist")


def test_training_questions_answer_their_own_sentence():
    import random

    items = training_questions(_rows(), random.Random(0))
    assert items and any(it["positive"] is None for it in items) and any(it["positive"] is not None for it in items)
    for it in items:
        if it["positive"] is not None:
            assert 0 <= it["positive"] < len(sentences(it["content"]))


def test_ranker_round_trip(ranker, tmp_path):
    spans = sentences(MOG)
    X = sentence_features(without_title("who wrote it", "Mog's Kittens"), "author", "Mog's Kittens", MOG, spans)
    ranker.save(tmp_path / "ev")
    card = json.loads((tmp_path / "ev.json").read_text())
    assert card["features"] == list(FEATURES) and card["threshold"] == ranker.threshold
    assert card["training"]["questions"] > 0 and card["library"].startswith("lightgbm")
    back = EvidenceRanker.load(tmp_path / "ev")
    np.testing.assert_allclose(back.score(X), ranker.score(X))
    assert back.threshold == ranker.threshold


def test_ranker_refuses_foreign_or_torn_files(ranker, tmp_path):
    ranker.save(tmp_path / "ev")
    card = json.loads((tmp_path / "ev.json").read_text())
    (tmp_path / "ev.json").write_text(json.dumps(dict(card, features=card["features"][:-1])))
    with pytest.raises(UserError, match="other features"):
        EvidenceRanker.load(tmp_path / "ev")
    (tmp_path / "ev.txt").write_text("not a model")
    with pytest.raises(UserError, match="no readable evidence ranker"):
        EvidenceRanker.load(tmp_path / "ev")
    with pytest.raises(UserError, match="no readable evidence ranker"):
        EvidenceRanker.load(tmp_path / "missing")


def test_read_detail_through_the_ranker(ranker):
    d = read_ranked("what age is Mog's Kittens for?", "Mog's Kittens", MOG, ranker)
    assert d.stated and d.short == "Ages 0-3" and MOG[d.span[0]:d.span[1]] == d.quote
    assert not read_ranked("how much does Mog's Kittens weigh?", "Mog's Kittens", MOG, ranker).stated
