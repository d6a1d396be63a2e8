"""Drafting throughput of `productqa describe`: batched against one product at a time, in-process and vLLM.

    python benchmarks/describe.py [--adapter DIR] [--n 1000] [--n-transformers N] [--single 40] [--batch-size 32]
                                  [--engines transformers,vllm] [--max-new-tokens 160]

The products: `--n` title-only products of the synthetic full-size-shaped catalog (benchmarks/prepare.py's
generator, prepared with `productqa prepare`: the records whose description is empty; their titles are
word soup with the real titles' lengths and token counts, so drafts are as long as the model makes them,
not what a shopper would read). For each engine, in one run with the same loaded model:
  * `describe` over the n products, `--batch-size` per generate in this process (transformers), or
    rag.remote.BATCH per request to a vLLM server this benchmark starts (continuous batching);
  * the first `--single` of them one at a time (batch size 1, same engine): the baseline;
products/s, generated characters/s, the ratio, and the wall time of the whole n. The drafts are written
to a temporary file exactly as `productqa describe` writes them (the same function), so resuming and
JSON writing are inside the timing. Writes benchmarks/results/describe.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def title_only_products(n: int, work: Path) -> list[tuple[str, str]]:
    """n (uid, title) of title-only products of a synthetic catalog (generated and prepared once)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from prepare import generate, synth_file

    from indexing.prepare import prepare

    lines = int(n / 0.38 * 1.1) + 100  # ~38% of the raw lines are title-only
    raw = synth_file(work, lines)
    if not raw.exists():
        generate(raw, lines)
    cat = work / f"catalog_{lines}"
    if not (cat / "stats.json").exists():
        prepare([raw], cat, progress=False)
    t = pq.read_table(cat / "catalog.parquet", columns=["uid", "title", "has_description"])
    t = t.filter(pc.invert(t["has_description"]))
    if t.num_rows < n:
        raise SystemExit(f"only {t.num_rows} title-only products in {cat}")
    return list(zip(t["uid"].to_pylist()[:n], t["title"].to_pylist()[:n]))


def run(qa, products, batch_size: int, max_new_tokens: int) -> dict:
    from rag.describe import describe

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "drafts.jsonl"
        t0 = time.perf_counter()
        r = describe(qa, products, out, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False)
        secs = time.perf_counter() - t0
        chars = sum(len(json.loads(x)["draft"] or "") for x in out.read_text().splitlines())
    return {"n": len(products), "seconds": secs, "per_s": len(products) / secs, "chars_per_s": chars / secs,
            "unusable": r["unusable"], "chars": chars / len(products)}


def main() -> None:
    from rag.answer import Answerer
    from rag.remote import BATCH

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", help="the fine-tuned adapter (default: the base model)")
    ap.add_argument("--index", help="an index for the Answerer (default: the demo index, built once)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-transformers", type=int,
                    help="products for the in-process engine (default --n: on 2 CPU cores 1,000 take most of an hour)")
    ap.add_argument("--single", type=int, default=40, help="products drafted one at a time (the baseline)")
    ap.add_argument("--batch-size", type=int, default=32, help="products per generate in this process")
    ap.add_argument("--engines", default="transformers,vllm")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    args = ap.parse_args()
    # stopped from outside (SIGTERM): exit through `finally`, which stops the vLLM server this run started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    t_start, load0 = time.time(), os.getloadavg()[0]
    work = Path("/tmp/productqa-bench/describe")
    work.mkdir(parents=True, exist_ok=True)
    products = title_only_products(args.n, work)
    index = args.index
    if index is None:
        from indexing.build import BuildConfig, build_index
        from indexing.prepare import prepare

        if not (work / "index" / "CURRENT").exists():
            prepare([ROOT / "indexing" / "demo" / "demo_trn.jsonl"], work / "catalog", progress=False, workers=1)
            build_index(BuildConfig(catalog=str(work / "catalog"), out=str(work / "index"), progress=False))
        index = str(work / "index")
    rows = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        t0 = time.perf_counter()
        qa = Answerer(index, adapter=args.adapter, engine=engine, reload_seconds=0)
        load = time.perf_counter() - t0
        try:
            qa.draft_many([products[0][1]], ["Describe the product x."], 4)  # warm-up
            batch = BATCH if engine == "vllm" else args.batch_size
            single = run(qa, products[: args.single], 1, args.max_new_tokens)
            n = args.n_transformers if engine == "transformers" and args.n_transformers else args.n
            batched = run(qa, products[:n], batch, args.max_new_tokens)
        finally:
            qa.close()
        rows.append((engine, load, batch, single, batched))
        print(engine, f"single {single['per_s']:.3f}/s, batched {batched['per_s']:.3f}/s", flush=True)
        write_report(args, rows, t_start, load0)  # after each engine: a run stopped later keeps what it measured


def write_report(args, rows, t_start: float, load0: float) -> None:
    model = "SmolLM2-135M-Instruct" + (f" + adapter {args.adapter}" if args.adapter else " (base)")
    lines = [f"{model}, drafts of at most {args.max_new_tokens} new tokens, greedy, CPU (2 cores). Products: "
             "title-only products of the synthetic catalog. Command: "
             f"`python benchmarks/describe.py {' '.join(sys.argv[1:])}`", "",
             "| engine | how | products | products/s | draft characters/s | vs one at a time | wall | unusable |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for engine, load, batch, single, batched in rows:
        name = "transformers (in process)" if engine == "transformers" else f"vLLM (server started in {load:.0f} s)"
        lines.append(f"| {name} | one at a time | {single['n']:,} | {single['per_s']:.3f} | "
                     f"{single['chars_per_s']:,.0f} | 1.00x | {single['seconds']:,.0f} s | {single['unusable']} |")
        how = f"{batch} per generate" if engine == "transformers" else f"{batch} per request (continuous batching)"
        lines.append(f"| {name} | batched, {how} | {batched['n']:,} | {batched['per_s']:.3f} | "
                     f"{batched['chars_per_s']:,.0f} | {batched['per_s'] / single['per_s']:.2f}x | "
                     f"{batched['seconds']:,.0f} s | {batched['unusable']} |")
    lines += ["", f"{os.cpu_count()} CPUs, no GPU; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
              f"{(time.time() - t_start) / 60:.1f} min."]
    report = "\n".join(lines)
    print(report)
    out = ROOT / "benchmarks" / "results" / "describe.md"
    out.write_text(report + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
