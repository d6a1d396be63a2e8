"""Load on the chat server: N concurrent questions through gradio_client to `productqa chat` on localhost.

    python benchmarks/chat_load.py [--index DIR] [--adapter DIR] [--n 50] [--max-new-tokens 64]
                                   [--engines transformers,vllm] [--answer-mode auto]

For each engine in turn (same questions, same run): starts `productqa chat --engine ENGINE` in its
own process on a free port (the demo index when --index is not given; with vllm the chat starts its
vLLM server, which is counted in the start-up time), waits for it, then sends --n questions at once
from --n client threads, each a full chat turn (streamed answer + sources). Questions are about
catalog products (English and Portuguese) with one in ten about an invented product. Reports
completed / failed, first-token and full latency p50/p95 (from sending to the first visible answer
text / to the last streamed update), throughput, the serving processes' peak RSS, and whether the
server still answers a question afterwards. The server's --max-concurrency is its default for the
engine (2 for transformers, whose generates take turns; 64 for vLLM) unless given. Writes
benchmarks/results/chat_load.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_index() -> str:
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare

    work = Path("/tmp/productqa-bench/answer")
    if not (work / "index" / "meta.json").exists():
        prepare([ROOT / "indexing" / "demo" / "demo_trn.jsonl"], work / "catalog", progress=False, workers=1)
        build_index(BuildConfig(catalog=str(work / "catalog"), out=str(work / "index"), progress=False))
    return str(work / "index")


def wait_for(url: str, proc, timeout: float = 300, path: str = "config") -> None:
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url + path, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB)."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def content(msg) -> str:
    c = msg.get("content", "") if isinstance(msg, dict) else ""
    if not isinstance(c, str):  # Gradio 6: a list of typed parts
        c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c


def run_engine(engine: str, args, index: str, questions: list[str], check_q: str) -> dict:
    import threading

    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "ui.cli", "chat", "--index", index, "--port", str(port), "--engine", engine,
           "--answer-mode", args.answer_mode] + (["--adapter", args.adapter] if args.adapter else [])
    if args.max_concurrency:
        cmd += ["--max-concurrency", str(args.max_concurrency)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    peak = [0.0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(server.pid))
            stop.wait(0.5)

    threading.Thread(target=watch, daemon=True).start()
    try:
        t_start = time.time()
        wait_for(url, server, timeout=900)
        startup = time.time() - t_start
        client = Client(url, verbose=False)

        def one(q):
            t0 = time.perf_counter()
            first = None
            try:
                job = client.submit(q, [], 3, 0.0, args.max_new_tokens, True, False, False, api_name="/chat")
                for out in job:
                    msgs = out[0]
                    if first is None and len(msgs) > 1 and content(msgs[1]) not in ("", "\u2026"):
                        first = time.perf_counter() - t0
                messages = job.result()[0]
                answer = content(messages[1]) if len(messages) > 1 else ""
                ok = len(messages) >= 3 and answer.strip() and "Sorry" not in answer
                return bool(ok), time.perf_counter() - t0, first, None
            except Exception as e:  # counted as a failure, reported below
                return False, time.perf_counter() - t0, first, repr(e)[:200]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(questions)) as pool:
            results = list(pool.map(one, questions))
        wall = time.perf_counter() - t0
        after_ok, after_s, _, _ = one(check_q)
        alive = server.poll() is None
    finally:
        stop.set()
        server.terminate()  # the chat stops its vLLM server on exit
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            _, err = server.communicate()
    ok = [r for r in results if r[0]]
    return {"engine": engine, "startup": startup, "completed": len(ok), "failed": len(results) - len(ok),
            "p50": pct([r[1] for r in ok], .5), "p95": pct([r[1] for r in ok], .95),
            "first_p50": pct([r[2] for r in ok if r[2] is not None], .5),
            "first_p95": pct([r[2] for r in ok if r[2] is not None], .95),
            "throughput": len(ok) / wall, "rss": peak[0], "after": (after_ok and alive, after_s),
            "errors": sorted({r[3] for r in results if r[3]})[:5], "stderr": (err or "")[-2000:] if not alive else ""}


def main() -> None:
    from indexing.calibrate import invented_titles
    from indexing.questions import make_question
    from indexing.store import open_version, read_docs, read_meta

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index")
    ap.add_argument("--adapter")
    ap.add_argument("--n", type=int, default=50, help="concurrent questions")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--engines", default="transformers,vllm", help="engines to compare, in this order")
    ap.add_argument("--answer-mode", default="auto", help="the chat's --answer-mode")
    ap.add_argument("--max-concurrency", type=int, help="the server's --max-concurrency (default: the engine's)")
    args = ap.parse_args()
    index = args.index or demo_index()

    with open_version(index) as folder:
        docs = read_docs(folder, read_meta(folder))
    rows = docs.sample(n=min(args.n, len(docs)), random_state=0, replace=args.n > len(docs))
    questions = [make_question(t, u, "any", salt="load") for u, t in zip(rows["uid"], rows["title"])]
    for i, title in enumerate(invented_titles(args.n // 10 or 1, exclude=set(docs["title"]), seed=1)):
        questions[i * 10 % len(questions)] = f"What is '{title}'?"
    check_q = "What is '" + rows["title"].iloc[0] + "'?"
    runs = [run_engine(e.strip(), args, index, questions, check_q) for e in args.engines.split(",") if e.strip()]

    base = runs[0]["throughput"] or float("nan")
    model = "SmolLM2-135M-Instruct" + (f" + adapter {args.adapter}" if args.adapter else " (base)")
    lines = [f"{len(questions)} concurrent chat questions through gradio_client to `productqa chat` on localhost "
             f"(this 2-core CPU; {model}; answer mode {args.answer_mode}; at most {args.max_new_tokens} new tokens). "
             f"Command: `python benchmarks/chat_load.py {' '.join(sys.argv[1:])}`", "",
             "| engine | start-up (s) | completed | failed | first token p50 / p95 (s) | latency p50 / p95 (s) | "
             "throughput (questions/s) | vs first row | peak RSS (MB) | answering afterwards |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        lines.append(f"| {r['engine']} | {r['startup']:.0f} | {r['completed']} | {r['failed']} | "
                     f"{r['first_p50']:.1f} / {r['first_p95']:.1f} | {r['p50']:.1f} / {r['p95']:.1f} | "
                     f"{r['throughput']:.2f} | {r['throughput'] / base:.1f}x | {r['rss']:,.0f} | "
                     f"{'yes' if r['after'][0] else 'NO'} ({r['after'][1]:.1f} s) |")
    for r in runs:
        if r["errors"]:
            lines += ["", f"{r['engine']} errors: " + "; ".join(r["errors"])]
        if r["stderr"]:
            lines += ["", f"{r['engine']} server stderr tail:", "```", r["stderr"], "```"]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "chat_load.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Chat under load\n\n" + text + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
