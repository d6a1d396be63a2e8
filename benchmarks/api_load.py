"""Load on the HTTP API: concurrent clients over loopback against `productqa api`, and the same load on the
`Answerer` in this process, in one run.

    python benchmarks/api_load.py [--index artifacts/real/index] [--catalog artifacts/real/catalog]
                                  [--adapter DIR] [--clients 50] [--seconds 60] [--max-new-tokens 64]

1. In process (the baseline): --clients threads, each asking the next real-record question through the chat's
   path (`ui.chat.ChatSession.stream`, as the API does) for --seconds: answers/s, p50/p95.
2. Over HTTP: `productqa api` on a free loopback port (its own process, --max-concurrency --clients + 1, the same
   index copy and model), --clients asyncio clients (httpx) each posting the next question to
   /v1/chat/completions (non-streamed) for --seconds: answers/s, p50/p95, failures (anything but 200 or 429),
   429s (there should be none: the clients and the writer's one never exceed the limit). Halfway, this
   process (the index's one writer) runs `index add` of a new product; from its commit, one more client asks
   about it every 0.25 s until an answer cites it: the seconds that took (failures during it counted too).
3. Streaming, alone (no load), alternating one question at a time: the first SSE content chunk of a
   model-generated answer (`"mode": "generate"`) against the chat's first token (`ChatSession.stream`'s first
   piece, in process) for the same questions.

Questions: the catalog's products asked by name in the fine-tuning templates and conversational frames, English
and Portuguese, with one in ten about an invented product (refused). Writes benchmarks/results/api_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

NEW = {"uid": "APILOAD1", "title": "Quasar Kettle Deluxe, 1.7 Litre",
       "content": "A stainless steel kettle that boils a full litre in ninety seconds. Cordless, 360-degree base."}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def questions_for(catalog: str, index, n: int = 400) -> list[str]:
    from indexing.calibrate import invented_titles
    from indexing.catalog import read_catalog
    from indexing.questions import make_chat_questions, make_eval_questions

    docs = read_catalog(catalog)
    docs = docs[docs["uid"].isin(set(index.docs["uid"]))]
    qs = [q["question"] for q in make_eval_questions(docs, n // 2, seed=11) + make_chat_questions(docs, n // 2, 11)]
    for i, title in enumerate(invented_titles(len(qs) // 10, exclude=set(docs["title"]), seed=2)):
        qs[i * 10] = f"What is '{title}'?"
    return qs


def in_process(session, questions, clients: int, seconds: float, max_new_tokens: int) -> dict:
    from rag.answer import Answer

    lat, failed, stop, lock, nxt = [], [], time.perf_counter() + seconds, threading.Lock(), [0]

    def client():
        while time.perf_counter() < stop:
            with lock:
                q = questions[nxt[0] % len(questions)]
                nxt[0] += 1
            t0 = time.perf_counter()
            try:
                final = [p for p in session.stream(q, 3, 0.0, max_new_tokens) if isinstance(p, Answer)]
                assert final
                lat.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted, reported
                failed.append(repr(e)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"n": len(lat), "failed": len(failed), "errors": failed[:3], "throughput": len(lat) / wall,
            "p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "wall": wall, "rejected": 0}


async def over_http(url, questions, clients, seconds, max_new_tokens, add_at, folder) -> dict:
    import httpx

    lat, failed, rejected, nxt = [], [], [0], [0]
    stop = time.perf_counter() + seconds
    added = {}

    async def client(http):
        while time.perf_counter() < stop:
            q = questions[nxt[0] % len(questions)]
            nxt[0] += 1
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/chat/completions", json={
                    "model": "productqa", "max_tokens": max_new_tokens,
                    "messages": [{"role": "user", "content": q}]})
                if r.status_code == 429:
                    rejected[0] += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", 1)))
                elif r.status_code != 200 or "productqa" not in r.json():
                    failed.append(f"{r.status_code} {r.text[:200]}")
                else:
                    lat.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted, reported
                failed.append(repr(e)[:200])

    async def writer(http):
        from indexing.update import add_products

        await asyncio.sleep(add_at)
        raw = Path(folder).parent / "new.jsonl"
        raw.write_text(json.dumps(NEW) + "\n")
        await asyncio.to_thread(add_products, folder, [raw], progress=False)
        committed = time.perf_counter()
        while time.perf_counter() - committed < 60:
            try:
                r = await http.post("/v1/answers", json={"question": f"What is '{NEW['title']}'?"})
                if r.status_code == 200 and r.json().get("cited_uid") == NEW["uid"]:
                    added.update(seconds=time.perf_counter() - committed, version=r.json()["index_version"])
                    return
                if r.status_code not in (200, 429):
                    failed.append(f"new product: {r.status_code} {r.text[:200]}")
            except Exception as e:  # noqa: BLE001
                failed.append(repr(e)[:200])
            await asyncio.sleep(0.25)

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)), writer(http))
        wall = time.perf_counter() - t0
    return {"n": len(lat), "failed": len(failed), "errors": failed[:3], "throughput": len(lat) / wall,
            "p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "wall": wall, "rejected": rejected[0], "added": added}


def first_chunks(url, session, questions, max_new_tokens) -> tuple[list, list, list]:
    """(HTTP first content chunk s, in-process first piece s, origins) per question, alternating."""
    import httpx

    http_s, chat_s, origins = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=300, json={
                "model": "productqa", "stream": True, "mode": "generate", "max_tokens": max_new_tokens,
                "messages": [{"role": "user", "content": q}]}) as r:
            first = None
            for line in r.iter_lines():
                if line.startswith("data: {") and first is None:
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    if delta.get("content"):
                        first = time.perf_counter() - t0
                if line.startswith("data: {") and "productqa" in (event := json.loads(line[6:])):
                    origins.append(event["productqa"]["origin"])
        http_s.append(first)
        t0, first = time.perf_counter(), None
        for piece in session.stream(q, 3, 0.0, max_new_tokens, mode="generate"):
            if first is None and isinstance(piece, str) and piece:
                first = time.perf_counter() - t0
        chat_s.append(first)
    return http_s, chat_s, origins


def main() -> None:
    import httpx
    from chat_load import free_port, wait_for

    from rag.answer import Answerer
    from ui.chat import ChatSession

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", default="artifacts/real/index")
    ap.add_argument("--catalog", default="artifacts/real/catalog")
    ap.add_argument("--adapter")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--stream-questions", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/api_load.md"))
    args = ap.parse_args()
    load0, t_start = os.getloadavg()[0], time.time()
    tmp = Path(tempfile.mkdtemp(prefix="pqa-api-load-"))
    folder = tmp / "index"
    shutil.copytree(args.index, folder, symlinks=True)  # the run adds a product: never to the caller's index
    model = ["--adapter", args.adapter] if args.adapter else []

    qa = Answerer(str(folder), adapter=args.adapter, reload_seconds=0)
    session = ChatSession(qa)
    questions = questions_for(args.catalog, qa.serving)
    base = in_process(session, questions, args.clients, args.seconds, args.max_new_tokens)
    print("in process:", base, flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "api", "--index", str(folder), "--port", str(port),
                             "--max-concurrency", str(args.clients + 1), "--reload-seconds", "1", *model], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "api.log", "w"), text=True)  # access logs
    try:
        wait_for(url + "/", proc, path="healthz")  # its log: the run's folder, api.log
        for q in questions[:3]:  # warm up the server's encoder and model as the in-process run's were
            httpx.post(url + "/v1/chat/completions", timeout=300, json={
                "model": "productqa", "messages": [{"role": "user", "content": q}]})
        api = asyncio.run(over_http(url, questions, args.clients, args.seconds, args.max_new_tokens,
                                    args.seconds / 2, folder))
        print("over HTTP:", api, flush=True)
        stream_qs = [f"Tell me about '{t}'." for t in qa.serving.docs.query("content != ''")["title"]
                     .sample(args.stream_questions, random_state=5)]
        http_s, chat_s, origins = first_chunks(url, session, stream_qs, args.max_new_tokens)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        qa.close()
    ok = [(h, c) for h, c in zip(http_s, chat_s) if h is not None and c is not None]
    h50, c50 = statistics.median([h for h, _ in ok]), statistics.median([c for _, c in ok])
    added = api["added"]
    lines = [f"Command: `python benchmarks/api_load.py {' '.join(sys.argv[1:])}`. {args.clients} clients for "
             f"{args.seconds:.0f} s each way, {len(questions)} real-record questions in turn (one in ten about an "
             f"invented product), at most {args.max_new_tokens} new tokens, SmolLM2-135M-Instruct"
             f"{' + adapter' if args.adapter else ' (base)'}, the embedded engine; this {os.cpu_count()}-CPU machine, "
             f"load average {load0:.1f} at start.", "",
             "| how | answers | failed | 429 | answers/s | vs in process | p50 (s) | p95 (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in (("in process (`ChatSession.stream`, threads)", base), ("HTTP `/v1/chat/completions`", api)):
        lines.append(f"| {name} | {r['n']:,} | {r['failed']} | {r['rejected']} | {r['throughput']:.2f} | "
                     f"{r['throughput'] / base['throughput']:.2f}x | {r['p50']:.2f} | {r['p95']:.2f} |")
    lines += ["", f"`index add` of one product at {args.seconds / 2:.0f} s into the HTTP run: "
              + (f"answered (cited) {added['seconds']:.1f} s after its commit, from index version {added['version']}"
                 if added else "**not answered within 60 s of its commit**") + ".",
              "", f"Streaming, alone, {len(ok)} model-generated answers (`\"mode\": \"generate\"`, origins "
              f"{sorted(set(origins))}), alternating: first SSE content chunk p50 {h50:.3f} s against the chat's "
              f"first token {c50:.3f} s in process: **{h50 / c50:.2f}x**.",
              "", f"{(time.time() - t_start) / 60:.1f} min; load average {os.getloadavg()[0]:.1f} at end."]
    for name, r in (("in process", base), ("HTTP", api)):
        if r["errors"]:
            lines.append(f"\n{name} errors: " + "; ".join(r["errors"]))
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text("# The HTTP API under load\n\n" + text + "\n")


if __name__ == "__main__":
    main()
