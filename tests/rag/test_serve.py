"""`productqa serve` (a real vLLM server: `make vllm` installs it in .venv-vllm) and answering through it.

The server is started once for the module with the CLI, exactly as a user starts it, on a free
localhost port with an API key; the tests answer through the OpenAI API, `ask --llm-url`, the chat,
and 20 concurrent requests; one kills it mid-answer and starts it again; the last stops it with
SIGTERM. Skipped (with the reason) where vLLM is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "test-key-7f3a"


def _vllm_or_skip():
    from rag.serve import vllm_python

    if vllm_python() is None:
        pytest.skip("vLLM is not installed here (`make vllm` creates .venv-vllm; it failed or was not run)")


@pytest.fixture(scope="module")
def merged(smol_adapter, tmp_path_factory):
    from rag.merge import export_model

    out = tmp_path_factory.mktemp("merged") / "model"
    export_model(smol_adapter[0], out, progress=False)
    return out


def start_cli_server(model: Path, port: int, log: Path):
    """`productqa serve` as a user runs it; returns (process, its JSON line) once it prints its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve", "--model", str(model), "--port", str(port),
                             "--api-key", KEY, "--log", str(log)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()  # blocks until the server answers (or the command fails)
    if not line:
        raise AssertionError(f"productqa serve exited: {proc.wait()} {proc.stderr.read()[-2000:]}")
    return proc, json.loads(line)


class CliServer:
    def __init__(self, model, log):
        from rag.serve import free_port

        self.model, self.log, self.port = model, log, free_port()
        self.proc, self.info = start_cli_server(model, self.port, log)
        self.url = self.info["url"]

    def restart(self):
        self.proc, self.info = start_cli_server(self.model, self.port, self.log)


@pytest.fixture(scope="module")
def server(merged, tmp_path_factory):
    _vllm_or_skip()
    s = CliServer(merged, tmp_path_factory.mktemp("serve") / "vllm.log")
    yield s
    for pid in (s.proc.pid, s.info["pid"]):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def remote_qa(server, demo_index):
    from rag.answer import Answerer

    return Answerer(demo_index, llm_url=server.url, api_key=KEY, mode="generate")


@pytest.fixture(scope="module")
def local_qa(demo_index, smol_adapter):
    from rag.answer import Answerer

    return Answerer(demo_index, adapter=smol_adapter[0], mode="generate")


def demo_questions(demo_index, n):
    from indexing.search import load_index

    titles = list(load_index(demo_index).docs["title"])[:n]
    return [f"What is '{t}'?" for t in titles]


def test_merged_model_says_what_made_it_and_a_stale_prompt_version_is_refused(merged, smol_adapter, tmp_path):
    import shutil

    from indexing.errors import UserError
    from rag.merge import MODEL_META, adapter_fingerprint, read_model_meta
    from rag.prompt import PROMPT_VERSION
    from rag.serve import model_to_serve

    meta = read_model_meta(merged)
    assert meta["prompt_version"] == PROMPT_VERSION and meta["dtype"] == "bf16"
    assert meta["adapter"]["fingerprint"] == adapter_fingerprint(Path(smol_adapter[0]))
    assert meta["base_model"]["name"] == "SmolLM2-135M-Instruct"
    assert model_to_serve(model=merged) == merged
    old = tmp_path / "old"
    shutil.copytree(merged, old)
    (old / MODEL_META).write_text(json.dumps({**meta, "prompt_version": PROMPT_VERSION - 1}))
    with pytest.raises(UserError, match="prompt version"):
        model_to_serve(model=old)


def test_serve_answers_the_openai_api_only_with_the_key_and_only_on_localhost(server):
    import httpx
    import openai

    assert server.info["models"] == ["productqa"] and server.url.startswith("http://127.0.0.1:")
    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    r = client.completions.create(model="productqa", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert r.choices[0].text.strip()
    for path in ("/models", "/completions"):
        no_key = httpx.post(server.url + path, json={"model": "productqa", "prompt": "x"}) if path == "/completions" \
            else httpx.get(server.url + path)
        assert no_key.status_code == 401, (path, no_key.status_code)
    wrong = httpx.get(server.url + "/models", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True).stdout
    assert listening.strip() and all(" 127.0.0.1:" in line for line in listening.strip().splitlines()), listening


def test_each_concurrent_request_gets_its_own_answer(server):
    """20 prompts at once, echoed back: each response starts with its own prompt (no mix-ups)."""
    import openai

    client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    prompts = [f"Request {i:02d}: describe product number {i * 7919 % 1000}." for i in range(20)]

    def one(p):
        r = client.completions.create(model="productqa", prompt=p, max_tokens=8, temperature=0,
                                      extra_body={"echo": True})
        return r.choices[0].text

    with ThreadPoolExecutor(20) as pool:
        out = list(pool.map(one, prompts))
    assert all(o.startswith(p) for o, p in zip(out, prompts))


@pytest.mark.long  # 100+ s of the embedded engine generating; benchmarks/engine_parity.py measures the same
def test_engines_agree(server, remote_qa, local_qa, demo_index):
    """Greedy answers of the embedded engine (transformers, bf16 merged) and of vLLM (bf16) on demo
    questions, in both answer modes."""
    qs = demo_questions(demo_index, 8)
    same = {}
    for mode in ("verbatim", "generate"):
        a = [x.text for x in local_qa.ask_many(qs, mode=mode)]
        b = [x.text for x in remote_qa.ask_many(qs, mode=mode)]
        same[mode] = sum(x == y for x, y in zip(a, b))
    assert same["verbatim"] == len(qs), same
    assert same["generate"] >= len(qs) - 2, same  # bf16 kernels differ; measured: docs/results.md


def test_ask_answers_through_the_server_with_the_key_only(server, remote_qa, demo_index):
    """`productqa ask --llm-url` prints the answer the server gives; a wrong key is a one-line refusal."""
    qs = demo_questions(demo_index, 1)
    out = subprocess.run([sys.executable, "-m", "ui.cli", "ask", qs[0], "--index", str(demo_index), "--llm-url",
                          server.url, "--api-key", KEY, "--json", "--answer-mode", "generate"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["answer"] == remote_qa.ask(qs[0]).text
    bad = subprocess.run([sys.executable, "-m", "ui.cli", "ask", qs[0], "--index", str(demo_index), "--llm-url",
                          server.url, "--api-key", "wrong"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "refused the API key" in bad.stderr and "Traceback" not in bad.stderr


def test_batch_answers_through_the_server(server, remote_qa, demo_index, tmp_path):
    qs = demo_questions(demo_index, 6) + ["What is 'Zorvex Levitating Sock Sorting Machine'?"]
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps({"id": i, "question": q}) + "\n" for i, q in enumerate(qs)))
    out = tmp_path / "a.jsonl"
    r = subprocess.run([sys.executable, "-m", "ui.cli", "batch", "--index", str(demo_index), "--questions", str(src),
                        "--out", str(out), "--llm-url", server.url, "--api-key", KEY, "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == list(range(len(qs)))
    assert rows[len(qs) - 1]["abstained"]
    want = remote_qa.ask_many(qs[:6], mode="auto")
    assert [rows[i]["answer"] for i in range(6)] == [a.text for a in want]


def test_twenty_concurrent_answers_match_their_own_questions(remote_qa, demo_index):
    qs = demo_questions(demo_index, 20)
    alone = {q: remote_qa.ask(q, mode="verbatim") for q in qs}
    with ThreadPoolExecutor(20) as pool:
        together = dict(zip(qs, pool.map(lambda q: remote_qa.ask(q, mode="verbatim"), qs)))
    for q in qs:
        assert together[q].question == q and together[q].text == alone[q].text
        assert [h.uid for h in together[q].sources] == [h.uid for h in alone[q].sources]


def test_chat_streams_through_the_server(remote_qa, demo_index):
    from ui.chat import ChatSession

    q = demo_questions(demo_index, 1)[0]
    updates = [msgs for msgs, _ in ChatSession(remote_qa).respond(q, [], max_new_tokens=64)]
    contents = [m[1]["content"] for m in updates]
    assert len(set(contents)) >= 3  # placeholder, pieces as they arrive, the final answer
    assert "Sorry" not in contents[-1]


def test_server_dying_mid_answer_gets_an_apology_and_the_chat_recovers(server, remote_qa, demo_index):
    """SIGKILL to vLLM (its whole process group) while the chat streams an answer: that turn ends (no
    hung page), the next one apologises, and once the server is back the chat answers again."""
    from ui.chat import MODEL_DOWN_REPLY, ChatSession, escape_md

    chat = ChatSession(remote_qa)
    q = demo_questions(demo_index, 1)[0]
    vllm_pid = server.info["pid"]
    threading.Timer(0.3, lambda: os.killpg(vllm_pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    cut = [msgs for msgs, _ in chat.respond(q, [], max_new_tokens=320)][-1]
    assert time.monotonic() - t0 < 60 and cut[1]["content"] != "…"  # ended: an answer, or the apology
    time.sleep(0.5)
    down = [msgs for msgs, _ in chat.respond(q, [], max_new_tokens=32)][-1]
    assert down[1]["content"] == escape_md(MODEL_DOWN_REPLY)
    assert server.proc.wait(30) == 2  # `productqa serve` noticed and said so
    assert "stopped by itself" in server.proc.stderr.read()
    server.restart()
    back = [msgs for msgs, _ in chat.respond(q, [], max_new_tokens=32)][-1]
    assert "Sorry" not in back[1]["content"] and back[2:]  # an answer, with its sources


def test_sigterm_stops_the_server_and_its_workers(server):
    import httpx

    groups = [str(server.proc.pid), str(server.info["pid"])]  # productqa serve's, and vLLM's
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(60) == 0
    assert "vLLM server stopped" in server.proc.stderr.read()
    time.sleep(1)
    for g in groups:
        left = subprocess.run(["pgrep", "-g", g], capture_output=True, text=True).stdout.split()
        assert not left, f"processes left in group {g}: {left}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/models", timeout=2)
