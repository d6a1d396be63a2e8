"""Benchmark embedding throughput: the product's `indexing.embed.embed` against a plain `model.encode`.

    python benchmarks/embed.py                                # 4,000 titles + 1,000 title+description texts, ~4 min
    python benchmarks/embed.py --threads 1                    # on a machine shared with other CPU work
    python benchmarks/embed.py --titles 1000 --descriptions 200 --no-bm25   # quicker

On a 2-core machine where another process keeps one core busy, torch's default 2 OpenMP threads
run 7-10x slower than 1 thread (they wait on each other); --threads 1 then gives stable numbers
(per core). The paths alternate on --rounds slices of the texts, so load bursts hit all of them.

Same loaded model (`indexing.embed.load_encoder()`: the packaged all-MiniLM-L6-v2), same texts, same
run. The product path is `embed(model, texts, batch_size=64)`: bf16 autocast on CPUs with native
bfloat16 (AVX512-BF16 / AMX), fp32 otherwise, length-sorted batches, normalised output. The baseline
is `model.encode(texts)` with sentence-transformers' defaults (fp32, batch 32). A third, diagnostic
row runs `embed(..., precision="fp32")` to separate the bf16 effect from batching. Every path gets a
small warm-up first. The cosine between the two paths' vectors (mean, min) shows what bf16 costs in
precision.

Texts are built the way the index builds them (`indexing.texts.dense_texts`): product titles (what
the index embeds by default) and "title. description" (`--embed title+content`). By default they are
a seeded random sample of the synthetic catalog that benchmarks/prepare.py writes
(/tmp/productqa-bench/catalog/catalog.parquet), else the demo records (indexing/demo/demo_trn.jsonl,
cleaned with `indexing.prepare.clean`, repeated to the count). The synthetic titles are random
letter strings, which split into about twice the word pieces of real titles, so the real-looking
demo titles are timed as well (--demo-titles) and mean tokens are reported for every set.

Then a full-size extrapolation for the 1,370,282-product catalog: embedding time at the measured
rates, BM25 build time (`indexing.lexical.build_bm25`, measured over all catalog titles when the
synthetic catalog exists, else extrapolated from 100k demo titles) and the IVF build time at 1.4M
read from benchmarks/results/search.md (n/a if benchmarks/search.py has not been run). Prints
Markdown tables and writes benchmarks/results/embed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: `indexing` is imported from this checkout

FULL_PRODUCTS = 1_370_282  # records `productqa prepare` keeps from the full trn.json
CATALOG = "/tmp/productqa-bench/catalog/catalog.parquet"
DEMO = ROOT / "indexing" / "demo" / "demo_trn.jsonl"
SEARCH_MD = ROOT / "benchmarks" / "results" / "search.md"
BM25_FALLBACK_N = 100_000  # demo titles BM25 is timed on when there is no synthetic catalog
WARMUP = 64  # texts per path per set, before timing: first calls pay for allocator and oneDNN setup


def demo_records() -> tuple[list[str], list[str]]:
    """(titles, contents) of the demo file, cleaned like prepare, records with both fields non-empty.
    The demo file has deliberately broken lines (to test prepare); they are skipped here."""
    from indexing.prepare import clean

    titles, contents = [], []
    for line in DEMO.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict) or not isinstance(r.get("title"), str) or not isinstance(r.get("content"), str):
            continue
        t, c = clean(r["title"]), clean(r["content"])
        if t and c:
            titles.append(t)
            contents.append(c)
    return titles, contents


def repeat_to(items: list, n: int) -> list:
    return [items[i % len(items)] for i in range(n)]


def load_texts(source: str, catalog: str, n_titles: int, n_desc: int, seed: int):
    """-> (source description, titles, "title. description" texts, all catalog titles or None)."""
    from indexing.texts import dense_texts

    if source == "auto":
        source = "catalog" if Path(catalog).exists() else "demo"
    if source == "catalog":
        import pyarrow.parquet as pq

        table = pq.read_table(catalog, columns=["title", "content"])
        rows = np.random.default_rng(seed).choice(table.num_rows, size=max(n_titles, n_desc), replace=False)
        sample = table.take(rows)
        titles, contents = sample["title"].to_pylist(), sample["content"].to_pylist()
        all_titles = table["title"].to_pylist()
        desc = f"seeded random sample of the synthetic catalog {catalog} ({table.num_rows:,} products)"
        del table
    else:
        titles, contents = demo_records()
        desc = f"demo records {DEMO.relative_to(ROOT)} ({len(titles)} usable, repeated to the count)"
        titles, contents = repeat_to(titles, max(n_titles, n_desc)), repeat_to(contents, max(n_titles, n_desc))
        all_titles = None
    return (desc, dense_texts(titles[:n_titles], contents[:n_titles], "title"),
            dense_texts(titles[:n_desc], contents[:n_desc], "title+content"), all_titles)


def mean_tokens(model, texts: list[str]) -> float:
    """Mean word pieces per text after the model's truncation (what the forward pass sees)."""
    enc = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    return float(np.mean([len(ids) for ids in enc["input_ids"]]))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_set(model, name: str, texts: list[str], batch_size: int, precision: str, rounds: int) -> list[dict]:
    """Time the baseline, the product path and the fp32 diagnostic on `texts`; rows for the table.

    The texts are cut into `rounds` slices and every path runs on slice 1, then every path on slice
    2, ...: on a machine shared with other work, a burst of load then slows all paths alike instead
    of whichever happened to be running."""
    from indexing.embed import embed

    paths = [
        ("baseline", "plain `model.encode(texts)` (fp32, batch 32)",
         lambda t: model.encode(t, show_progress_bar=False)),  # False is the default at normal log levels
        ("product", f"productqa `embed(model, texts, batch_size={batch_size})` ({precision}, length-sorted)",
         lambda t: embed(model, t, batch_size=batch_size)),
        ("fp32", f"diagnostic: `embed(..., precision=\"fp32\")` (batch {batch_size})",
         lambda t: embed(model, t, batch_size=batch_size, precision="fp32")),
    ]
    for _, _, fn in paths:  # warm-up
        fn(texts[:WARMUP])
    secs = {key: 0.0 for key, _, _ in paths}
    out = {key: [] for key, _, _ in paths}
    step = -(-len(texts) // rounds)
    for s in range(0, len(texts), step):
        for key, _, fn in paths:
            t = time.perf_counter()
            X = fn(texts[s: s + step])
            secs[key] += time.perf_counter() - t
            out[key].append(np.asarray(X, dtype=np.float32))
    vecs = {}
    for key, chunks in out.items():
        X = np.concatenate(chunks)
        vecs[key] = X / np.linalg.norm(X, axis=1, keepdims=True)  # encode() returns unnormalised vectors
    rows = []
    for key, label, _ in paths:
        c = (vecs[key] * vecs["baseline"]).sum(1)
        rows.append({"set": name, "key": key, "path": label, "secs": secs[key], "rate": len(texts) / secs[key],
                     "speedup": secs["baseline"] / secs[key],
                     "cos": None if key == "baseline" else (float(c.mean()), float(c.min()))})
        print(f"  {name}: {label}: {len(texts) / secs[key]:,.1f} texts/s", flush=True)
    return rows


def ivf_build_from_search_md() -> tuple[str, float | None]:
    """IVF build seconds at the largest size in benchmarks/results/search.md, if that file exists
    (the slowest of its synthetic data structures: k-means time depends a little on the data)."""
    if not SEARCH_MD.exists():
        return "n/a: benchmarks/results/search.md not found (run benchmarks/search.py)", None
    found = re.findall(r"^\| ([\d,]+) \| (\w+) \| IVF-Flat \| ([\d,]+) \| ([\d.]+) \|", SEARCH_MD.read_text(), re.M)
    if not found:
        return "n/a: no IVF build row in benchmarks/results/search.md", None
    n_max = max(int(r[0].replace(",", "")) for r in found)
    at_max = [r for r in found if int(r[0].replace(",", "")) == n_max]
    n, _, nlist, secs = max(at_max, key=lambda r: float(r[3]))
    each = ", ".join(f"{r[1]} {float(r[3]):.1f} s" for r in at_max)
    return (f"measured by benchmarks/search.py at {n} synthetic vectors, nlist {nlist} ({each}; the slower is "
            "used)"), float(secs)


def bm25_time(all_titles: list[str] | None) -> tuple[str, float]:
    from indexing.lexical import build_bm25

    if all_titles is not None:
        _, secs = timed(lambda: build_bm25(all_titles))
        scale = FULL_PRODUCTS / len(all_titles)
        how = f"measured over all {len(all_titles):,} synthetic catalog titles"
        return (how if scale == 1 else how + f", scaled x{scale:.3f}"), secs * scale
    titles, _ = demo_records()
    texts = repeat_to(titles, BM25_FALLBACK_N)
    _, secs = timed(lambda: build_bm25(texts))
    return (f"extrapolated linearly from {BM25_FALLBACK_N:,} demo titles (repeated, so a small vocabulary: "
            "optimistic)"), secs * FULL_PRODUCTS / BM25_FALLBACK_N


def fmt_time(secs: float) -> str:
    return f"{secs:,.0f} s ({secs / 60:,.1f} min)" if secs < 3600 * 2 else f"{secs:,.0f} s ({secs / 3600:,.1f} h)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titles", type=int, default=4000, help="titles to embed")
    ap.add_argument("--descriptions", type=int, default=1000, help='"title. description" texts to embed')
    ap.add_argument("--demo-titles", type=int, default=2000,
                    help="real-looking demo titles to embed too (only when the texts come from the synthetic catalog)")
    ap.add_argument("--rounds", type=int, default=4, help="slices the paths alternate on (fairness under load)")
    ap.add_argument("--source", choices=("auto", "catalog", "demo"), default="auto",
                    help="auto = the synthetic catalog if present, else the demo records")
    ap.add_argument("--catalog", default=CATALOG, help="catalog.parquet written by benchmarks/prepare.py")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of the product path")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (default 0: torch's own default, one per core, as the product runs)")
    ap.add_argument("--no-bm25", action="store_true", help="skip the BM25 build timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embed.md"))
    args = ap.parse_args()

    command = shlex.join(["python", "benchmarks/embed.py", *sys.argv[1:]])
    load, t0 = os.getloadavg(), time.perf_counter()
    import torch

    from indexing.embed import load_encoder
    from indexing.runtime import native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)

    precision = "bf16 autocast" if native_bf16("cpu") else "fp32 (no native bf16 on this CPU)"
    model = load_encoder(device="cpu")
    source, titles, descs, all_titles = load_texts(args.source, args.catalog, args.titles, args.descriptions, args.seed)
    sets = {"titles": titles, "title. description": descs}
    if all_titles is not None and args.demo_titles > 0:
        # The synthetic titles are random letters (about twice the word pieces of a real title), so
        # the real-looking demo titles are timed too: their rate is the better guess for real data.
        sets["demo titles (real-looking)"] = repeat_to(demo_records()[0], args.demo_titles)
    tok = {name: mean_tokens(model, texts) for name, texts in sets.items()}
    print(f"texts: {source}; mean tokens " + ", ".join(f"{k} {v:.1f}" for k, v in tok.items()), flush=True)
    rows = [r for name, texts in sets.items()
            for r in bench_set(model, name, texts, args.batch_size, precision, args.rounds)]

    lines = [f"Command: `{command}`", "",
             f"Model: all-MiniLM-L6-v2 (`indexing.embed.load_encoder()`), on CPU: {os.cpu_count()} cores, "
             f"torch {torch.__version__} with {torch.get_num_threads()} threads, native bf16: {native_bf16('cpu')}. "
             f"Load average {load[0]:.1f} at start (other work shared the machine).", "",
             "GPU: not measured — no GPU machine was lent to this task.", "",
             f"Texts: {source}. Built with `indexing.texts.dense_texts` (\"title\" and \"title+content\"). "
             f"Mean tokens are after truncation to {model.max_seq_length}.", "",
             "| texts | count | mean tokens | path | seconds | texts/s | speed-up | cosine to baseline mean / min |",
             "|---|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        cos = "-" if r["cos"] is None else f"{r['cos'][0]:.6f} / {r['cos'][1]:.6f}"
        lines.append(f"| {r['set']} | {len(sets[r['set']]):,} | {tok[r['set']]:.1f} | {r['path']} | {r['secs']:.1f} | "
                     f"{r['rate']:,.1f} | {r['speedup']:.2f}x | {cos} |")

    rate = {(r["set"], r["key"]): r["rate"] for r in rows}
    ivf_how, ivf_secs = ivf_build_from_search_md()
    if args.no_bm25:
        bm_how, bm_secs = "skipped (--no-bm25)", None
    else:
        print("timing BM25 ...", flush=True)
        bm_how, bm_secs = bm25_time(all_titles)
    ext = []
    for name, key, step in [("titles", "product", "embed titles, productqa `embed`"),
                            ("titles", "baseline", "embed titles, plain `encode`"),
                            ("demo titles (real-looking)", "product", "embed titles, productqa `embed`, at the "
                                                                      "real-looking demo titles' rate"),
                            ("title. description", "product", "embed title. description, productqa `embed` "
                                                              "(only with `--embed title+content`)")]:
        if (name, key) in rate:
            ext.append((step, f"{rate[(name, key)]:,.1f} texts/s ({name}, measured above)",
                        FULL_PRODUCTS / rate[(name, key)]))
    ext += [("BM25 over titles (`build_bm25`)", bm_how, bm_secs),
            ("IVF build at 1.4M (`make_faiss`)", ivf_how, ivf_secs)]
    known = sum(p for p in (bm_secs, ivf_secs) if p is not None)
    missing = "" if bm_secs is not None and ivf_secs is not None else " (n/a steps left out)"
    for name in ("titles", "demo titles (real-looking)"):
        if (name, "product") in rate:
            ext.append((f"**index build, default settings: embed titles + IVF + BM25{missing}**",
                        f"sum, embedding at the {name} rate; excludes reading the catalog and writing files",
                        FULL_PRODUCTS / rate[(name, "product")] + known))
    lines += ["", f"Full-size extrapolation, {FULL_PRODUCTS:,} products, this CPU:", "",
              "| step | how | time |", "|---|---|---:|"]
    for step, how, secs in ext:
        lines.append(f"| {step} | {how} | {'n/a' if secs is None else fmt_time(secs)} |")
    lines += ["", f"Benchmark wall time {(time.perf_counter() - t0) / 60:.1f} min; load average "
              f"{os.getloadavg()[0]:.1f} at end."]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
