"""indexing/rank.py: the learned fusion's features, its save/load round trip, what counts as a hit, the
typo-tolerant title grams, and indexes built before the ranker."""

import json
import shutil

import numpy as np
import pytest

from indexing.errors import UserError
from indexing.lexical import char_grams
from indexing.questions import found, held_out_product, make_chat_questions
from indexing.rank import FEATURES, Ranker, features
from indexing.search import Candidates
from indexing.store import live_folder


def _cands():
    # rows 3, 7, 9: dense found 7 then 3, BM25 found 3, passage BM25 found 9 (its passage covers the question)
    return Candidates(
        question="Would you recommend Thirst? What's it like?", focused="Would you recommend Thirst? What's it like?",
        use=("dense", "bm25", "dense_passage", "bm25_passage", "fuzzy"),
        ranks={"dense": [7, 3], "bm25": [3], "bm25_passage": [9]},
        scores={"dense": {7: 0.6, 3: 0.3}, "bm25": {3: 4.0}, "bm25_passage": {9: 8.0}},
        best_passage={}, cov_t={3: 1 / 3, 7: 0.0}, cov_p={9: 1.0}, idf_t={3: 0.5}, idf_p={9: 0.4},
        full={"dense": {7: 0.6, 3: 0.3, 9: 0.1}, "dense_passage": {9: 0.5}})


def test_features_of_each_candidate():
    c = _cands()
    assert c.rows == [7, 3, 9]  # retriever by retriever, first seen first
    X = features(c, ["Evening in the Palace of Reason", "Thirst", "The Yiddish Policemen's Union"])
    f = {name: X[:, i] for i, name in enumerate(FEATURES)}
    assert X.shape == (3, len(FEATURES)) and X.dtype == np.float32
    assert f["dense_score"].tolist() == pytest.approx([0.6, 0.3, 0.0])
    assert f["dense_rrank"].tolist() == [1.0, 0.5, 0.0]
    assert f["dense_rel"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert f["bm25_score"].tolist() == [0.0, 4.0, 0.0] and f["bm25_passage_rrank"].tolist() == [0.0, 0.0, 1.0]
    assert f["cov_title"].tolist() == pytest.approx([0.0, 1 / 3, 0.0])
    assert f["cov_passage_gap"].tolist() == pytest.approx([-1.0, -1.0, 0.0])
    assert f["cov_route"].tolist() == pytest.approx([2 / 3] * 3)  # best passage covers more than best title
    assert f["idf_title"].tolist() == pytest.approx([0.0, 0.5, 0.0])
    assert f["cos_passage"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    assert f["cos_title_gap"].tolist() == pytest.approx([0.0, -0.3, -0.5])
    # the one-word title is inside the question: partial ratio 1 (for it alone)
    assert f["fuzz_partial"][1] == 1.0 and f["fuzz_partial"][0] < 0.8 and f["title_in_question"].tolist() == [0, 1, 0]
    assert f["title_words"].tolist() == [6, 1, 5] and f["question_words"].tolist() == [8] * 3  # "what s" is two
    assert f["focused"].tolist() == [0, 0, 0]  # no project phrasing to strip
    assert features(Candidates("q", "q", (), {}, {}, {}, {}, {}, {}, {}), []).shape == (0, len(FEATURES))


def test_ranker_save_load_round_trip(tmp_path):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.random((400, len(FEATURES))).astype(np.float32)
    y = (X[:, 0] > 0.7).astype(int)
    model = lgb.LGBMRanker(n_estimators=20, num_leaves=7, min_child_samples=5, verbose=-1)
    model.fit(X, y, group=[20] * 20, feature_name=list(FEATURES))
    r = Ranker(model.booster_)
    r.save(tmp_path / "ranker.txt")
    again = Ranker.load(tmp_path / "ranker.txt")
    assert np.array_equal(r.score(X), again.score(X))
    assert np.corrcoef(again.score(X), X[:, 0])[0, 1] > 0.5  # it learned the signal: scores mean something
    # a ranker over other features, or a torn file, is refused with one line
    other = lgb.LGBMRanker(n_estimators=2, verbose=-1, min_child_samples=5)
    other.fit(X[:, :3], y, group=[20] * 20)
    other.booster_.save_model(str(tmp_path / "other.txt"))
    with pytest.raises(UserError, match="other features"):
        Ranker.load(tmp_path / "other.txt")
    (tmp_path / "torn.txt").write_text((tmp_path / "ranker.txt").read_text()[:300])
    with pytest.raises(UserError, match="corrupt ranker"):
        Ranker.load(tmp_path / "torn.txt")


def test_what_counts_as_found():
    q = {"uid": "u1", "title": "A Day in the Life of Ireland", "prefix": "A Day in the"}
    assert found(q, "u1", "x", "") == (True, True)
    assert found(q, "u2", "a day in the life of ireland", "") == (True, True)  # an edition sharing the title
    assert found(q, "u3", "A Day in the Life of Israel", "") == (False, True)  # the partial title cannot tell
    assert found(q, "u4", "Ireland: A Day", "") == (False, False)
    d = {"uid": "u1", "title": "T", "span": "small in size, yet large in recipe selection"}
    assert found(d, "u5", "Other", "Small in size, yet large in recipe selection!") == (False, True)
    assert found(d, "u5", "Other", "large in size") == (False, False)


def test_typo_shares_most_character_grams():
    right, typo, other = char_grams(["Paddington's Suitcase", "Paddingtons Suticase", "Paddington at Large"])
    assert len(set(right) & set(typo)) > len(set(other) & set(typo))
    assert "#su" in right and "se#" in right


def test_held_out_split_and_frames_are_fixed():
    # a fixed hash of the uid: the same on every machine, build and catalog size
    assert [held_out_product(u) for u in ("0000031887", "a", "b")] == [False, True, False]
    import pandas as pd

    docs = pd.DataFrame({"uid": ["a", "b"], "title": ["Thirst", "Girls Ballet Tutu Neon Pink"], "content": ["x", "y"]})
    qs = make_chat_questions(docs, 2)
    assert {q["variant"] for q in qs} == {"chat_trained", "chat", "chat_pt", "chat_typo", "chat_partial", "short"}
    assert sum(q["variant"] == "short" for q in qs) == 4 and all(q["uid"] == "a" for q in qs if q["variant"] == "short")
    assert [q["prefix"] for q in qs if q.get("prefix")] == ["Girls Ballet Tutu"]


@pytest.mark.slow
def test_learned_fusion_in_meta_and_an_index_without_it_keeps_the_rule(demo_index, tmp_path, capsys):
    from indexing.search import load_index
    from indexing.store import BM25_CHARS, RANKER

    idx = load_index(demo_index)
    r = idx.meta["ranker"]
    assert idx.fusion == "learned" and r["features"] == list(FEATURES) and r["training"]["questions"] > 500
    assert 0.9 <= r["validation_hit@1"] <= 1.0 and idx.meta["build_seconds"]["ranker"] > 0
    assert "held_out_product" in r["training"]["split"]
    title = idx.docs["title"].iloc[3]
    assert idx.retrieve(f"Would you recommend {title}?", k=1)[0].title == title
    # an index from before the learned fusion: no ranker, no character grams -> today's rule
    old = tmp_path / "old"
    shutil.copytree(live_folder(demo_index), old)
    (old / RANKER).unlink()
    shutil.rmtree(old / BM25_CHARS)
    meta = json.loads((old / "meta.json").read_text())
    for key in ("ranker", "fuzzy"):
        meta.pop(key)
    meta["file_sizes"].pop(RANKER)
    (old / "meta.json").write_text(json.dumps(meta))
    o = load_index(old)
    assert o.fusion == "route" and o.ranker is None and o.chars is None
    hit = o.retrieve(f"What is '{title}'?", k=1)[0]
    assert hit.title == title and hit.match == "title" and "fuzzy" not in hit.retrievers
    # a ranker made with other features: a notice, and the rule meanwhile
    shutil.copytree(live_folder(demo_index), tmp_path / "foreign")
    text = (tmp_path / "foreign" / RANKER).read_text().replace("feature_names=dense_score", "feature_names=x_score")
    (tmp_path / "foreign" / RANKER).write_text(text)
    meta = json.loads((tmp_path / "foreign" / "meta.json").read_text())
    meta["file_sizes"][RANKER] = (tmp_path / "foreign" / RANKER).stat().st_size
    (tmp_path / "foreign" / "meta.json").write_text(json.dumps(meta))
    f = load_index(tmp_path / "foreign")
    assert f.fusion == "route" and "fusing by the rule meanwhile" in capsys.readouterr().err
