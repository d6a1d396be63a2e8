"""Do the two engines give the same greedy answers? transformers (in process) vs vLLM (a server).

    python benchmarks/engine_parity.py [--index DIR] [--adapter DIR] [--n 40] [--max-new-tokens 128]

Asks the same questions (catalog products, English and Portuguese phrasings) in both answer modes
through an Answerer on each engine, greedy, and counts identical answers, identical picks/citations,
and, where the texts differ, the first differing character and the token-level ROUGE-L of the two.
Default: the demo index and the adapter `make demo` trains (artifacts/demo). Writes
benchmarks/results/engine_parity.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def first_diff(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    from rouge_score import rouge_scorer

    from indexing.questions import make_question
    from rag.answer import Answerer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(ROOT / "artifacts" / "demo" / "index"))
    ap.add_argument("--adapter", default=str(ROOT / "artifacts" / "demo" / "adapter"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    local = Answerer(args.index, adapter=args.adapter)
    docs = local.index.docs.head(args.n)
    questions = [make_question(t, u, "any", salt="parity") for u, t in zip(docs["uid"], docs["title"])]
    runs = {}
    for mode in ("verbatim", "generate"):
        runs[("transformers", mode)] = local.ask_many(questions, max_new_tokens=args.max_new_tokens, mode=mode,
                                                      batch_size=1)
    del local
    remote = Answerer(args.index, adapter=args.adapter, engine="vllm")
    for mode in ("verbatim", "generate"):
        runs[("vllm", mode)] = remote.ask_many(questions, max_new_tokens=args.max_new_tokens, mode=mode, batch_size=1)
    remote.close()
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    lines = [f"{len(questions)} questions about the products of {args.index}, adapter {args.adapter} (merged, bf16 "
             f"on both engines), greedy, one question per request, at most {args.max_new_tokens} new tokens, this "
             f"2-core CPU. Command: `python benchmarks/engine_parity.py {' '.join(sys.argv[1:])}`", "",
             "| answer mode | identical answers | same cited entry | same abstention | differing: first difference "
             "at character (median) | differing: ROUGE-L between engines (mean) |", "|---|---:|---:|---:|---:|---:|"]
    examples = []
    for mode in ("verbatim", "generate"):
        a, b = runs[("transformers", mode)], runs[("vllm", mode)]
        same = sum(x.text == y.text for x, y in zip(a, b))
        cited = sum(x.cited == y.cited for x, y in zip(a, b))
        abst = sum(x.abstained == y.abstained for x, y in zip(a, b))
        diffs = [(x, y) for x, y in zip(a, b) if x.text != y.text]
        at = sorted(first_diff(x.text, y.text) for x, y in diffs)
        rl = [scorer.score(x.text, y.text)["rougeL"].fmeasure for x, y in diffs]
        lines.append(f"| {mode} | {same} / {len(a)} | {cited} / {len(a)} | {abst} / {len(a)} | "
                     f"{at[len(at) // 2] if at else '-'} | {sum(rl) / len(rl) if rl else float('nan'):.3f} |")
        for x, y in diffs[:2]:
            i = first_diff(x.text, y.text)
            examples.append(f"- {mode}, \"{x.question}\": transformers `...{x.text[max(0, i - 30): i + 40]!r}` vs "
                            f"vLLM `...{y.text[max(0, i - 30): i + 40]!r}`")
    if examples:
        lines += ["", "Where they differ (first two per mode):", *examples]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "engine_parity.md"
    out.write_text("# Engine parity\n\n" + text + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
