"""Answer many questions from a file, resumable.

    productqa batch --index data/index --adapter data/adapter --questions q.jsonl --out answers.jsonl
        [-k 3] [--batch-size 8]

Questions: JSON lines {"id": ..., "question": ...}, CSV with columns id,question, or plain text (one
question a line; ids are line numbers), told apart by extension (.jsonl/.json, .csv, anything else
= text). Invalid lines are reported with their line numbers and skipped.
Output: JSON lines {"id", "question", "answer", "abstained", "origin", "fallback_reason", "kind", "quote",
"quote_span", "mode", "picked_by", "index_version", "sources": [{"uid", "title", "score"}], "cited_uid", "latency_ms",
"draft", "drafted_by"}
(origin "no_description": the product is in the catalog without a description; with --draft-missing, origin
"drafted": `draft` is the model's description written from the title alone, `drafted_by` the model that wrote
it, and `answer` says so before it)
(kind/quote/quote_span: detail answers, rag/detail.py; null otherwise; mode: the answer mode that answered;
picked_by: for catalog answers, "model" or "retrieval" (search was sure: no model call);
index_version: the index version the sources come from: a batch that runs while the catalog is updated
answers from each new version once it is loaded, `--reload-seconds`, 0 = one version), each written and
flushed as soon as it is known (refusals right after retrieval, answers as their generate finishes), so
lines come in that order, not the input's; `id` ties them back. Re-running the same command after a crash
or Ctrl-C answers only the ids not yet in --out: nothing is lost or answered twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from indexing.errors import UserError
from indexing.questions import read_questions

CHUNK = 1024  # questions retrieved together; their refusals are written before any of them is generated


def done_ids(out: Path) -> set[str]:
    """Ids already answered in `out` (a torn last line from a crash is ignored and answered again)."""
    if not out.exists():
        return set()
    ids = set()
    for line in out.read_bytes().splitlines():
        try:
            ids.add(json.dumps(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def _drop_torn_tail(out: Path) -> None:
    """A crash mid-write can leave a last line without its newline: cut it so appends stay valid."""
    if not out.exists() or out.stat().st_size == 0:
        return
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        with open(out, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def run_batch(qa, items: list[dict], out: str | Path, k: int = 3, batch_size: int = 8,
              max_new_tokens: int | None = None, progress: bool = True) -> dict:
    """Answer the items not yet in `out`, appending (and flushing) each answer as soon as it is known:
    refusals right after retrieval, generated answers as their batch finishes."""
    from tqdm import tqdm

    from rag.answer import DEFAULT_MAX_NEW_TOKENS

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(out)
    done = done_ids(out)
    todo = [it for it in items if json.dumps(it["id"]) not in done]
    with open(out, "a", encoding="utf-8") as f, tqdm(total=len(todo), unit="question", desc="answers",
                                                      disable=not progress) as bar:
        for s in range(0, len(todo), CHUNK):
            chunk = todo[s: s + CHUNK]
            for i, a in qa.iter_answers([it["question"] for it in chunk], k=k, batch_size=batch_size,
                                        max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS):
                it = chunk[i]
                d = a.to_dict()
                rec = {"id": it["id"], "question": it["question"], "answer": a.text, "abstained": a.abstained,
                       "origin": a.origin, "fallback_reason": a.fallback_reason, "kind": d["kind"], "quote": d["quote"],
                       "quote_span": d["quote_span"], "mode": d["mode"], "picked_by": d["picked_by"],
                       "index_version": d["index_version"], "sources": d["sources"],
                       "cited_uid": d["cited_uid"], "latency_ms": round(a.latency_ms, 1), "draft": d["draft"],
                       "drafted_by": d["drafted_by"]}
                if a.notice:
                    rec["notice"] = a.notice
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()  # a crash loses no finished answer (the OS holds the page; a torn line is repaired)
                bar.update(1)
            os.fsync(f.fileno())
    return {"answered": len(todo), "already_done": len(items) - len(todo), "total": len(items)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rag.answer import add_answer_arguments

    add_answer_arguments(p)
    p.add_argument("--questions", required=True, metavar="FILE", help=".jsonl {id, question} | .csv id,question | text")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON lines answers (appended; re-run resumes)")
    p.add_argument("-k", type=int, default=3, help="retrieved products per question (default 3)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="questions per generate call (default 8; 64 per request with vLLM, which batches them)")
    p.add_argument("--max-new-tokens", type=int, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from rag.answer import Answerer, answer_config, uses_server

    cfg = answer_config(args)
    if args.batch_size is None:
        from rag.remote import BATCH

        args.batch_size = BATCH if uses_server(cfg) else 8
    if args.batch_size < 1 or args.k < 1:
        raise UserError("--batch-size and -k must be >= 1")
    items, warnings = read_questions(args.questions)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not items:
        raise UserError(f"{args.questions}: no valid questions")
    qa = Answerer(cfg, progress=not args.quiet)
    r = run_batch(qa, items, args.out, k=args.k, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                  progress=not args.quiet)
    print(f"answered {r['answered']:,} (already done: {r['already_done']:,}) of {r['total']:,} -> {args.out}")
    return 0
