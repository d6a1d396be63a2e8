"""`productqa api` for real: a `productqa api` process on a free loopback port over the demo index (real MiniLM,
real SmolLM2), called with the real `openai` client and plain HTTP (httpx). No mocked HTTP."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.ui.test_chat_e2e import free_port

pytestmark = pytest.mark.slow
KEY = "test-key-0123"
TILES = "Magnetic Building Tiles, 100-Piece Deluxe Set"  # a demo product: "Ages 3 and up."
ASK = f"What is '{TILES}'?"


def start(index, *flags, key=KEY):
    port = free_port()
    env = {**os.environ, "PRODUCTQA_API_KEY": key or ""}
    log = index.parent / f"api-{port}.log"  # a file, not a pipe: a pipe nobody reads fills and blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "api", "--index", str(index), "--port", str(port),
                             "--reload-seconds", "0.5", *flags], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    proc.log = log
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        if proc.poll() is not None:
            raise AssertionError(f"productqa api exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("productqa api did not start in 120 s")


@pytest.fixture(scope="module")
def api(demo_index, tmp_path_factory):
    """(base URL, index folder, process): a copy of the demo index (the tests add a product to it)."""
    folder = tmp_path_factory.mktemp("api") / "index"
    shutil.copytree(demo_index, folder)
    proc, url = start(folder, "--max-concurrency", "1", "--max-body-bytes", "4096", "--max-question-chars", "500")
    yield url, folder, proc
    proc.terminate()
    proc.wait(timeout=30)


def auth():
    return {"Authorization": f"Bearer {KEY}"}


def test_openai_client_non_streamed_streamed_and_a_follow_up(api):
    from openai import OpenAI

    url, _, _ = api
    client = OpenAI(base_url=url + "/v1", api_key=KEY)
    assert [m.id for m in client.models.list().data] == ["productqa"]
    r = client.chat.completions.create(model="productqa", messages=[
        {"role": "user", "content": ASK}])
    ext = r.model_extra["productqa"]
    assert ext["sources"][0]["title"].startswith("Magnetic Building Tiles, 100-Piece") and ext["index_version"] >= 1
    assert r.choices[0].message.content == ext["answer"] and ext["origin"] in ("catalog", "generated", "quote")
    assert ext["cited_uid"] == ext["sources"][0]["uid"] and "picked_by" in ext

    chunks = list(client.chat.completions.create(model="productqa", stream=True, messages=[
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": r.choices[0].message.content},
        {"role": "user", "content": "And what age is it for?"}]))  # names no product: the one before
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    ext = last.model_extra["productqa"]
    assert ext["sources"][0]["title"].startswith("Magnetic Building Tiles, 100-Piece") and text == ext["answer"]
    assert "3 and up" in text


def test_sse_wire_format_ends_with_done(api):
    url, _, _ = api
    with httpx.stream("POST", url + "/v1/chat/completions", headers=auth(), timeout=120, json={
            "model": "productqa", "stream": True,
            "messages": [{"role": "user", "content": "What is 'Zorvex Levitating Sock Robot'?"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert all(x.startswith("data: ") for x in lines) and lines[-1] == "data: [DONE]"
    final = json.loads(lines[-2][6:])
    assert final["object"] == "chat.completion.chunk" and final["productqa"]["abstained"] is True
    assert final["productqa"]["origin"] == "refused"


def test_answers_search_and_products(api):
    url, _, _ = api
    one = httpx.post(url + "/v1/answers", headers=auth(), json={"question": ASK},
                     timeout=120).json()
    assert one["sources"][0]["title"].startswith("Magnetic Building Tiles, 100-Piece") and one["question"] == ASK
    many = httpx.post(url + "/v1/answers", headers=auth(), timeout=120, json={
        "question": [ASK, "What is 'Zorvex Levitating Sock Robot'?"]}).json()["answers"]
    assert [a["abstained"] for a in many] == [False, True]
    hits = httpx.get(url + "/v1/search", headers=auth(), params={"q": "Magnetic Building Tiles deluxe", "k": 2}).json()
    assert len(hits["hits"]) == 2 and hits["hits"][0]["title"].startswith("Magnetic Building Tiles, 100-Piece")
    uid = hits["hits"][0]["uid"]
    product = httpx.get(url + f"/v1/products/{uid}", headers=auth()).json()
    assert product["uid"] == uid and product["title"] == hits["hits"][0]["title"] and product["content"]
    missing = httpx.get(url + "/v1/products/NO-SUCH-UID", headers=auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "product_not_found"


def test_keys_sizes_and_malformed_bodies(api):
    url, _, _ = api
    assert "access-control-allow-origin" not in httpx.get(  # CORS off without --cors-origin
        url + "/healthz", headers={"Origin": "https://shop.example"}).headers
    assert httpx.get(url + "/docs").status_code == 200 and "/v1/chat/completions" in httpx.get(
        url + "/openapi.json").json()["paths"]  # the OpenAPI page, open like the probes
    no_key = httpx.get(url + "/v1/models")
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/healthz").status_code == 200  # probes need no key
    big = httpx.post(url + "/v1/answers", headers=auth(), json={"question": "x" * 5000})
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    long_q = httpx.post(url + "/v1/answers", headers=auth(), json={"question": "word " * 150})
    assert long_q.status_code == 413 and long_q.json()["error"]["code"] == "question_too_long"
    bad = httpx.post(url + "/v1/chat/completions", headers={**auth(), "Content-Type": "application/json"},
                     content=b"{not json")
    assert bad.status_code == 422 and "error" in bad.json()
    no_messages = httpx.post(url + "/v1/chat/completions", headers=auth(), json={"model": "productqa"})
    assert no_messages.status_code == 422 and no_messages.json()["error"]["param"] == "messages"
    other = httpx.post(url + "/v1/chat/completions", headers=auth(), json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"
    empty = httpx.post(url + "/v1/answers", headers=auth(), json={"question": "   "})
    assert empty.status_code == 400


def test_429_past_the_concurrency_limit_and_metrics_count(api):
    url, _, _ = api
    slow = {"question": f"Tell me about '{TILES}' in your own words.", "mode": "generate", "max_tokens": 96}
    first = {}
    t = threading.Thread(target=lambda: first.update(r=httpx.post(url + "/v1/answers", headers=auth(), json=slow,
                                                                  timeout=300)))
    t.start()
    for _ in range(200):  # until the first holds the only slot
        m = httpx.get(url + "/metrics", headers=auth()).text
        if re.search(r"^productqa_in_flight 1\.0$", m, re.M):
            break
        time.sleep(0.05)
    second = httpx.post(url + "/v1/answers", headers=auth(), json={"question": ASK})
    t.join()
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert first["r"].status_code == 200
    before = metric(url, 'productqa_requests_total{route="/v1/models",status="200"}')
    for _ in range(3):
        httpx.get(url + "/v1/models", headers=auth())
    assert metric(url, 'productqa_requests_total{route="/v1/models",status="200"}') == before + 3
    text = httpx.get(url + "/metrics", headers=auth()).text
    assert 'productqa_requests_total{route="/v1/answers",status="429"}' in text
    assert "productqa_answer_seconds_bucket" in text and "productqa_index_version" in text


def metric(url, name) -> float:
    for line in httpx.get(url + "/metrics", headers=auth()).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_new_index_version_is_served_without_a_restart(api, tmp_path):
    from indexing.update import add_products

    url, folder, _ = api
    before = httpx.get(url + "/readyz").json()
    raw = tmp_path / "new.jsonl"
    raw.write_text(json.dumps({"uid": "APINEW01", "title": "Quasar Kettle Deluxe",
                               "content": "A stainless steel kettle that boils a litre in ninety seconds."}) + "\n")
    add_products(folder, [raw], progress=False)
    committed = time.time()
    while httpx.get(url + "/readyz").json()["index_version"] == before["index_version"]:
        assert time.time() - committed < 10, "the new version was not served within 10 s"
        time.sleep(0.2)
    now = httpx.get(url + "/readyz").json()
    assert now["products"] == before["products"] + 1
    ans = httpx.post(url + "/v1/answers", headers=auth(), json={"question": "What is 'Quasar Kettle Deluxe'?"},
                     timeout=120).json()
    assert ans["sources"][0]["uid"] == "APINEW01" and ans["index_version"] == now["index_version"]
    assert httpx.get(url + "/v1/products/APINEW01", headers=auth()).status_code == 200


def test_a_public_address_without_a_key_is_refused(demo_index):
    env = {k: v for k, v in os.environ.items() if k != "PRODUCTQA_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "ui.cli", "api", "--index", str(demo_index), "--host", "0.0.0.0",
                        "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0 without --api-key" in r.stderr
    assert "Traceback" not in r.stderr


def test_one_port_serves_the_chat_page_and_the_api(demo_index):
    from gradio_client import Client

    proc, url = start(demo_index, "--chat", "--cors-origin", "https://shop.example", key=None)
    try:
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        allowed = httpx.options(url + "/v1/models", headers={"Origin": "https://shop.example",
                                                             "Access-Control-Request-Method": "GET"})
        assert allowed.headers.get("access-control-allow-origin") == "https://shop.example"
        other = httpx.get(url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "productqa"  # loopback: no key needed
        messages, _ = Client(url + "/", verbose=False).predict(  # retrieval only: the page's own path, no model
            ASK, [], 3, 0.0, 24, False, True, False,
            api_name="/chat")
        assert "Magnetic Building Tiles, 100-Piece" in str((messages[2].get("metadata") or {}).get("title"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_access_logs_hold_no_question_text(api):
    url, _, proc = api
    httpx.post(url + "/v1/answers", headers=auth(), json={"question": "What is 'Secret Shopper Question 42'?"},
               timeout=120)
    time.sleep(0.5)
    lines = [json.loads(x) for x in proc.log.read_text().splitlines() if x.startswith("{")]
    answers = [x for x in lines if x["route"] == "/v1/answers"]
    assert answers and {"method", "status", "ms", "client"} <= set(answers[-1])
    assert "Secret Shopper" not in proc.log.read_text()
