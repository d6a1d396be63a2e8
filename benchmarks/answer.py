"""Answer latency and batch throughput on this machine.

    python benchmarks/answer.py [--index DIR] [--adapter DIR] [--n 16] [--max-new-tokens 64]
                                [--batch-size 8] [--dtype auto|fp32|bf16] [--no-merge] [--name NAME]
                                [--engine transformers|vllm] [--llm-url URL]
                                [--answer-mode auto|verbatim|generate|quote|read] [--questions FILE]

Builds the demo index if none is given. Measures, in one run with the same loaded models:
  * `ask` one question at a time (streaming): time to first token, total latency (p50/p95), and the
    share of the total spent in retrieval;
  * batch answering (`ask_many`, --batch-size questions per generate) against answering the same
    questions one at a time: questions/s and the ratio.
Questions are about catalog products (English and Portuguese phrasings), so none abstain early;
`--questions FILE` takes them from a detail fixture instead (`eval answers --detail`'s JSON, e.g.
tests/rag/data/detail_questions.json: the first --n), for detail answers' latency.
With `--engine vllm` the answers come from a vLLM server this benchmark starts (its start-up is
reported, not timed in the figures), with `--llm-url` from one already running; peak RSS covers
this process and the server it started. Writes benchmarks/results/answer[-NAME].md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    from indexing.questions import make_question
    from rag.answer import Answer, Answerer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index")
    ap.add_argument("--adapter")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"), help="weights when answering")
    ap.add_argument("--no-merge", action="store_true", help="keep the LoRA adapter unmerged")
    ap.add_argument("--answer-mode", default="auto", choices=("auto", "verbatim", "generate", "quote", "read"),
                    help="rag.answer mode (default auto: verbatim for these 'what is X' questions)")
    ap.add_argument("--questions", help="a detail fixture (JSON list of {\"question\", ...}): its questions instead")
    ap.add_argument("--name", help="results file suffix: benchmarks/results/answer-NAME.md")
    ap.add_argument("--engine", default="transformers", choices=("transformers", "vllm"))
    ap.add_argument("--llm-url", help="answer through this running server instead")
    args = ap.parse_args()
    index = args.index
    if index is None:
        from indexing.build import BuildConfig, build_index
        from indexing.prepare import prepare

        work = Path("/tmp/productqa-bench/answer")
        if not (work / "index" / "meta.json").exists():
            prepare([ROOT / "indexing" / "demo" / "demo_trn.jsonl"], work / "catalog", progress=False, workers=1)
            build_index(BuildConfig(catalog=str(work / "catalog"), out=str(work / "index"), progress=False))
        index = str(work / "index")
    t_load = time.perf_counter()
    qa = Answerer(index, adapter=args.adapter, dtype=args.dtype, merge=not args.no_merge, mode=args.answer_mode,
                  engine=args.engine, llm_url=args.llm_url)
    load_s = time.perf_counter() - t_load
    if args.questions:
        import json

        questions = [it["question"] for it in json.loads(Path(args.questions).read_text())][: args.n]
    else:
        docs = qa.index.docs.head(args.n)
        questions = [make_question(t, u, "any", salt="bench") for u, t in zip(docs["uid"], docs["title"])]
    qa.ask(questions[0], max_new_tokens=4)  # warm-up

    ttft, total, share, t0 = [], [], [], time.perf_counter()
    for q in questions:
        ans = None
        for piece in qa.stream(q, max_new_tokens=args.max_new_tokens):
            if isinstance(piece, Answer):
                ans = piece
        ttft.append(ans.first_token_ms)
        total.append(ans.latency_ms)
        share.append(ans.retrieval_ms / ans.latency_ms)
    one_by_one = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in range(0, len(questions), args.batch_size):  # batches in arrival order
        qa.ask_many(questions[s: s + args.batch_size], max_new_tokens=args.max_new_tokens)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()  # all at once: ask_many groups them by expected answer length
    qa.ask_many(questions, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    grouped = time.perf_counter() - t0

    from chat_load import tree_rss_mb

    rss = tree_rss_mb(os.getpid())
    qa.close()
    model = "SmolLM2-135M-Instruct" + (f" + adapter {args.adapter}" + (" (merged)" if qa.merged else " (unmerged)")
                                       if args.adapter else " (base)")
    cmd = " ".join(sys.argv[1:])
    engine = (f"vLLM server at {args.llm_url}" if args.llm_url else "vLLM (bf16; server started here in "
              f"{load_s:.0f} s with the index)" if qa.engine == "vllm" else f"transformers, {qa.llm.dtype}")
    lines = [f"{model}, {engine} on CPU (2 cores), answer mode {qa.mode}, index {index}, {len(questions)} "
             f"questions{' from ' + args.questions if args.questions else ''}, greedy, RSS after the run {rss:,.0f} MB "
             "(this process and its server), at most "
             f"{args.max_new_tokens} new tokens. Command: `python benchmarks/answer.py {cmd}`", "",
             "| measure | p50 | p95 |", "|---|---:|---:|",
             f"| time to first token (ms) | {pct(ttft, .5):,.0f} | {pct(ttft, .95):,.0f} |",
             f"| total latency (ms) | {pct(total, .5):,.0f} | {pct(total, .95):,.0f} |",
             f"| retrieval share of total | {pct(share, .5):.1%} | {pct(share, .95):.1%} |", "",
             "| answering | questions/s | vs one at a time |", "|---|---:|---:|",
             f"| one at a time (`ask`) | {len(questions) / one_by_one:.2f} | 1.00x |",
             f"| batched in arrival order ({args.batch_size} per generate) | {len(questions) / batched:.2f} | "
             f"{one_by_one / batched:.2f}x |",
             f"| batched, grouped by answer length (`ask_many(..., batch_size={args.batch_size})`, what "
             f"`productqa batch` does) | {len(questions) / grouped:.2f} | {one_by_one / grouped:.2f}x |"]
    report = "\n".join(lines)
    print(report)
    print(f"mean retrieval share {statistics.mean(share):.1%}")
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    out = ROOT / "benchmarks" / "results" / (f"answer-{args.name}.md" if args.name else "answer.md")
    out.write_text(report + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
