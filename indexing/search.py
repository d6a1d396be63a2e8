"""Hybrid product search: dense (FAISS) + BM25, fused by reciprocal rank.

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
from functools import lru_cache
from pathlib import Path

from indexing.errors import UserError

RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.); larger = flatter
# Per-retriever RRF weights: dense counts double (benchmarks/retrieval_choices.py: hit@1 0.975 vs 0.974
# at 1:1 on the real records, and it is what keeps typos findable).
WEIGHTS = {"dense": 2.0, "bm25": 1.0}
CANDIDATES = 50  # hits taken from each retriever before fusion


@dataclass
class Hit:
    uid: str
    title: str
    content: str
    score: float  # fused RRF score (higher is better)
    dense_score: float | None = None  # cosine similarity of question and product, if dense found it
    bm25_score: float | None = None  # BM25 score, if BM25 found it
    retrievers: tuple = field(default_factory=tuple)  # which retrievers found it: "dense", "bm25"

    def to_dict(self, with_content: bool = False) -> dict:
        d = {"uid": self.uid, "title": self.title, "score": round(self.score, 6),
             "dense_score": None if self.dense_score is None else round(self.dense_score, 4),
             "bm25_score": None if self.bm25_score is None else round(self.bm25_score, 4),
             "retrievers": list(self.retrievers)}
        if with_content:
            d["content"] = self.content
        return d


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


class Index:
    """A loaded index folder: FAISS + BM25 + documents + the embedding model (loaded once)."""

    def __init__(self, folder: str | Path, device: str | None = None, model: str | Path | None = None):
        import numpy as np

        from indexing.embed import load_encoder, model_identity
        from indexing.store import read_docs, read_faiss, read_meta

        self.folder = Path(folder)
        self.weights = dict(WEIGHTS)
        self.meta = read_meta(self.folder)
        # The model it was built with; if that folder is gone (index copied elsewhere), the default one.
        # Either way its hash must match: vectors from another model would give wrong answers silently.
        built_with = Path(self.meta["embedding_model"]["path"])
        ident = model_identity(model or (built_with if built_with.is_dir() else None))
        if ident["hash"] != self.meta["embedding_model"]["hash"]:
            raise UserError(f"{self.folder}: built with embedding model {self.meta['embedding_model']['name']} "
                            f"(hash {self.meta['embedding_model']['hash'][:12]}), but {ident['name']} "
                            f"(hash {ident['hash'][:12]}) was given: rebuild the index or pass the same --model")
        self.docs = read_docs(self.folder, self.meta)
        self.index = read_faiss(self.folder, self.meta)
        if self.meta["index_type"] == "ivf":
            import faiss

            faiss.extract_index_ivf(self.index).nprobe = self.meta["nprobe"]
        self._to_gpu()
        self.bm25 = self._load_bm25()
        ids = self.docs["id"].to_numpy()
        self.row_of_id = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int64)
        self.row_of_id[ids] = np.arange(len(ids))
        self.model = load_encoder(ident["path"], device)
        self.model.encode(["warm-up"])  # the first call pays one-off setup: keep it out of the first question

    def _to_gpu(self):
        from indexing.build import gpu_available

        if gpu_available():  # same file, searched on the GPU
            import faiss

            self._gpu_res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.index)

    def _load_bm25(self):
        import bm25s

        try:
            bm = bm25s.BM25.load(str(self.folder / "bm25"))
        except Exception as e:
            raise UserError(f"{self.folder}/bm25: corrupt ({type(e).__name__}: {e}) (rebuild the index)") from None
        if int(bm.scores["num_docs"]) != len(self.docs):
            raise UserError(f"{self.folder}/bm25: {bm.scores['num_docs']} documents, docs.parquet has {len(self.docs)}")
        return bm

    def __len__(self) -> int:
        return len(self.docs)

    def embed_questions(self, questions: list[str]):
        from indexing.embed import embed

        return embed(self.model, [focus(q) for q in questions], batch_size=64)

    def search_dense(self, questions: list[str], k: int):
        """(rows I [nq, k], cosine D [nq, k]); -1 where fewer than k hits."""
        xq = self.embed_questions(questions)
        D, ids = self.index.search(xq, min(k, len(self)))
        I = self.row_of_id[ids.clip(0)]
        I[ids < 0] = -1
        return I, D

    def search_bm25(self, questions: list[str], k: int):
        from indexing.lexical import bm25_search

        return bm25_search(self.bm25, [focus(q) for q in questions], k)

    def retrieve_many(self, questions: list[str], k: int = 5, mode: str = "hybrid") -> list[list[Hit]]:
        """Top-k hits for each question. mode: "hybrid" (RRF of both), "dense" or "bm25"."""
        if not questions:
            return []
        n = max(k, CANDIDATES) if mode == "hybrid" else k
        dense = self.search_dense(questions, n) if mode in ("hybrid", "dense") else None
        lex = self.search_bm25(questions, n) if mode in ("hybrid", "bm25") else None
        out = []
        for qi in range(len(questions)):
            ranks, dscore, bscore = {}, {}, {}
            if dense is not None:
                rows = [int(r) for r in dense[0][qi] if r >= 0]
                ranks["dense"] = rows
                dscore = {int(r): float(s) for r, s in zip(dense[0][qi], dense[1][qi]) if r >= 0}
            if lex is not None:
                rows = [int(r) for r in lex[0][qi] if r >= 0]
                ranks["bm25"] = rows
                bscore = {int(r): float(s) for r, s in zip(lex[0][qi], lex[1][qi]) if r >= 0}
            hits = []
            for row, score in rrf(ranks, tiebreak=dscore, weights=self.weights)[:k]:
                d = self.docs.iloc[row]
                found = tuple(name for name, s in (("dense", dscore), ("bm25", bscore)) if row in s)
                hits.append(Hit(uid=d["uid"], title=d["title"], content=d["content"], score=score,
                                dense_score=dscore.get(row), bm25_score=bscore.get(row), retrievers=found))
            out.append(hits)
        return out

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
    p.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid", help="retriever (default hybrid)")
    p.add_argument("--json", action="store_true",
                   help='one JSON line per question: {"id", "question", "hits": [{"uid", "title", "score"}]}')
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
            desc = h.content if len(h.content) <= 90 else h.content[:87] + "..."
            print(f"{rank:>2}. {h.score:.4f}  {h.uid}  {h.title}\n      {desc}")
        if not hits:
            print("no hits")
    return 0
