"""Learned fusion: which of the retrievers' candidates a question is about, ranked by a small LightGBM
model over what every retriever says about each candidate.

    from indexing.rank import fit_ranker
    ranker, info = fit_ranker(index)          # at build time (indexing/build.py), on the catalog's own questions
    ranker.save(folder / "ranker.txt")         # indexing.search.Index loads it when meta.json has "ranker"
    S = ranker.score(X)                        # one score per candidate row of `features(...)`: higher first

Five retrievers propose candidates (indexing/search.py): title vectors, title BM25, description passage
vectors, passage BM25 and character trigrams of titles (typos). A hand-set rule over them (route by word
coverage, the fusion before this) sent a question that names a short title in conversation ("Would you
recommend Thirst? What's it like?") to descriptions holding "recommend" and "like". Here each candidate
gets FEATURES (each retriever's score, reciprocal rank and score relative to that retriever's best; word
coverage of its title and best passage; fuzzy similarity of its title and the question; lengths), and a
LambdaMART ranker learns how to weigh them.

Training questions are generated from the index's own products at build time: every naming and
describing kind of the retrieval evaluation with its trained phrasings, plus the conversational
TRAIN_FRAMES (indexing/questions.py), with exact, lower-cased, partial and typo'd titles. Products for
which `questions.held_out_product(uid)` is true (half the catalog, by a fixed hash) are never used, and
neither are the HELD_OUT frames: `productqa eval retrieval` scores the ranker on exactly those.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RETRIEVERS = ("dense", "bm25", "dense_passage", "bm25_passage", "fuzzy")
FEATURES = (
    *(f"{r}_{x}" for r in RETRIEVERS for x in ("score", "rrank", "rel")),  # score, 1/rank, score / retriever's best
    "cos_title", "cos_title_gap", "cos_passage", "cos_passage_gap",  # cosines of every candidate, searched or not
    "cov_title", "cov_passage", "cov_title_gap", "cov_passage_gap", "cov_route",  # word coverage (indexing.lexical)
    "idf_title", "idf_passage", "idf_title_gap", "idf_passage_gap", "idf_route",  # the same, words weighted by idf
    "fuzz_partial", "fuzz_partial_gap", "fuzz_token_set", "fuzz_ratio",  # rapidfuzz: title vs question
    "title_in_question", "title_words", "question_words", "focused",
)


@dataclass
class RankerConfig:
    products: int = 1000  # training products sampled from those not held out (at most; build time grows with it)
    questions: int = 4000  # at most this many of their questions (a seeded sample): each is one retrieval at build
    # time, ~8,800 for 1,000 products took 725 s at full size (docs/results.md); the real records' ~2,200 are all kept
    val_share: int = 5  # 1 in val_share training products validates (early stopping, the held-out score)
    trees: int = 300  # boosting rounds (chosen on the validation products: early stopping on their hit@1 stopped
    # after ~12 rounds, on a plateau, and ranked worse than 300 rounds of small trees)
    leaves: int = 7  # leaves per tree
    learning_rate: float = 0.05
    min_products: int = 20  # fewer training products than this: no ranker (the index keeps the rule)
    seed: int = 0


def features(c, titles: list[str]) -> "np.ndarray":
    """X [len(c.rows), len(FEATURES)] float32 for one question's candidates `c` (indexing.search.Candidates:
    rows, ranks, scores, cov_t, cov_p, question, focused) whose titles are `titles`."""
    import numpy as np
    from rapidfuzz import fuzz, process, utils

    rows = c.rows
    n = len(rows)
    X = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return X
    pos = {r: i for i, r in enumerate(rows)}
    col = 0
    for name in RETRIEVERS:
        sc, rk = c.scores.get(name, {}), c.ranks.get(name, [])
        top = max(sc.values(), default=0.0)
        for rank, r in enumerate(rk, 1):
            i = pos[r]
            X[i, col], X[i, col + 1] = sc[r], 1.0 / rank
            X[i, col + 2] = sc[r] / top if top > 0 else 0.0
        col += 3
    for name in ("dense", "dense_passage"):
        full = c.full.get(name, {})
        v = np.asarray([full.get(r, 0.0) for r in rows], dtype=np.float32)
        X[:, col], X[:, col + 1] = v, v - v.max()
        col += 2
    for t, p in ((c.cov_t, c.cov_p), (c.idf_t, c.idf_p)):
        ct = np.asarray([t.get(r, 0.0) for r in rows], dtype=np.float32)
        cp = np.asarray([p.get(r, 0.0) for r in rows], dtype=np.float32)
        X[:, col: col + 5] = np.stack([ct, cp, ct - ct.max(), cp - cp.max(), np.full(n, cp.max() - ct.max())], 1)
        col += 5
    q, f = utils.default_process(c.question), utils.default_process(c.focused)
    procd = [utils.default_process(t) for t in titles]
    # the title inside the question
    partial = process.cdist([q], procd, scorer=fuzz.partial_ratio, workers=1)[0] / 100.0
    X[:, col] = partial
    X[:, col + 1] = partial - partial.max()
    X[:, col + 2] = process.cdist([f], procd, scorer=fuzz.token_set_ratio, workers=1)[0] / 100.0
    X[:, col + 3] = process.cdist([f], procd, scorer=fuzz.ratio, workers=1)[0] / 100.0
    X[:, col + 4] = [bool(t) and f" {t} " in f" {q} " for t in procd]
    X[:, col + 5] = [len(t.split()) for t in procd]
    X[:, col + 6] = len(f.split())
    X[:, col + 7] = float(c.focused != c.question)
    return X


class Ranker:
    """A LightGBM booster over FEATURES; `score(X)` is higher for the likelier product."""

    def __init__(self, booster):
        self.booster = booster

    def score(self, X) -> "np.ndarray":
        return self.booster.predict(X, num_threads=1) if len(X) else X[:, 0]

    def save(self, path: str | Path) -> None:
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Ranker":
        import lightgbm as lgb

        from indexing.errors import UserError

        try:
            booster = lgb.Booster(model_file=str(path))
        except Exception as e:  # lightgbm raises its own LightGBMError for a torn or foreign file
            raise UserError(f"{path}: corrupt ranker ({str(e).splitlines()[0][:200]}); rebuild the index") from None
        if tuple(booster.feature_name()) != FEATURES:
            raise UserError(f"{path}: ranker made with other features than this ProductQA computes; rebuild the index")
        return cls(booster)


def training_questions(docs, seed: int = 0) -> list[dict]:
    """Questions about `docs` (products not held out) in every trained phrasing: the evaluation's naming
    and describing kinds (which use the fine-tuning templates) and two conversational TRAIN_FRAMES with a
    random title form, one TRAIN_DESCRIBE_FRAMES around a description span."""
    from indexing.questions import (
        TRAIN_DESCRIBE_FRAMES,
        TRAIN_FRAMES_EN,
        TRAIN_FRAMES_PT,
        _spans,
        make_description_questions,
        make_eval_questions,
        prefix_of,
        title_forms,
    )

    out = make_eval_questions(docs, len(docs), seed) + make_description_questions(docs, len(docs), seed)
    rng = random.Random(seed + 5)
    for uid, title, content in zip(docs["uid"], docs["title"], docs["content"]):
        forms = title_forms(title, rng)
        for i, frame in enumerate(rng.sample(TRAIN_FRAMES_EN + TRAIN_FRAMES_PT, 2)):
            form = rng.choice(list(forms))
            out.append({"qid": f"{uid}:frame{i}", "variant": "chat_trained", "question":
                        frame.format(title=forms[form]), "uid": uid, "title": title,
                        **prefix_of(title, form == "partial")})
        spans = _spans(content, title, rng, 1)
        if spans:
            out.append({"qid": f"{uid}:describe", "variant": "desc_trained", "span": spans[0], "uid": uid,
                        "title": title, "question": rng.choice(TRAIN_DESCRIBE_FRAMES).format(span=spans[0])})
    return out


def labels(q: dict, rows, docs) -> "np.ndarray":
    """1 for candidates that answer question `q` the way `eval retrieval` counts a hit (questions.found),
    else 0."""
    import numpy as np

    from indexing.questions import found

    d = docs.iloc[list(rows)]
    return np.asarray([found(q, u, t, c)[1] for u, t, c in zip(d["uid"], d["title"], d["content"])], dtype=np.int32)


def training_data(index, cfg: RankerConfig) -> dict | None:
    """The learned fusion's training set for a loaded `indexing.search.Index`: {"X", "y", "group" (candidates
    per question), "val" (per question: a validation product's), "products"}; None when the catalog has
    fewer than cfg.min_products products to learn from."""
    import numpy as np

    from indexing.questions import _pick, held_out_product

    docs = index.docs
    pool = [r for r, uid in enumerate(docs["uid"]) if not held_out_product(uid)]
    random.Random(cfg.seed).shuffle(pool)
    pool = sorted(pool[: cfg.products])
    if len(pool) < cfg.min_products:
        return None
    questions = training_questions(docs.iloc[pool], cfg.seed)
    if len(questions) > cfg.questions:  # a seeded sample, in their order (the build's time does not grow past it)
        keep = sorted(random.Random(cfg.seed + 1).sample(range(len(questions)), cfg.questions))
        questions = [questions[i] for i in keep]
    X, y, group, val = [], [], [], []
    # batched retrievals of 256 questions (vectors, BM25 and features in bulk), not one search each; the same
    # batches as before: one batch of all of them pads the question embeddings differently (bf16), enough to
    # change the real records' ranker ("Explain Cirucs to me." lost Circus, tests/indexing/test_multilingual.py)
    for s in range(0, len(questions), 256):
        batch = questions[s: s + 256]
        for q, c in zip(batch, index.candidates([x["question"] for x in batch])):
            yy = labels(q, c.rows, docs)
            if not yy.any():  # no retriever found it: nothing to learn about ordering
                continue
            X.append(index.features(c))
            y.append(yy)
            group.append(len(yy))
            val.append(_pick(q["uid"], cfg.val_share, salt="ranker-val") == 0)
    return {"X": np.concatenate(X), "y": np.concatenate(y), "group": np.asarray(group), "val": np.asarray(val),
            "products": len(pool)}


def validation_product(uid: str, cfg: RankerConfig | None = None) -> bool:
    """A product whose questions validate the ranker and never train it (indexing/calibrate.py measures
    the "sure" margin on them)."""
    from indexing.questions import _pick

    return _pick(uid, (cfg or RankerConfig()).val_share, salt="ranker-val") == 0


def hit_at_1(score, data: dict, which) -> float:
    """hit@1 over the questions `which` (a boolean mask over data["group"]) when candidates rank by `score(X)`."""
    import numpy as np

    bounds = np.cumsum(np.r_[0, data["group"]])
    hits = [data["y"][a:b][int(np.argmax(score(data["X"][a:b])))]
            for a, b, w in zip(bounds[:-1], bounds[1:], which) if w]
    return float(np.mean(hits)) if hits else float("nan")


def fit_ranker(index, cfg: RankerConfig | None = None) -> tuple[Ranker | None, dict]:
    """(ranker, meta.json's "ranker" entry) for a loaded `indexing.search.Index`, or (None, {"skipped": why})
    when the catalog has too few products to learn from (the index then keeps the rule)."""
    import lightgbm as lgb
    import numpy as np

    from indexing.questions import EVAL_SHARE

    cfg = cfg or RankerConfig()
    data = training_data(index, cfg)
    if data is None:
        return None, {"skipped": f"fewer than {cfg.min_products} products to train on: fused by rule"}
    val, gs = data["val"], data["group"]
    fit = ~val[np.repeat(np.arange(len(gs)), gs)]
    model = lgb.LGBMRanker(objective="lambdarank", n_estimators=cfg.trees, num_leaves=cfg.leaves,
                           learning_rate=cfg.learning_rate, min_child_samples=20, random_state=cfg.seed, n_jobs=2,
                           deterministic=True, force_row_wise=True, verbose=-1, lambdarank_truncation_level=10)
    model.fit(data["X"][fit], data["y"][fit], group=gs[~val], feature_name=list(FEATURES))
    ranker = Ranker(model.booster_)
    info = {"file": "ranker.txt", "library": f"lightgbm {lgb.__version__}", "objective": "lambdarank",
            "features": list(FEATURES), "trees": int(model.booster_.num_trees()), "config": asdict(cfg),
            "training": {"products": data["products"], "questions": int((~val).sum()),
                         "validation_questions": int(val.sum()),
                         "phrasings": "eval kinds (fine-tuning templates) + questions.TRAIN_FRAMES_* + "
                                      "TRAIN_DESCRIBE_FRAMES; never HELD_OUT frames",
                         "split": f"products with questions.held_out_product(uid) (1 in {EVAL_SHARE}) are never "
                                  f"trained on; 1 in {cfg.val_share} of the rest validate"},
            "validation_hit@1": round(hit_at_1(ranker.score, data, val), 4)}
    return ranker, info
