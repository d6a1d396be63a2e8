"""The `productqa` command: one entry point, one subcommand per stage.

    productqa prepare --input trn.json --out data/catalog
    productqa export --catalog data/catalog --format alpaca --out pairs.jsonl
    productqa <command> --help

Each subcommand lives in its stage's module as `add_arguments(parser)` + `main(args)`; this file only
wires them up. Modules import their heavy libraries inside functions, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS = {
    "prepare": ("indexing.prepare", "clean raw AmazonTitles / Alpaca files into a Parquet catalog"),
    "export": ("finetune.export", "write question->description training pairs (Alpaca or OpenAI chat JSON lines)"),
    "index": ("indexing.index_cli", "build / update (add, remove) / inspect (info) a search index"),
    "search": ("indexing.search", "search an index: hybrid dense + BM25 hits for questions"),
    "examples": ("finetune.examples",
                 "build RAFT training examples (question + retrieved context -> answer), streamed, resumable"),
    "finetune": ("finetune.train", "LoRA-tune a 4-bit Llama on retrieval-augmented question->description examples"),
    "export-model": ("rag.merge", "merge a LoRA adapter into its base model: a plain folder vLLM loads, with metadata"),
    "serve": ("rag.serve", "serve the (merged fine-tuned) model with vLLM's OpenAI-compatible server"),
    "ask": ("rag.answer", "answer one question from the catalog, streamed, with its sources"),
    "batch": ("rag.batch", "answer a file of questions (JSON lines, CSV or text), resumable"),
    "describe": ("rag.describe", "draft descriptions for the products without one (the fine-tuned model, from the "
                                 "title alone), resumable; reviewed drafts go back with `index add`"),
    "chat": ("ui.chat", "serve the Gradio chat: streamed grounded answers with their sources"),
    "api": ("ui.api", "serve ProductQA over HTTP: OpenAI-compatible chat completions, answers, search, products, "
                      "metrics"),
    "demo": ("ui.demo", "run the whole pipeline on the shipped demo catalog (reuses what is built)"),
}
# Commands with sub-commands that live in different stages: name -> {sub: (module, help)}.
GROUPS = {
    "eval": ("measure retrieval / answer quality", {
        "retrieval": ("indexing.evaluate", "hit@1, hit@5, MRR of dense, BM25 and hybrid search on generated questions"),
        "answers": ("rag.evaluate", "ROUGE-L, BLEU, F1, grounding, abstention of base / +RAG / fine-tuned / both"),
        "describe": ("rag.evaluate_drafts", "drafts from titles alone, base vs fine-tuned, on held-out products: "
                                            "ROUGE-L, BLEU, length, invented facts"),
    }),
}


def build_parser() -> argparse.ArgumentParser:
    from indexing import __version__

    parser = argparse.ArgumentParser(
        prog="productqa",
        description="Question answering over a product catalog: prepare -> index -> finetune -> ask/chat.",
    )
    parser.add_argument("--version", action="version", version=f"productqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        _add(sub, name, module, help_)
    for name, (help_, members) in GROUPS.items():
        g = sub.add_parser(name, help=help_, description=help_)
        gsub = g.add_subparsers(dest=f"{name}_command", metavar="WHAT", required=True)
        for member, (module, mhelp) in members.items():
            _add(gsub, member, module, mhelp)
    return parser


def _add(sub, name: str, module: str, help_: str) -> None:
    mod = importlib.import_module(module)
    p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(p)
    p.set_defaults(_main=mod.main)


def main(argv: list[str] | None = None) -> int:
    from indexing.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what a launcher re-runs in each process
    previous = _exit_on_sigterm()
    try:
        return int(args._main(args) or 0)
    except UserError as e:
        print(f"productqa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"productqa {args.command}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm():
    """SIGTERM (a scheduler, `kill`, a container stop) exits as Ctrl-C does: `finally` blocks and atexit
    run, so a vLLM server this process started is stopped (Python's default exit leaves it running) and
    open output files are flushed and closed. Returns the handler it replaced (None: not the main thread,
    where Python allows no handler; tests call main() from threads too)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    return signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    sys.exit(main())
