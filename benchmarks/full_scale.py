"""The full catalog on this machine, end to end: prepare -> index build of every product -> load, search,
ANN recall, `ask` and the chat at full size.

    python benchmarks/full_scale.py [--products 0] [--workdir /tmp/productqa-bench] [--build-args "..."]

1. the synthetic trn.json of the real size (2,248,619 lines; benchmarks/prepare.py makes it once)
2. `productqa prepare` of all of it (1,370,282 products)
3. `productqa index build` of `--products` products (0 = all) with `--build-args` (default: int8 MiniLM titles,
   static passages, passages cut by characters, no multilingual stage: its cards are embedded in one piece after
   the shards, ~2.4 h for 2.2M products here, and are not resumable); resumable: when
   it is interrupted, run this again and the build continues from its last finished shard (the table
   then says how many shards an earlier run had embedded)
4. in a child process: index load time and RSS; 1,000 one-at-a-time hybrid searches (p50 / p95); where a
   search's time goes (cProfile over 300 of them, per stage); recall@10 of the built ANN indexes against
   exact search on 200 questions (benchmarks/ann_full.py compares the structures)
5. `productqa ask` on 3 questions (base model, default answer mode): ready time = process wall time -
   the answer's latency, peak RSS, the answers
6. `productqa chat` and `productqa api`: seconds until they serve (the API: an answer to POST /v1/answers), RSS
7. `index add` of 1,000 new products and `index remove` of them (the index ends as built), against the
   build's time and bytes, with how long after each commit a serving process (indexing.follow.Follower,
   polling every second) answers from the new version

Each stage runs in its own process, nothing else running; wall time and peak RSS (the process tree,
polled) per stage. Writes benchmarks/results/full_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
FAST = "--title-encoder minilm-int8 --passage-encoder static --passage-split chars --multilingual none"
# where a search's time goes: (stage, the functions whose cumulative time it is), from cProfile
STAGES = (("question embedding", ("embed",)), ("title vectors (ANN + re-rank)", ("search_dense",)),
          ("passage vectors (ANN + re-rank)", ("search_passages",)), ("BM25 titles + passages", ("search_bm25",)),
          ("BM25 title trigrams", ("bm25_search",)), ("word coverage", ("_coverage",)),
          ("cosines of every candidate", ("_cosines",)), ("the ranker's features", ("features",)),
          ("LightGBM", ("score",)), ("multilingual second stage", ("_rerank",)))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def probe(index: str, n: int, recall_n: int = 200) -> dict:
    """Run in a child process: load, one-at-a-time searches, ANN recall@10 against exact search."""
    import faiss
    import numpy as np
    import psutil

    from indexing.embed import embed
    from indexing.questions import make_description_questions, make_eval_questions
    from indexing.search import focus, load_index
    from indexing.vectors import Reranked

    t0 = time.perf_counter()
    idx = load_index(index)
    out = {"load_s": time.perf_counter() - t0, "rss_loaded": psutil.Process().memory_info().rss}
    qs = [q["question"] for q in make_eval_questions(idx.docs, n // 2, seed=7)]
    qs = (qs[: n // 2] + [q["question"] for q in make_description_questions(idx.docs, n, seed=7)])[:n]
    idx.retrieve(qs[0], k=5)
    t = []
    for q in qs:
        t1 = time.perf_counter()
        idx.retrieve(q, k=5)
        t.append((time.perf_counter() - t1) * 1000)
    out.update(n=len(qs), p50=float(np.percentile(t, 50)), p95=float(np.percentile(t, 95)),
               rss_searched=psutil.Process().memory_info().rss)
    out["stages"] = stage_times(idx, qs[:300])
    sample = [focus(q) for q in qs[:: max(1, len(qs) // recall_n)][:recall_n]]
    out["recall"] = {}
    for name, model, index_ in (("titles", idx.model, idx._cpu["titles"]),
                                ("passages", idx.passage_model, idx._cpu.get("passages"))):
        if not isinstance(index_, Reranked):  # the re-ranked types keep their exact vectors: the ground truth
            continue
        X = index_.exact  # by id: the exact ground truth, searched flat
        exact = faiss.IndexFlatIP(X.shape[1])
        exact.add(np.ascontiguousarray(X))
        xq = embed(model, sample)
        _, I_exact = exact.search(xq, 10)
        exact.reset()
        _, I = index_.search(xq, 10)
        rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, I_exact)])
        out["recall"][name] = {"ntotal": index_.ntotal, "recall@10": float(rec), "nprobe":
                               faiss.extract_index_ivf(index_.index).nprobe, "rerank": index_.rerank}
    return out


def stage_times(idx, qs: list[str]) -> list:
    """[(stage, ms per question)]: cProfile's cumulative time of each STAGES function over one-at-a-time searches."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for q in qs:
        idx.retrieve(q, k=5)
    prof.disable()
    total = (time.perf_counter() - t0) * 1000 / len(qs)
    cum = {}
    for (_, _, fn), (_, _, _, ct, _) in pstats.Stats(prof).stats.items():
        cum[fn] = cum.get(fn, 0.0) + ct
    rows = [(stage, sum(cum.get(f, 0.0) for f in fns) * 1000 / len(qs)) for stage, fns in STAGES]
    return rows + [("whole search (profiled)", total)]


def updates(index: Path, work: Path, cli: list[str]) -> list:
    """Rows for `index add` of 1,000 new products and `index remove` of them, each a fresh process, with the bytes
    the new version wrote and how long a Follower (this process, polling every second) took to serve it."""
    from prepare import run_measured
    from update import files, new_products

    from indexing.follow import Follower
    from indexing.store import current_version, live_folder

    follower = Follower(index, reload_seconds=1.0, log=lambda m: None)
    new = work / "new_1000.jsonl"
    uids = new_products(new, 0, 1000)
    rows = []
    for name, args in (("index add (1,000 new products)", ["index", "add", "--index", str(index), "--input", str(new),
                                                           "--quiet"]),
                       ("index remove (the same 1,000)", ["index", "remove", "--index", str(index), "--uid", *uids])):
        before = files(live_folder(index))
        secs, peak, _ = run_measured(cli + args + ["--no-compact"])
        committed = time.time()
        now = files(live_folder(index))
        wrote = sum(size for ino, size in now.items() if ino not in before)
        v = current_version(index)
        while follower.current.version != v and time.time() - committed < 120:
            time.sleep(0.05)
        rows.append((name, secs, peak, wrote, time.time() - committed, follower.current.version == v))
    follower.close()
    return rows


def serve_until(cli: list[str], command: str, index: Path, ready, timeout: float = 600) -> tuple[float, int, object]:
    """Start `productqa COMMAND --index INDEX --port P`; (seconds until `ready(port)` returns something, the process
    tree's RSS then, what it returned)."""
    import httpx
    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    p = subprocess.Popen(cli + [command, "--index", str(index), "--port", str(port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            if p.poll() is not None:
                raise SystemExit(f"productqa {command} exited before serving")
            try:
                got = ready(port)
                if got is not None:
                    secs = time.perf_counter() - t0
                    proc = psutil.Process(p.pid)
                    return secs, sum(c.memory_info().rss for c in [proc, *proc.children(recursive=True)]), got
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"productqa {command} did not serve within the timeout")
    finally:
        p.terminate()
        p.wait(30)


def chat_page(port: int):
    import httpx

    return True if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200 else None


def api_answer(port: int):
    import httpx

    r = httpx.post(f"http://127.0.0.1:{port}/v1/answers", json={"question": "What is 'Mog's Kittens'?"}, timeout=60)
    return r.json() if r.status_code == 200 else None


def main() -> None:
    from prepare import FULL_LINES, generate, run_measured, synth_file, write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=0, help="products to index (default 0: all)")
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--workdir", default="/tmp/productqa-bench")
    ap.add_argument("--build-args", default=FAST, help=f"`productqa index build` arguments, quoted (default {FAST!r}: "
                    "the fastest encoders within the retrieval bounds, docs/results.md \"Encoders\")")
    ap.add_argument("--fresh", action="store_true", help="rebuild the index even if one is there")
    ap.add_argument("--probe-only", metavar="INDEX", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_only:
        print(json.dumps(probe(args.probe_only, args.searches)))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = synth_file(work, FULL_LINES)
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data.with_suffix(".tmp"), FULL_LINES)
        os.replace(data.with_suffix(".tmp"), data)
    cli = [sys.executable, "-m", "ui.cli"]
    rows = []

    catalog = work / "catalog"
    if not (work / "prepare_row.json").exists():
        secs, peak, _ = run_measured(cli + ["prepare", "--input", str(data), "--out", str(catalog), "--quiet"])
        n_all = json.loads((catalog / "stats.json").read_text())["records"]
        rows.append(("prepare", f"{FULL_LINES:,} lines -> {n_all:,} products", secs, peak, ""))
        (work / "prepare_row.json").write_text(json.dumps(rows[-1]))
    else:  # made by an earlier (interrupted) run of this benchmark: its measurement
        rows.append(tuple(json.loads((work / "prepare_row.json").read_text())))
        n_all = json.loads((catalog / "stats.json").read_text())["records"]

    import pyarrow.parquet as pq

    n = args.products or n_all
    sliced = catalog
    if n < n_all:
        sliced = work / f"catalog_{n}"
        sliced.mkdir(exist_ok=True)
        pq.write_table(pq.read_table(catalog / "catalog.parquet").slice(0, n), sliced / "catalog.parquet")
    index = work / f"index_{n}"
    if args.fresh or not (index / "CURRENT").exists():
        build = cli + ["index", "build", "--catalog", str(sliced), "--out", str(index), "--quiet",
                       *shlex.split(args.build_args)] + (["--fresh"] if args.fresh else [])
        secs, peak, _ = run_measured(build)
        (work / f"build_{n}.json").write_text(json.dumps({"secs": secs, "peak": peak}))
    b = json.loads((work / f"build_{n}.json").read_text())
    meta = json.loads((index / "versions" / (index / "CURRENT").read_text().strip() / "meta.json").read_text())
    size = du(index)
    bs = meta["build_seconds"]
    resumed = meta["build"]["resumed_shards"]
    rows.append(("index build", f"{n:,} products, {meta['passages']['count']:,} passages; titles "
                 f"{meta['embedding_model']['kind']}, passages {meta['passage_encoder']['kind']}", b["secs"], b["peak"],
                 f"{size / 2**30:.2f} GB on disk" + (f"; {resumed} of {meta['build']['shards']} shards embedded by an "
                                                     f"earlier, interrupted run" if resumed else "")))

    secs, peak, out = run_measured([sys.executable, __file__, "--probe-only", str(index),
                                    "--searches", str(args.searches)])
    s = json.loads(out.strip().splitlines()[-1])
    rows.append(("load the index (search process)", f"{n:,} products", s["load_s"], s["rss_loaded"],
                 "models and index loaded; RSS after loading"))
    rows.append(("search, one question at a time", f"{s['n']:,} questions", None, s["rss_searched"],
                 f"p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms (hybrid, k=5)"))

    docs = pq.read_table(sliced / "catalog.parquet", columns=["title"]).slice(0, 3).to_pandas()
    answers = []
    for title in docs["title"]:
        secs, peak, out = run_measured(cli + ["ask", f"What is '{title}'?", "--index", str(index), "--json"])
        ans = json.loads(out.strip().splitlines()[-1])
        answers.append(ans)
        rows.append(("ask (base model, auto mode)", f"What is '{title[:30]}...'?", secs, peak,
                     f"ready in {secs - ans['latency_ms'] / 1000:.1f} s; answer {ans['latency_ms']:.0f} ms, origin "
                     f"{ans['origin']}" + (f", picked by {ans['picked_by']}" if ans.get("picked_by") else "")))
    secs, rss, _ = serve_until(cli, "chat", index, chat_page)
    rows.append(("chat (`productqa chat`)", "until its page is served", secs, rss, "RSS once serving"))
    secs, rss, api = serve_until(cli, "api", index, api_answer)
    rows.append(("api (`productqa api`)", "until POST /v1/answers answers", secs, rss,
                 f"RSS once serving; origin {api['origin']}, index version {api.get('index_version')}"))
    build_bytes = du(index)
    for name, secs, peak, wrote, lag, seen in updates(index, work, cli):
        rows.append((name, f"{secs / b['secs']:.2%} of the build's time, {wrote / build_bytes:.3%} of its bytes",
                     secs, peak, f"wrote {wrote / 2**20:.1f} MB; a Follower served it {lag:.1f} s after the commit"
                     + ("" if seen else " (NOT seen within 120 s)")))

    lines = [f"Synthetic catalog of the real size and token counts (benchmarks/prepare.py, generator v2), this machine "
             f"({os.cpu_count()} CPUs, no GPU), nothing else running. Command: `python benchmarks/full_scale.py"
             f"{' --products ' + str(args.products) if args.products else ''}"
             f"{' --build-args ' + shlex.quote(args.build_args) if args.build_args else ''}`", "",
             "| stage | scope | wall time (s) | peak RSS (MB) | notes |", "|---|---|---:|---:|---|"]
    for stage, scope, secs, peak, note in rows:
        lines.append(f"| {stage} | {scope} | {'-' if secs is None else f'{secs:,.1f}'} | "
                     f"{'-' if peak is None else f'{peak / 2**20:,.0f}'} | {note} |")
    lines += ["", "Index build by stage (meta.json `build_seconds`):", "",
              "| " + " | ".join(bs) + " |", "|" + "---:|" * len(bs),
              "| " + " | ".join(f"{v:,.1f}" for v in bs.values()) + " |"]
    lines += ["", "Where a search's time goes (cProfile over 300 of the questions, one at a time; a stage's time "
              "includes the profiler's overhead):", "", "| stage | ms per question |", "|---|---:|"]
    lines += [f"| {stage} | {ms:.1f} |" for stage, ms in s["stages"]]
    lines += ["", "recall@10 of the built ANN indexes against exact search (200 questions):", "",
              "| vectors | index | vectors | nprobe | re-rank | recall@10 |", "|---|---|---:|---:|---:|---:|"]
    for name, r in s["recall"].items():
        kind = meta["index_type"] if name == "titles" else meta["passages"]["index_type"]
        lines.append(f"| {name} | {kind} | {r['ntotal']:,} | {r['nprobe']} | {r['rerank']} | {r['recall@10']:.3f} |")
    lines += ["", "Answers:", ""]
    lines += [f"- {a['question']} → ({a['origin']}) {a['answer'][:160]}..." for a in answers]
    write_result("full_scale.md", "\n".join(lines))


if __name__ == "__main__":
    main()
