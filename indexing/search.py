"""Hybrid product search: five retrievers (title vectors and description passage vectors in FAISS, BM25
over titles and over passages, character trigrams of titles), fused by the learned ranker that the build
trains (indexing/rank.py), or by the "route" rule for an index built without one.

    productqa search "What is 'Girls Ballet Tutu Neon Pink'?" --index data/index [-k 5] [--json]
    productqa search --questions questions.jsonl --index data/index --json     # {"id", "question"} lines

    from indexing.search import load_index
    idx = load_index("data/index")
    hits = idx.retrieve("Qual é a descrição deste produto: mog's kittens?", k=5)   # list[Hit]

Questions usually quote or paraphrase a title; `focus()` pulls the title out of the project's
question phrasings (English and Portuguese) and of quotes before searching, so the framing words
do not dilute the title.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from indexing.errors import UserError

RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.); larger = flatter
# Titles: dense and BM25 fused by RRF, dense counting double (it is what keeps typos findable).
WEIGHTS = {"dense": 2.0, "bm25": 1.0}
# The rule for indexes without a learned ranker (route(); chosen in benchmarks/retrieval_choices.py, which
# holds the variants it was measured against; why they lost: docs/design.md): "route" ranks by the titles when
# the question's words are better covered by a candidate title than by a candidate description passage
# (the question names a product), by the passages when the reverse holds, and on a tie by the side with
# the higher best cosine. Passages rank by their BM25 first, then by what only their vectors found.
FUSION = "route"
ABSTAIN_SCORE = "cosine+coverage"  # what meta.json's abstain thresholds are on (Hit.evidence)
CANDIDATES = 50  # hits taken from each retriever before fusion
PASSAGE_CANDIDATES = 150  # passages taken before folding them into products (a product has several)
# mode -> retrievers it uses
MODES = {"hybrid": ("dense", "bm25", "dense_passage", "bm25_passage", "fuzzy"), "titles": ("dense", "bm25"),
         "descriptions": ("dense_passage", "bm25_passage"), "dense": ("dense",), "bm25": ("bm25",),
         "fuzzy": ("fuzzy",)}


@dataclass
class Hit:
    uid: str
    title: str
    content: str
    score: float  # 1 / (60 + rank): higher is better (only the order means something)
    dense_score: float | None = None  # best cosine of question and product (title or a passage), if dense found it
    bm25_score: float | None = None  # title BM25 score, if title BM25 found it
    retrievers: tuple = field(default_factory=tuple)  # which retrievers found it: "dense", "bm25", "dense_passage", ...
    passage: str | None = None  # the description passage that matched best, when a passage retriever found it
    match: str = "title"  # "description" when the search went by descriptions and a passage matched
    coverage: float = 0.0  # share of the question's words in the title (a typo away counts) or in the best
    # passage, the higher
    fused: float | None = None  # the learned fusion's score (None: fused by the rule); margins calibrate "sure"
    multilingual: float | None = None  # the second stage's match (None: skipped; indexing/multilingual.py)

    @property
    def evidence(self) -> float:
        """How strongly the catalog supports this hit: best cosine plus word coverage (0..2). The "not in
        the catalog" thresholds are calibrated on it (indexing/calibrate.py): an invented product shares
        few of its words with any entry, a quoted or paraphrased description most of them."""
        return (self.dense_score or 0.0) + self.coverage

    def to_dict(self) -> dict:
        return {"uid": self.uid, "title": self.title, "score": round(self.score, 6),
                "dense_score": None if self.dense_score is None else round(self.dense_score, 4),
                "bm25_score": None if self.bm25_score is None else round(self.bm25_score, 4),
                "coverage": round(self.coverage, 4), "retrievers": list(self.retrievers), "match": self.match,
                "passage": self.passage, "fused": None if self.fused is None else round(self.fused, 4),
                "multilingual": None if self.multilingual is None else round(self.multilingual, 4)}


def abstains(hits, threshold: float, score=None) -> bool:
    """The one "not in the catalog" rule: no product close enough, the best hit's `score` (default
    `Hit.evidence`: cosine + word coverage) below `threshold` (no hits: always). `Index.abstains` applies it
    with the index's calibrated thresholds (indexing/calibrate.py); answering, the chat and the evaluations
    ask the index."""
    if not hits:
        return True
    score = score or (lambda h: h.evidence)
    return max(score(h) for h in hits) < threshold


@lru_cache(maxsize=1)
def _template_patterns():
    from indexing.questions import TEMPLATES

    pats = []
    for t in TEMPLATES:
        head, tail = t.split("{title}")
        pats.append(re.compile(r"^\s*" + re.escape(head).replace(r"\ ", r"\s+") + r"(?P<title>.+?)"
                               + re.escape(tail.rstrip("?.")) + r"\s*[?.!]*\s*$", re.I))
    return pats


_QUOTED = re.compile(r"(?:^|[\s:(])['\"\u2018\u201c](?P<title>[^'\"\u2019\u201d]{3,}?)['\"\u2019\u201d](?=[\s?.!,)]|$)")


def focus(question: str) -> str:
    """The part of a question that names the product: a quoted title, or the {title} slot of one of
    the project's phrasings; otherwise the question itself."""
    q = question.strip()
    m = _QUOTED.search(q)
    if m:
        return m.group("title").strip()
    for p in _template_patterns():
        m = p.match(q)
        if m:
            return m.group("title").strip().strip("'\"\u2018\u2019\u201c\u201d")
    return q


def rrf(rankings: dict[str, list[int]], k: int = RRF_K, tiebreak: dict | None = None,
        weights: dict | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: rows ranked by sum over retrievers of weight / (k + rank), rank from 1.
    Equal sums (dense #1 vs BM25 #1) are ordered by `tiebreak[row]` (the cosine), higher first."""
    scores: dict[int, float] = {}
    weights = weights or {}
    for name, rows in rankings.items():
        w = weights.get(name, 1.0)
        for rank, row in enumerate(rows, start=1):
            scores[row] = scores.get(row, 0.0) + w / (k + rank)
    tiebreak = tiebreak or {}
    return sorted(scores.items(), key=lambda x: (-round(x[1], 12), -tiebreak.get(x[0], -1.0)))


@dataclass
class Candidates:
    """What the retrievers found for one question, before fusion (indexing/rank.py reads it)."""
    question: str
    focused: str  # the part naming the product (focus())
    use: tuple  # the retrievers searched
    ranks: dict  # retriever -> product rows, best first
    scores: dict  # retriever -> {product row: score} (cosine, BM25; a passage retriever: its best passage)
    best_passage: dict  # passage retriever -> {product row: passage row}
    cov_t: dict  # {product row: share of the question's words in its title}
    cov_p: dict  # {product row: share in its best passage}
    idf_t: dict  # the same shares with each word weighted by its idf (indexing.lexical.coverage)
    idf_p: dict
    full: dict = field(default_factory=dict)  # "dense" / "dense_passage" -> {row: cosine} for every candidate

    @property
    def rows(self) -> list[int]:
        """Every product some retriever found, in a fixed order (retriever by retriever)."""
        seen = {}
        for name in self.use:
            for r in self.ranks.get(name, ()):
                seen.setdefault(r, None)
        return list(seen)

    def cosine(self, row: int) -> float | None:
        c = max(self.scores.get("dense", {}).get(row, -2.0), self.scores.get("dense_passage", {}).get(row, -2.0))
        return None if c == -2.0 else c


def _direct_map(index) -> None:
    """Let an IVF index give its vectors back by id (`reconstruct_batch`); flat ones (IndexIDMap2) and "ivfpq" ones
    (indexing.vectors.Reranked: its exact vectors by id) can."""
    import faiss

    from indexing.vectors import Reranked

    ivf = faiss.try_extract_index_ivf(index) if index is not None and not isinstance(index, Reranked) else None
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)


def _merge(first: list[int], then: list[int]) -> list[int]:
    """`first`, then the rows of `then` not in it, in their order."""
    seen = set(first)
    return list(first) + [r for r in then if r not in seen]


def fold(rows, scores, owner) -> tuple[list[int], dict, dict]:
    """Passage hits -> product ranking: each product scores its best passage. Returns (product rows
    best first, {row: best score}, {row: best passage row})."""
    best, which = {}, {}
    for r, sc in zip(rows, scores):
        if r < 0:
            continue
        p = int(owner[r])
        if p < 0:
            continue
        if p not in best or sc > best[p]:
            best[p], which[p] = float(sc), int(r)
    return sorted(best, key=lambda p: -best[p]), best, which


def title_ranking(c: Candidates) -> list[int]:
    """Product rows by their titles: dense and BM25 fused by RRF (WEIGHTS), ties to the higher title cosine."""
    return [r for r, _ in rrf({n: c.ranks[n] for n in ("dense", "bm25")}, tiebreak=c.scores.get("dense", {}),
                              weights=WEIGHTS)]


def description_ranking(c: Candidates) -> list[int]:
    """Product rows by their passages: the passages' words (BM25) first, then what only their vectors found."""
    return _merge(c.ranks["bm25_passage"], c.ranks["dense_passage"])


def route(c: Candidates) -> tuple[list[int], bool]:
    """The rule (FUSION: indexes without a learned ranker): (product rows best first, whether the ranking
    went by descriptions) for one question's candidates. With titles and passages both searched, the side
    covering more of the question's words ranks first and the other fills up; on a tie, the side with the
    higher best cosine."""
    use = tuple(r for r in c.use if r != "fuzzy") or c.use
    if len(use) == 1:
        return c.ranks[use[0]], use[0].endswith("_passage")
    if "dense" not in use:
        return description_ranking(c), True
    if "dense_passage" not in use:  # titles mode, or a title-only index
        return title_ranking(c), False
    best = lambda d: max(d.values(), default=-1.0)  # noqa: E731
    if best(c.cov_p) == best(c.cov_t):
        by_desc = best(c.scores.get("dense_passage", {})) > best(c.scores.get("dense", {}))
    else:
        by_desc = best(c.cov_p) > best(c.cov_t)
    if by_desc:
        return _merge(description_ranking(c), title_ranking(c)), True
    return _merge(title_ranking(c), description_ranking(c)), False


class Index:
    """A loaded index folder: title and passage FAISS + BM25 + documents + the embedding model (loaded once)."""

    def __init__(self, folder: str | Path, device: str | None = None, model: str | Path | None = None,
                 like: "Index | None" = None):
        from indexing.store import open_version

        self.root = Path(folder)  # the index folder; self.folder is the version that was read
        with open_version(self.root) as self.folder:  # a writer cannot remove it while it is read
            self._read(model)
        # 0: a folder without versions (the layout before them, or a version folder opened directly)
        self.version = int(self.meta.get("version", 0)) if self.folder != self.root else 0
        # the question encoders (titles, passages): shared with `like` (the version this one replaces,
        # indexing/follow.py) when built with the same ones, else loaded
        from indexing.embed import encoder_dim, load_index_encoders

        self.model, self.passage_model = load_index_encoders(self.meta, model, device, self.folder, like)
        for encoder, index, what in ((self.model, self._cpu["titles"], "title"),
                                     (self.passage_model, self._cpu.get("passages"), "passage")):
            if encoder is not None and index is not None and encoder_dim(encoder) != index.d:
                raise UserError(f"{self.folder}: its {what} encoder gives {encoder_dim(encoder)}-dim vectors, its "
                                f"{what} index holds {index.d}-dim ones: meta.json does not match the files "
                                "(rebuild it)")
        if like is None:  # the first search compiles bm25s's numba code (seconds): not in the first question
            self.retrieve_many(["warm-up"], k=1)

    def _read(self, model) -> None:
        import numpy as np

        from indexing.delta import read_version
        from indexing.embed import check_model
        from indexing.rank import Ranker
        from indexing.store import RANKER, read_meta
        from indexing.vectors import set_nprobe, to_gpu

        self.meta = read_meta(self.folder)
        for key in ("embedding_model", "passage_encoder"):  # before the long reads: a wrong --model fails fast
            if self.meta.get(key, {}).get("kind") != "none":
                check_model(self.meta, model, self.folder, key)
        v = read_version(self.folder, self.meta, mmap=True)  # base + deltas - tombstones (indexing/delta.py)
        self.docs, self.title_index, self.bm25, self.chars = v["docs"], v["titles"], v["bm25"], v["chars"]
        set_nprobe(self.title_index, self.meta)
        self._cpu = {"titles": self.title_index}  # GPU copies cannot give vectors back (Index._cosines)
        self.title_index, self._gpu = to_gpu(self.title_index)
        ids = self.docs["id"].to_numpy()
        self.row_of_id = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int64)
        self.row_of_id[ids] = np.arange(len(ids))
        self.passages = v["passages"]  # None: a title-only (format 1) index
        self.passage_index = None  # also for passages searched by BM25 alone (--passage-encoder none)
        if self.passages is not None:
            self.passage_index, self.bm25_passages = v["passage_index"], v["bm25_passages"]
        if self.passage_index is not None:
            set_nprobe(self.passage_index, self.meta["passages"])
            self._cpu["passages"] = self.passage_index
            self.passage_index, self._gpu_p = to_gpu(self.passage_index)
        if self.passages is not None:
            pids = self.passages["pid"].to_numpy()
            self.prow_of_pid = np.full(int(pids.max()) + 1 if len(pids) else 1, -1, dtype=np.int64)
            self.prow_of_pid[pids] = np.arange(len(pids))
            self.passage_owner = self.row_of_id[self.passages["id"].to_numpy()]  # passage row -> product row
        # the learned fusion (indexes built before it fuse by the rule)
        self.ranker, self._passages_of = None, None
        if self.meta.get("ranker"):
            try:
                self.ranker = Ranker.load(self.folder / RANKER)
            except UserError as e:  # made by another ProductQA: search still works, by the rule
                print(f"note: {e}; fusing by the rule meanwhile", file=sys.stderr)
        self.fusion = "learned" if self.ranker is not None else FUSION  # "learned" or FUSION (the rule, route())
        # the multilingual second stage's card vectors (None: the index has none, or the extra is not installed)
        self.cards = self._second_stage(v["cards"])

    def _second_stage(self, cards):
        """The multilingual cards to rerank with (indexing/multilingual.py), once the installed encoder is checked
        to be the index's; without the extra, None and a note: search goes on with the fusion alone."""
        from indexing import multilingual

        if cards is None or self.ranker is None:
            return None
        if not multilingual.available():
            print(f"note: {self.root} has a multilingual stage, but its encoder is not installed "
                  f"({multilingual.INSTALL}); searching without it", file=sys.stderr)
            return None
        multilingual.check(self.meta, self.folder)
        _direct_map(cards)
        return cards

    def __len__(self) -> int:
        return len(self.docs)

    @cached_property
    def _row_of_uid(self) -> dict:
        return {u: i for i, u in enumerate(self.docs["uid"])}  # built once per version (a version never changes)

    def product(self, uid: str) -> dict | None:
        """One product's catalog entry (uid, title, content), or None when this version holds no such uid."""
        row = self._row_of_uid.get(uid)
        if row is None:
            return None
        d = self.docs.iloc[row]
        return {"uid": d["uid"], "title": d["title"], "content": d["content"]}

    def search_dense(self, xq, k: int):
        """(cosine D [nq, k], rows I [nq, k]) of titles for question vectors xq; -1 where fewer than k hits."""
        D, ids = self.title_index.search(xq, min(k, len(self)))
        I = self.row_of_id[ids.clip(0)]
        I[ids < 0] = -1
        return D, I

    def search_passages(self, xq, k: int):
        """(cosine D [nq, k], passage rows I [nq, k]) for question vectors xq; -1 where fewer than k hits."""
        D, pids = self.passage_index.search(xq, min(k, len(self.passages)))
        I = self.prow_of_pid[pids.clip(0)]
        I[pids < 0] = -1
        return D, I

    def search_bm25(self, tokens: list[list[str]], k: int, passages: bool = False):
        """(BM25 scores S [nq, k], rows I [nq, k]) over titles, or over description passages, for the
        focused questions tokenized (indexing.lexical.tokenize)."""
        from indexing.lexical import bm25_search

        return bm25_search(self.bm25_passages if passages else self.bm25, tokens, k)

    def retrieve_many(self, questions: list[str], k: int = 5, mode: str = "hybrid") -> list[list[Hit]]:
        """Top-k products for each question. mode: "hybrid" (titles and descriptions, fused by the learned
        ranker, or by the rule for an index built without one), "titles", "descriptions", "dense" (title
        vectors), "bm25" (title words) or "fuzzy" (title character trigrams)."""
        if not questions:
            return []
        learned = self.fusion == "learned" and mode == "hybrid" and self.ranker is not None
        cands = self.candidates(questions, mode, k, for_ranker=learned)
        if learned:  # one model call for the whole batch
            import numpy as np

            X = [self.features(c) for c in cands]
            S = self.ranker.score(np.concatenate(X)) if X else []
            bounds = np.cumsum([0] + [len(x) for x in X])
        out, unsure = [], []
        for qi, c in enumerate(cands):
            fused = {}
            if learned:
                s = S[bounds[qi]: bounds[qi + 1]]
                rows = c.rows
                order = np.argsort(-s, kind="stable")
                ranking, described, fused = [rows[i] for i in order], None, {rows[i]: float(s[i]) for i in order}
            else:
                ranking, described = route(c)
            hits = [self._hit(c, row, pos, described) for pos, row in enumerate(ranking[:k])]
            for h, row in zip(hits, ranking):
                h.fused = fused.get(row)
            if learned and self.cards is not None and not self._named(hits, ranking, fused, c.question):
                unsure.append((qi, ranking, fused))
            out.append(hits)
        if unsure:  # the second stage, for the questions the fusion is not sure name a product
            self._rerank(cands, unsure, out, k)
        return out

    def _named(self, hits: list[Hit], ranking: list[int], fused: dict, question: str) -> bool:
        """The fusion is sure the question names its best hit: the question holds the best hit's title (its main
        part, a typo forgiven: indexing.lexical.title_in_question; a one-word title in a conversational frame
        covers little of the question), or the hit is matched by its title, ahead of the second by at least the
        calibrated margin (meta.json "catalog_margin"), and either the title holds NAMED_COVERAGE of the
        question's words or the lead is NAMED_MARGIN times the margin; or the title holds every word of the
        question (a series' volumes differ by one word: their lead is small, and a card cannot tell them apart).
        Those questions skip the second stage."""
        from indexing.lexical import title_in_question
        from indexing.multilingual import NAMED_COVERAGE, NAMED_MARGIN, POOL

        margin = self.meta.get("catalog_margin")
        if not hits or margin is None:
            return False
        if title_in_question(question, hits[0].title):  # ... and no other candidate's ("Seahenge" and "Seahenge:
            # A Quest for Life and Death" both: the second stage reads which)
            return not any(title_in_question(question, t) for t in self.docs["title"].take(ranking[1:POOL]))
        if hits[0].match != "title":
            return False
        if hits[0].coverage >= 1.0:
            return True
        lead = fused[ranking[0]] - fused[ranking[1]] if len(ranking) > 1 else float("inf")
        return lead >= margin and (hits[0].coverage >= NAMED_COVERAGE or lead >= NAMED_MARGIN * margin)

    def _rerank(self, cands: list[Candidates], unsure: list, out: list, k: int) -> None:
        """The multilingual second stage (indexing/multilingual.py) for the questions in `unsure` [(question's
        position, the fusion's ranking, its scores)]: the fusion's top POOL and the cards' top POOL, ordered by
        the fusion's score (below its lowest for a product only the cards found) plus WEIGHT[language] times
        the multilingual match; `out`'s hits for them replaced, in place."""
        import numpy as np

        from indexing import multilingual as ml
        from indexing.lexical import is_portuguese

        xq = ml.embed([cands[qi].focused for qi, _, _ in unsure], query=True)
        D, ids = self.cards.search(xq, ml.POOL)
        doc_ids = self.docs["id"].to_numpy()
        card_rows = [[int(r) for r in self.row_of_id[found[found >= 0]] if r >= 0] for found in ids]
        pools = [list(dict.fromkeys(ranking[:ml.POOL] + rows)) for (_, ranking, _), rows in zip(unsure, card_rows)]
        # every pooled product's sentences embedded once for the batch (questions share candidates)
        rows = list(dict.fromkeys(r for pool in pools for r in pool))
        d = self.docs.iloc[rows]
        S = ml.sentence_vectors([ml.sentences(t, ct) for t, ct in zip(d["title"], d["content"])])
        vectors = dict(zip(rows, S))
        for (qi, ranking, fused), x, pool, found in zip(unsure, xq, pools, card_rows):
            c = cands[qi]
            cards = self.cards.reconstruct_batch(doc_ids[pool]) @ x
            matched = ml.match(x, cards, [vectors[r] for r in pool])
            floor = min(fused[r] for r in ranking[:ml.POOL]) - 1.0
            # the Portuguese weight where the fusion read few of the question's words (not for a Portuguese frame
            # around an English title or quote, which the fusion reads)
            pt = is_portuguese(c.question) and bool(out[qi]) and out[qi][0].coverage < ml.READ_COVERAGE
            w = ml.WEIGHT["pt" if pt else "en"]
            score = np.array([fused.get(r, floor) for r in pool]) + w * matched
            order = [pool[i] for i in np.argsort(-score, kind="stable")]
            reranked = _merge(order, ranking)[:k]
            hits = [self._hit(c, row, pos, None) for pos, row in enumerate(reranked)]
            m = dict(zip(pool, matched))
            for h, row in zip(hits, reranked):
                h.fused = fused.get(row)
                h.multilingual = None if row not in m else float(m[row])
                if row in found:
                    h.retrievers = (*h.retrievers, "multilingual")
            out[qi] = hits

    def candidates(self, questions: list[str], mode: str = "hybrid", k: int = CANDIDATES,
                   for_ranker: bool = True) -> list[Candidates]:
        """Every retriever of `mode`, searched once for the whole batch; per question what each found.
        `for_ranker`: also what only the learned fusion's features read (idf-weighted coverage, the cosines
        of every candidate); the rule does without."""
        use = tuple(r for r in MODES[mode] if (self.passages is not None or not r.endswith("_passage"))
                    and (r != "fuzzy" or self.chars is not None)
                    and (r != "dense_passage" or self.passage_index is not None))
        n = max(k, CANDIDATES) if len(use) > 1 else k
        from indexing.embed import embed
        from indexing.lexical import char_grams, tokenize

        focused = [focus(q) for q in questions]  # once: the encoder, BM25 and coverage all read it
        xq = embed(self.model, focused, batch_size=64) if "dense" in use else None
        xp = None  # the passage encoder's question vectors: the same ones when it is the title encoder
        if "dense_passage" in use:
            xp = xq if self.passage_model is self.model and xq is not None else embed(self.passage_model, focused, 64)
        tokens = tokenize(focused)
        res = {}
        if "dense" in use:
            res["dense"] = self.search_dense(xq, n)
        if "bm25" in use:
            res["bm25"] = self.search_bm25(tokens, n)
        if "dense_passage" in use:
            res["dense_passage"] = self.search_passages(xp, max(n, PASSAGE_CANDIDATES))
        if "bm25_passage" in use:
            res["bm25_passage"] = self.search_bm25(tokens, max(n, PASSAGE_CANDIDATES), passages=True)
        if "fuzzy" in use:
            from indexing.lexical import bm25_search

            res["fuzzy"] = bm25_search(self.chars, char_grams(focused), n)
        cover = self._coverage(tokens, res, weighted=for_ranker)
        out = []
        for qi in range(len(questions)):
            ranks, scores, best_passage = {}, {}, {}
            for name, (S, I) in res.items():
                if name.endswith("_passage"):
                    ranks[name], scores[name], best_passage[name] = fold(I[qi], S[qi], self.passage_owner)
                else:
                    ranks[name] = [int(r) for r in I[qi] if r >= 0]
                    scores[name] = {int(r): float(s) for r, s in zip(I[qi], S[qi]) if r >= 0}
            out.append(Candidates(questions[qi], focused[qi], use, ranks, scores, best_passage, *cover[qi]))
        if for_ranker and xq is not None and "dense" in use and len(use) > 1:
            self._cosines(xq, xp, out)
        return out

    def _cosines(self, xq, xp, cands: list[Candidates]) -> None:
        """Every candidate's cosine to the question, by its title and by its best passage (`Candidates.full`),
        not only for those the vector searches returned: the learned fusion compares them all. Vectors are
        read back from the CPU indexes by id (IVF through a hash-table direct map, made once)."""
        import numpy as np

        if self._passages_of is None:
            for index in (self._cpu["titles"], self._cpu.get("passages")):
                _direct_map(index)
            if self.passage_index is not None:  # product row -> its passage rows (contiguous after a sort)
                order = np.argsort(self.passage_owner, kind="stable")
                starts = np.searchsorted(self.passage_owner[order], np.arange(len(self.docs) + 1))
                self._passages_of = (order, starts, self.passages["pid"].to_numpy())
            else:
                self._passages_of = ()
        ids = self.docs["id"].to_numpy()
        for qi, c in enumerate(cands):
            rows = np.asarray(c.rows, dtype=np.int64)
            if not len(rows):
                continue
            T = self._cpu["titles"].reconstruct_batch(ids[rows])
            c.full["dense"] = dict(zip(c.rows, (T @ xq[qi]).tolist()))
            if self._passages_of:
                order, starts, pids = self._passages_of
                prows = [order[starts[r]: starts[r + 1]] for r in rows]
                flat = np.concatenate(prows) if prows else np.zeros(0, dtype=np.int64)
                if not len(flat):
                    continue
                cos = self._cpu["passages"].reconstruct_batch(pids[flat]) @ xp[qi]
                ends = np.cumsum([len(p) for p in prows])
                c.full["dense_passage"] = {r: float(cos[e - len(p): e].max()) for r, p, e in zip(c.rows, prows, ends)
                                           if len(p)}

    def features(self, c: Candidates):
        """The learned fusion's features of one question's candidates (indexing.rank.features)."""
        from indexing.rank import features

        # .take of the rows, not .to_numpy()[rows]: with pandas' arrow strings to_numpy() builds every title
        # of the catalog as a Python object (190 ms a question at 1.37M products)
        return features(c, self.docs["title"].take(c.rows).tolist())

    def _hit(self, c: Candidates, row: int, pos: int, described: bool | None) -> Hit:
        """Hit for product `row` at rank `pos`. `described`: whether the rule ranked by descriptions; None
        (learned fusion): the hit matched by description when its passage covers more of the question than
        its title does (on a tie: the higher cosine), or only passage retrievers found it."""
        from indexing.lexical import fuzzy_coverage

        d = self.docs.iloc[row]
        found = tuple(name for name in c.use if row in c.scores.get(name, ()))
        prow = c.best_passage.get("bm25_passage", {}).get(row, c.best_passage.get("dense_passage", {}).get(row))
        passage = None
        if prow is not None:
            p = self.passages.iloc[prow]
            passage = d["content"][int(p["start"]): int(p["end"])]
        cov_t, cov_p = c.cov_t.get(row, 0.0), c.cov_p.get(row, 0.0)
        if cov_t < 1.0:  # a typo'd name covers its title too (only the hits returned: a few ms a question)
            cov_t = max(cov_t, fuzzy_coverage(c.focused, d["title"]))
        by_title = any(name in found for name in ("dense", "bm25", "fuzzy"))
        if described is None:
            cos_t, cos_p = c.scores.get("dense", {}).get(row, -1.0), c.scores.get("dense_passage", {}).get(row, -1.0)
            described = cov_p > cov_t or (cov_p == cov_t and cos_p > cos_t)
        desc = passage is not None and (described or not by_title)
        return Hit(uid=d["uid"], title=d["title"], content=d["content"], score=1.0 / (RRF_K + pos + 1),
                   dense_score=c.cosine(row), bm25_score=c.scores.get("bm25", {}).get(row), retrievers=found,
                   passage=passage, match="description" if desc else "title", coverage=max(cov_t, cov_p))

    def _coverage(self, tokens, res, weighted: bool) -> list[tuple[dict, dict, dict, dict]]:
        """Per (tokenized) question ({title row: word coverage}, {product row: best passage word coverage}, and
        both idf-weighted when `weighted`, else empty) over every candidate the retrievers found
        (indexing.lexical.coverage)."""
        import numpy as np

        from indexing.lexical import coverage

        out = [({}, {}, {}, {}) for _ in tokens]
        for side, names, bm in ((0, ("dense", "bm25", "fuzzy"), self.bm25),
                                (1, ("dense_passage", "bm25_passage"), getattr(self, "bm25_passages", None))):
            got = [res[n][1] for n in names if n in res]
            if not got or bm is None:
                continue
            I = np.concatenate(got, axis=1)
            kinds = ((side, False), (side + 2, True)) if weighted else ((side, False),)
            for j, w in kinds:
                C = coverage(bm, tokens, I, weighted=w)
                for qi in range(len(tokens)):
                    best = out[qi][j]
                    for r, c in zip(I[qi], C[qi]):
                        if r < 0:
                            continue
                        row = int(self.passage_owner[r]) if side else int(r)
                        if c > best.get(row, -1.0):
                            best[row] = float(c)
        return out

    def support(self, hit: Hit) -> float:
        """The score the "not in the catalog" thresholds compare: `Hit.evidence` (cosine + word coverage),
        or the cosine alone for an index calibrated before coverage was measured (meta has no
        "abstain_score")."""
        return hit.evidence if self.meta.get("abstain_score") == ABSTAIN_SCORE else (hit.dense_score or 0.0)

    def sure(self, hits: list[Hit]) -> bool:
        """The best hit is surely the product asked about: the learned fusion put it ahead of the second by at
        least the margin calibrated at build time (meta.json "catalog_margin", indexing/calibrate.py). An
        index without a learned fusion or a margin is never sure."""
        margin = self.meta.get("catalog_margin")
        if margin is None or not hits or hits[0].fused is None:
            return False
        second = hits[1].fused if len(hits) > 1 and hits[1].fused is not None else float("-inf")
        return hits[0].fused - second >= margin

    def threshold_for(self, hits: list[Hit]) -> float:
        """The calibrated "not in the catalog" threshold for these hits: one when the search went by titles
        (the question names a product), one when it went by descriptions (indexing/calibrate.py)."""
        named = self.meta.get("abstain_threshold", 0.0)
        if hits and hits[0].match == "description":
            return self.meta.get("abstain_threshold_described", named)
        return named

    def abstains(self, hits: list[Hit]) -> bool:
        """Are these hits "not in the catalog"? (`abstains` with this index's threshold and support)"""
        return abstains(hits, self.threshold_for(hits), self.support)

    def retrieve(self, question: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        """Top-k products for one question (see retrieve_many)."""
        return self.retrieve_many([question], k, mode)[0]


def load_index(folder: str | Path, device: str | None = None, model: str | Path | None = None) -> Index:
    return Index(folder, device=device, model=model)


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", nargs="?", help="the question (or use --questions FILE)")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder from `productqa index build`")
    p.add_argument("-k", type=int, default=5, help="hits per question (default 5)")
    p.add_argument("--questions", metavar="FILE",
                   help='JSON lines {"id", "question"} (or CSV id,question, or text): search them all in one process')
    p.add_argument("--mode", choices=tuple(MODES), default="hybrid",
                   help="retrievers: hybrid (titles and descriptions, default), titles, descriptions, dense, bm25")
    p.add_argument("--json", action="store_true",
                   help='one JSON line per question: {"id", "question", "hits": [{"uid", "title", "score", '
                        '"match", "passage", ...}]}')
    p.add_argument("--device", choices=("cpu", "cuda"), help="device for the question encoder")


def main(args: argparse.Namespace) -> int:
    import orjson

    if (args.question is None) == (args.questions is None):
        raise UserError("give a question or --questions FILE (not both)")
    if args.k < 1:
        raise UserError("-k must be >= 1")
    if args.questions:
        from indexing.questions import read_questions

        items, warnings = read_questions(args.questions)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        if not args.question.strip():
            raise UserError("the question is empty")
        items = [{"id": 1, "question": args.question}]
    idx = load_index(args.index, device=args.device)
    results = []
    for s in range(0, len(items), 256):
        batch = items[s: s + 256]
        results += idx.retrieve_many([it["question"] for it in batch], args.k, args.mode)
    for it, hits in zip(items, results):
        if args.json:
            sys.stdout.buffer.write(orjson.dumps({"id": it["id"], "question": it["question"],
                                                  "hits": [h.to_dict() for h in hits]}) + b"\n")
            continue
        if args.questions:
            print(f"\n[{it['id']}] {it['question']}")
        for rank, h in enumerate(hits, start=1):
            text = h.passage if h.match == "description" else h.content
            desc = text if len(text) <= 90 else text[:87] + "..."
            label = "matched description: " if h.match == "description" else ""
            print(f"{rank:>2}. {h.score:.4f}  {h.uid}  {h.title}\n      {label}{desc}")
        if not hits:
            print("no hits")
    return 0
