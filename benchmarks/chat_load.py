"""Load on the chat server: N concurrent questions through gradio_client to `productqa chat` on localhost.

    python benchmarks/chat_load.py [--index DIR] [--adapter DIR] [--n 50] [--max-new-tokens 64]
                                   [--max-concurrency 2]

Starts `productqa chat` in its own process on a free port (the demo index when --index is not
given), waits for it, then sends --n questions at once from --n client threads, each a full chat turn
(streamed answer + sources). Questions are about catalog products (English and Portuguese) with one in
ten about an invented product. Reports completed / failed, latency p50/p95 (from sending to the last
streamed update), throughput, and whether the server still answers a question afterwards. Writes
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


def wait_for(url: str, proc, timeout: float = 300) -> None:
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the chat server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url + "config", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the chat server did not answer within {timeout:.0f} s")


def main() -> None:
    from gradio_client import Client

    from indexing.calibrate import invented_titles
    from indexing.questions import make_question
    from indexing.store import read_docs, read_meta

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index")
    ap.add_argument("--adapter")
    ap.add_argument("--n", type=int, default=50, help="concurrent questions")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-concurrency", type=int, default=2, help="the server's --max-concurrency")
    args = ap.parse_args()
    index = args.index or demo_index()

    docs = read_docs(Path(index), read_meta(Path(index)))
    rows = docs.sample(n=min(args.n, len(docs)), random_state=0, replace=args.n > len(docs))
    questions = [make_question(t, u, "any", salt="load") for u, t in zip(rows["uid"], rows["title"])]
    for i, title in enumerate(invented_titles(args.n // 10 or 1, exclude=set(docs["title"]), seed=1)):
        questions[i * 10 % len(questions)] = f"What is '{title}'?"

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "ui.cli", "chat", "--index", index, "--port", str(port),
           "--max-concurrency", str(args.max_concurrency)] + (["--adapter", args.adapter] if args.adapter else [])
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        t_start = time.time()
        wait_for(url, server)
        startup = time.time() - t_start
        client = Client(url, verbose=False)

        def one(q):
            t0 = time.perf_counter()
            try:
                messages, _ = client.predict(q, [], 3, 0.0, args.max_new_tokens, True, False, api_name="/chat")
                answer = messages[1]["content"] if len(messages) > 1 else ""
                if not isinstance(answer, str):  # Gradio 6: a list of typed parts
                    answer = "".join(p.get("text", "") for p in answer if isinstance(p, dict))
                ok = len(messages) >= 3 and answer.strip() and "went wrong" not in answer
                return bool(ok), time.perf_counter() - t0, None
            except Exception as e:  # counted as a failure, reported below
                return False, time.perf_counter() - t0, repr(e)[:200]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.n) as pool:
            results = list(pool.map(one, questions))
        wall = time.perf_counter() - t0
        after_ok, after_s, _ = one("What is '" + rows["title"].iloc[0] + "'?")
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()

    ok = [s for good, s, _ in results if good]
    errors = [e for good, _, e in results if not good and e]
    model = "SmolLM2-135M-Instruct" + (f" + adapter {args.adapter}" if args.adapter else " (base)")
    lines = [f"{len(questions)} concurrent chat questions through gradio_client to `productqa chat` on localhost "
             f"(this 2-core CPU; {model}; at most {args.max_new_tokens} new tokens; server --max-concurrency "
             f"{args.max_concurrency}; server start-up {startup:.0f} s). Command: `python benchmarks/chat_load.py "
             f"{' '.join(sys.argv[1:])}`", "",
             "| completed | failed | latency p50 (s) | latency p95 (s) | throughput (questions/s) | answering afterwards |",
             "|---:|---:|---:|---:|---:|---|",
             f"| {len(ok)} | {len(results) - len(ok)} | {pct(ok, .5):.1f} | {pct(ok, .95):.1f} | "
             f"{len(ok) / wall:.2f} | {'yes' if after_ok and alive else 'NO'} ({after_s:.1f} s) |"]
    if errors:
        lines += ["", "Errors: " + "; ".join(sorted(set(errors))[:5])]
    if not alive:
        lines += ["", "Server stderr tail:", "```", (err or "")[-2000:], "```"]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results" / "chat_load.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Chat under load\n\n" + text + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
