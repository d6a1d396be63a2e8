"""The demo: the whole pipeline on the shipped demo catalog, reusing what is already built.

    productqa demo [--out artifacts/demo] [--steps 20] [--no-finetune] [--chat [--port 7860]]

prepare (indexing/demo/demo_trn.jsonl) -> export training pairs -> index build -> a search ->
a short 4-bit LoRA fine-tune -> a grounded answer, a detail, an abstention, a product the catalog holds
without a description (said so) and the model's labelled draft of one -> with --chat (what `make demo`
runs), the Gradio chat on the demo index, its URL printed. Each step is skipped when its
output exists and was made from the current inputs (catalog fingerprint, index creation time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEMO_RAW = Path(__file__).resolve().parent.parent / "indexing" / "demo" / "demo_trn.jsonl"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_demo(out: str | Path, steps: int = 20, finetune: bool = True, chat: bool = False,
             host: str = "127.0.0.1", port: int = 7860) -> dict:
    out = Path(out)
    cat, idx, adapter = out / "catalog", out / "index", out / "adapter"
    t0 = time.time()
    prepare_catalog(cat)
    export_pairs(cat, out)
    build_index(cat, idx)
    search(idx)
    if finetune:
        train_adapter(cat, idx, adapter, steps)
    qa = ask(idx, adapter if finetune else None)
    print(f"\ndemo done in {time.time() - t0:.0f} s; artifacts in {out}")
    if chat:
        from ui.chat import serve

        _step("chat: the Gradio page on the demo index (Ctrl-C stops)")
        print(f"same as: productqa chat --index {idx}" + (f" --adapter {adapter}" if finetune else ""))
        serve(qa, host=host, port=port)
    return {"catalog": str(cat), "index": str(idx), "adapter": str(adapter) if finetune else None}


def prepare_catalog(cat: Path) -> None:
    from indexing.catalog import catalog_stats
    from indexing.errors import UserError
    from indexing.prepare import format_stats, prepare

    _step("prepare: clean the demo catalog")
    try:
        made_from = [f["path"] for f in catalog_stats(cat).get("files", [])]
    except UserError:  # no catalog yet
        made_from = []
    if made_from == [str(DEMO_RAW)]:
        print(f"reusing {cat}")
    else:
        print(format_stats(prepare([DEMO_RAW], cat, progress=True)))


def export_pairs(cat: Path, out: Path) -> None:
    from finetune.export import export_pairs

    _step("export: question -> description training pairs")
    for fmt in ("alpaca", "openai"):
        n = export_pairs(cat, fmt, out / f"pairs.{fmt}.jsonl", per_product=2, progress=False)
        print(f"{n:,} {fmt} pairs -> {out / f'pairs.{fmt}.jsonl'}")


def build_index(cat: Path, idx: Path) -> None:
    from indexing.build import BuildConfig
    from indexing.build import build_index as build
    from indexing.catalog import catalog_fingerprint
    from indexing.errors import UserError
    from indexing.index_cli import format_info
    from indexing.store import FORMAT_VERSION, read_meta

    _step("index: embed titles and description passages, FAISS + BM25")
    fp = catalog_fingerprint(cat)
    try:
        index_meta = read_meta(idx) if idx.exists() else None
    except UserError:
        index_meta = None
    if index_meta and index_meta["catalog"]["fingerprint"] == fp and index_meta["format_version"] == FORMAT_VERSION:
        print(f"reusing {idx}")
    else:
        print(format_info(idx, build(BuildConfig(catalog=str(cat), out=str(idx)))))


def search(idx: Path) -> None:
    from indexing.search import load_index

    _step("search")
    index = load_index(idx)
    q = "Qual é a descrição deste produto: piano lullabies for babies, vol. 1?"
    print(q)
    for rank, h in enumerate(index.retrieve(q, k=3), 1):
        print(f"{rank}. {h.title}  (cosine {h.dense_score or 0:.3f}, found by {'+'.join(h.retrievers)})")


def train_adapter(cat: Path, idx: Path, adapter: Path, steps: int) -> None:
    from indexing.errors import UserError
    from indexing.store import read_meta
    from rag.model import read_adapter

    _step(f"finetune: {steps} steps of 4-bit LoRA on CPU (a taste; see docs/finetune.md for real runs)")
    try:
        trained_on = read_adapter(adapter)["data"]["index_created"]
    except UserError:  # none yet, or made by another ProductQA
        trained_on = None
    if trained_on == read_meta(idx)["created"]:
        print(f"reusing {adapter}")
        return
    import shutil

    from finetune.train import TrainConfig
    from finetune.train import finetune as train

    shutil.rmtree(adapter, ignore_errors=True)
    meta = train(TrainConfig(catalog=str(cat), index=str(idx), out=str(adapter), max_steps=steps,
                             max_products=60, batch_size=2, eval_steps=max(steps // 2, 1),
                             save_steps=max(steps // 2, 1), max_val_examples=8))
    print(f"loss {meta['loss_history'][0].get('loss', 0):.3f} -> best validation {meta['best_eval_loss']:.3f}; "
          f"{meta['train_tokens_per_second']:.0f} tokens/s")


def ask(idx: Path, adapter: Path | None):
    """Five questions (what a product is, one detail, one not in the catalog, one without a description, and
    its draft), streamed; the Answerer."""
    from rag.answer import Answer, AnswerConfig, Answerer, drafter

    _step("ask")
    qa = Answerer(AnswerConfig(index=idx, adapter=adapter))
    for question, draft in (("What is 'Piano Lullabies for Babies, Vol. 1'?", False),
                            ("How long is 'Piano Lullabies for Babies, Vol. 1'?", False),
                            ("What is 'Zorvex Levitating Sock Robot'?", False),
                            ("What is 'Wood Glue, 16 oz'?", False),  # in the catalog, without a description
                            ("What is 'Wood Glue, 16 oz'?", True)):  # ... and the model's draft of one
        print(f"Q: {question}" + (" (--draft-missing)" if draft else "") + "\nA: ", end="", flush=True)
        ans = None
        for piece in qa.stream(question, max_new_tokens=96, draft=draft):
            if isinstance(piece, Answer):
                ans = piece
            else:
                print(piece, end="", flush=True)
        if ans.origin == "fallback":
            print(f"\n   (the model's answer was {ans.fallback_reason}; the catalog's description instead:)"
                  f"\n{ans.text}")
        if ans.origin == "quote":  # a detail question: the sentence that says it, word for word
            print(f"\n   (quoted from {ans.cited_source.title}'s description, characters "
                  f"{ans.quote_span[0]}-{ans.quote_span[1]})", end="")
        if ans.origin == "drafted":  # the model's words, never the catalog's: say whose
            print(f"\n   (drafted by {drafter(ans.drafted_by)} from the title alone: not the catalog's words)", end="")
        label = "closest products" if ans.abstained else "sources"
        print(f"\n   {label}: " + "; ".join(f"{h.title} ({h.uid})" for h in ans.sources))
    return qa


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="artifacts/demo", metavar="DIR", help="where the demo's artifacts go")
    p.add_argument("--steps", type=int, default=20, help="fine-tuning steps (default 20: a minute or two on CPU)")
    p.add_argument("--no-finetune", action="store_true", help="skip fine-tuning; answer with the base model")
    p.add_argument("--chat", action="store_true", help="end by serving the Gradio chat on the demo index")
    p.add_argument("--host", default="127.0.0.1", help="chat address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="chat port (default 7860)")


def main(args: argparse.Namespace) -> int:
    run_demo(args.out, steps=args.steps, finetune=not args.no_finetune, chat=args.chat, host=args.host,
             port=args.port)
    return 0
