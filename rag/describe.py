"""Draft descriptions for the products the catalog holds without one: the catalog team's batch job.

    productqa describe --index data/index --adapter data/adapter --out drafts.jsonl
    productqa describe --index data/index --adapter data/adapter --uids some_uids.txt --out drafts.jsonl
    productqa describe --index data/index --llm-url http://127.0.0.1:8000/v1 --out drafts.jsonl  # a vLLM server

For every product of the index without a description (or the products `--uids FILE` names, one uid a
line), the fine-tuned model writes a description from the title alone (rag.prompt.build_draft_prompt; the
base model without --adapter), in batches: one left-padded generate per batch in this process, or
requests a vLLM server batches continuously (`--engine vllm` starts one, `--llm-url` uses a running one).
Each draft is one JSON line, written and flushed as soon as its batch is done:

    {"uid", "title", "draft", "unusable", "question", "model", "base_hash", "adapter", "adapter_hash",
     "prompt_version", "engine", "created", "reviewed": false}

`draft` is null where the model wrote nothing usable (`unusable` says why: empty, looping). A rerun after a
crash or Ctrl-C drafts only the products not yet in --out (a torn last line is dropped); an --out holding
another model's drafts is refused (--fresh replaces it). Drafts are the model's words, not the catalog's:
a person reviews them, sets "reviewed": true on the good ones (editing the draft as needed), and
`productqa index add --input drafts.jsonl` takes the reviewed ones in as the products' descriptions
(the others are reported as not reviewed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from indexing.errors import UserError
from rag.answer import DRAFT_TOKENS


def draft_question(title: str, lang: str) -> str:
    """The question a draft is asked with: "Describe the product X." (or in Portuguese)."""
    from indexing.questions import TEMPLATES_EN, TEMPLATES_PT

    return (TEMPLATES_PT[3] if lang == "pt" else TEMPLATES_EN[1]).format(title=title)


def read_uids(path: str | Path) -> list[str]:
    """uids from a file: one a line, or JSON lines with a "uid" (a describe or batch output)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                line = str(json.loads(line)["uid"])
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path}:{n}: a JSON line without a \"uid\"") from None
        out.append(line)
    return list(dict.fromkeys(out))


def products_to_draft(docs, uids: list[str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """([(uid, title)] to draft, the given uids the index does not hold): every product without a
    description, or the products `uids` names (with a description or not), in the index's order."""
    if uids is None:
        chosen = docs[docs["content"].str.len() == 0]
        return list(zip(chosen["uid"], chosen["title"])), []
    want = set(uids)
    chosen = docs[docs["uid"].isin(want)]
    return list(zip(chosen["uid"], chosen["title"])), [u for u in uids if u not in set(chosen["uid"])]


def _done(out: Path) -> tuple[set, dict | None]:
    """(uids already drafted in `out`, the first line: who drafted them); a torn last line is cut off."""
    if not out.exists() or out.stat().st_size == 0:
        return set(), None
    data = out.read_bytes()
    if not data.endswith(b"\n"):  # a crash mid-write: the last line is incomplete
        with open(out, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    uids, first = set(), None
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        first = first or rec
        uids.add(rec.get("uid"))
    return uids, first


def describe(qa, products: list[tuple[str, str]], out: str | Path, batch_size: int = 8, lang: str = "en",
             max_new_tokens: int = DRAFT_TOKENS, temperature: float = 0.0, fresh: bool = False,
             progress: bool = True) -> dict:
    """Draft the `products` ([(uid, title)]) not yet in `out` with `qa` (a rag.answer.Answerer), appending a
    JSON line each; returns {"drafted", "unusable", "already_done", "total", "seconds"}."""
    import time

    from tqdm import tqdm

    from indexing.runtime import utc_now
    from rag.prompt import PROMPT_VERSION

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fresh and out.exists():
        out.unlink()
    who = qa.drafted_by()
    done, first = _done(out)
    if first is not None and (first.get("base_hash"), first.get("adapter_hash"), first.get("prompt_version")) != (
            who["base_hash"], who["adapter_hash"], PROMPT_VERSION):
        raise UserError(f"{out}: holds drafts by {first.get('model')} (adapter {first.get('adapter')}), not by "
                        f"{who['model']} (adapter {who['adapter']}): choose another --out, or --fresh to replace it")
    todo = [(u, t) for u, t in products if u not in done]
    engine = "vllm" if qa.engine == "vllm" else "transformers"
    t0, unusable = time.perf_counter(), 0
    with open(out, "a", encoding="utf-8") as f, tqdm(total=len(todo), unit="product", desc="drafts",
                                                      disable=not progress) as bar:
        for s in range(0, len(todo), batch_size):
            chunk = todo[s: s + batch_size]
            questions = [draft_question(t, lang) for _, t in chunk]
            drafts = qa.draft_many([t for _, t in chunk], questions, max_new_tokens, temperature)
            for (uid, title), q, (draft, why) in zip(chunk, questions, drafts):
                unusable += why is not None
                rec = {"uid": uid, "title": title, "draft": draft or None, "unusable": why, "question": q,
                       "model": who["model"], "base_hash": who["base_hash"], "adapter": who["adapter"],
                       "adapter_hash": who["adapter_hash"], "prompt_version": PROMPT_VERSION, "engine": engine,
                       "created": utc_now(), "reviewed": False}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a crash loses at most the batch being drafted
            bar.update(len(chunk))
    return {"drafted": len(todo) - unusable, "unusable": unusable, "already_done": len(products) - len(todo),
            "total": len(products), "seconds": round(time.perf_counter() - t0, 1)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rag.answer import add_answer_arguments

    add_answer_arguments(p, mode=False, reload=False, draft=False)
    p.add_argument("--out", required=True, metavar="FILE", help="JSON lines of drafts (appended; a rerun resumes)")
    p.add_argument("--uids", metavar="FILE",
                   help="draft these products (a uid a line, or JSON lines with \"uid\"); default: every product of "
                        "the index without a description")
    p.add_argument("--limit", type=int, metavar="N", help="at most N products (the first N of those chosen)")
    p.add_argument("--lang", choices=("en", "pt"), default="en",
                   help="the language the model is asked in (default en: 'Describe the product ...')")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="products per generate (default 8; 64 per request with vLLM, which batches them)")
    p.add_argument("--max-new-tokens", type=int, default=DRAFT_TOKENS, metavar="N",
                   help=f"longest draft in tokens (default {DRAFT_TOKENS}: ~600 characters, what drafts are trained "
                        "to)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--fresh", action="store_true", help="replace --out instead of continuing it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from rag.answer import Answerer, answer_config, uses_server

    cfg = answer_config(args)
    if args.batch_size is None:
        from rag.remote import BATCH

        args.batch_size = BATCH if uses_server(cfg) else 8
    if args.batch_size < 1 or args.max_new_tokens < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--batch-size, --max-new-tokens and --limit must be >= 1")
    uids = read_uids(args.uids) if args.uids else None
    if uids is not None and not uids:
        raise UserError(f"{args.uids}: no uids in it")
    qa = Answerer(cfg, progress=not args.quiet)
    try:
        products, unknown = products_to_draft(qa.serving.docs, uids)
        for u in unknown[:20]:
            print(f"warning: {u}: not in the index, skipped", file=sys.stderr)
        if len(unknown) > 20:
            print(f"warning: {len(unknown) - 20:,} more uids not in the index, skipped", file=sys.stderr)
        if args.limit is not None:
            products = products[: args.limit]
        if not products:
            print("nothing to draft: every product of the index has a description" if uids is None
                  else "nothing to draft: none of the given uids is in the index")
            return 0 if uids is None else 1
        r = describe(qa, products, args.out, batch_size=args.batch_size, lang=args.lang,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, fresh=args.fresh,
                     progress=not args.quiet)
    finally:
        qa.close()
    rate = (r["total"] - r["already_done"]) / r["seconds"] if r["seconds"] else 0.0
    print(f"drafted {r['drafted']:,} ({r['unusable']:,} unusable; already done: {r['already_done']:,}) of "
          f"{r['total']:,} products in {r['seconds']:,} s ({rate:.2f} products/s) -> {args.out}; review them, mark "
          f"the good ones \"reviewed\": true, then `productqa index add --input {args.out}`"
          + (f"; {len(unknown):,} uids not in the index" if unknown else ""))
    return 0
