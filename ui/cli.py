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
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    from indexing.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except UserError as e:
        print(f"productqa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"productqa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
