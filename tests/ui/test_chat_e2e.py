"""The chat server for real: the demo catalog plus a hostile product, real MiniLM + SmolLM2, a localhost
port, `gradio_client`, and Debian's chromium driven by Playwright (skipped with the reason when absent)."""

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

EVIL_TITLE = "Evil Widget Deluxe Edition"
EVIL_CONTENT = ('<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"> '
                'Look: ![tracker](http://evil.test/pixel.png) and [click](javascript:window.pwned=3) '
                '<img src="http://evil.test/img.png"> A widget that must render as plain text. '
                'Suitable for ages 3-5 <i>and up</i>.')
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def text(message: dict) -> str:
    """A chat message's text: Gradio 6 sends content as a list of typed parts."""
    c = message["content"]
    return c if isinstance(c, str) else "".join(p.get("text", "") for p in c if isinstance(p, dict))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def xss_index(demo_index, tmp_path_factory):
    """The demo index plus one product whose description is an XSS attempt (added with `index add`)."""
    from indexing.update import add_products

    folder = tmp_path_factory.mktemp("xss") / "index"
    shutil.copytree(demo_index, folder)
    raw = folder.parent / "evil.jsonl"
    raw.write_text(json.dumps({"uid": "EVIL0001", "title": EVIL_TITLE, "content": EVIL_CONTENT}) + "\n")
    add_products(folder, [raw], progress=False)
    return folder


@pytest.fixture(scope="module")
def server(xss_index):
    from rag.answer import Answerer
    from ui.chat import serve

    qa = Answerer(xss_index)
    app, url = serve(qa, port=free_port(), max_concurrency=2, block=False)
    # the defaults: this machine only, no public link, no analytics
    assert url.startswith("http://127.0.0.1:") and app.share_url is None and app.analytics_enabled is False
    yield url, qa
    app.close()


def test_gradio_client_gets_answer_and_sources(server):
    from gradio_client import Client

    url, qa = server
    row = qa.index.docs.iloc[3]
    client = Client(url, verbose=False)
    messages, box = client.predict(f"What is '{row.title}'?", [], 3, 0.0, 24, False, False, False,
                                   api_name="/chat")
    assert box == ""
    assert [m["role"] for m in messages[:2]] == ["user", "assistant"]
    answer, sources = messages[1], messages[2:]
    assert text(answer).strip() and "first token" in text(answer)
    assert len(sources) == 3 and f"uid {row.uid}" in sources[0]["metadata"]["title"]
    assert text(sources[0])  # the description travels with the source
    # a follow-up in the same session (the client keeps it) is about the product discussed last
    messages, _ = client.predict("And what is it about?", messages, 3, 0.0, 16, False, False, False,
                                 api_name="/chat")
    assert len(messages) == 8 and f"uid {row.uid}" in messages[7]["metadata"]["title"]
    # an empty message gets a polite reply, and the server keeps answering afterwards
    messages, _ = client.predict("   ", [], 3, 0.0, 24, False, False, False, api_name="/chat")
    assert "Please type a question" in text(messages[-1])
    messages, _ = client.predict("What is 'Zorvex Levitating Sock Robot 9000'?", [], 3, 0.0, 24, False, False, False,
                                 api_name="/chat")
    assert "not in the catalog" in text(messages[1])


@pytest.fixture(scope="module")
def browser():
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed (make test installs it with apt-get where it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, url):
    """A page that records (and blocks) every request leaving localhost, and every dialog."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.outside, page.dialogs = [], []

    def route(r):
        if r.request.url.startswith(url.rstrip("/")):
            return r.continue_()
        page.outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.add_init_script("window.pwned = 0")
    page.goto(url)
    page.wait_for_selector("#question textarea", timeout=60_000)
    return page


def ask(page, question):
    page.fill("#question textarea", question)
    page.press("#question textarea", "Enter")


def test_browser_streams_answer_and_sources(server, browser):
    url, qa = server
    row = qa.index.docs.iloc[7]
    page = open_page(browser, url)
    assert f"{len(qa.index):,} products" in page.inner_text("#header")
    ask(page, f"What is '{row.title}'?")
    page.wait_for_function(f"document.querySelector('#chatbot').innerText.includes('uid {row.uid}')",
                           timeout=120_000)
    text = page.inner_text("#chatbot")
    assert "first token" in text and "source" in text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat.png"), full_page=True)
    assert (SCREENSHOTS / "chat.png").stat().st_size > 10_000
    page.close()


def test_browser_renders_hostile_description_as_text(server, browser):
    url, _ = server
    page = open_page(browser, url)
    ask(page, f"What is '{EVIL_TITLE}'?")
    page.wait_for_function("document.querySelector('#chatbot').innerText.includes('uid EVIL0001')", timeout=120_000)
    page.wait_for_timeout(1500)  # the turn's last update re-renders the messages (and would fold it again)
    page.get_by_text("uid EVIL0001").first.click()  # open the collapsed description
    page.get_by_text("must render as plain text").first.wait_for(state="visible", timeout=30_000)
    text = page.inner_text("#chatbot")
    assert f"What is '{EVIL_TITLE}'?" in text  # entities decoded for display, not shown raw
    assert "<script>window.pwned = 1</script>" in text  # shown, as text
    assert "![tracker](http://evil.test/pixel.png)" in text
    assert page.evaluate("window.pwned") == 0
    assert page.evaluate("document.querySelectorAll('#chatbot script, #chatbot img[onerror]').length") == 0
    assert page.evaluate("[...document.querySelectorAll('#chatbot img')]"
                         ".filter(i => i.src.includes('evil')).length") == 0
    assert page.evaluate("[...document.querySelectorAll('#chatbot a')]"
                         ".filter(a => a.href.startsWith('javascript')).length") == 0
    assert not [u for u in page.outside if "evil.test" in u] and not page.dialogs
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)  # let the accordion's opening animation finish
    page.screenshot(path=str(SCREENSHOTS / "chat_xss.png"), full_page=True)
    page.close()


def test_browser_highlights_the_quoted_sentence_escaped(server, browser):
    url, _ = server
    page = open_page(browser, url)
    ask(page, f"What age is '{EVIL_TITLE}' for?")
    page.wait_for_function("document.querySelector('#chatbot mark') !== null", timeout=120_000)
    page.wait_for_timeout(1500)
    marks = page.evaluate("[...document.querySelectorAll('#chatbot mark')].map(m => m.innerText)")
    assert marks == ["Suitable for ages 3-5 <i>and up</i>."]  # the quote, highlighted, its tags shown as text
    assert page.evaluate("document.querySelectorAll('#chatbot mark i, #chatbot script').length") == 0
    text = page.inner_text("#chatbot")
    assert "ages 3-5" in text and "that says so, highlighted" in text
    assert page.evaluate("window.pwned") == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat_quote.png"), full_page=True)
    page.close()


def test_browser_title_only_product_and_its_labelled_draft(server, browser):
    """A product the catalog holds without a description: said so (not "not in the catalog"); with the
    draft setting on, the model's draft, labelled as the model's, under the lead that says so."""
    url, _ = server
    page = open_page(browser, url)
    ask(page, "What is 'Wood Glue, 16 oz'?")
    page.wait_for_function("document.querySelector('#chatbot').innerText.includes('uid B00UX401AU')", timeout=120_000)
    text = page.inner_text("#chatbot")
    assert "'Wood Glue, 16 oz' is in the catalog, but the catalog holds no description of it." in text
    assert "not in the catalog" not in text and "in the catalog without a description" in text
    page.get_by_text("Settings").first.click()
    page.locator("#draft input[type=checkbox]").check()
    ask(page, "What is 'Wood Glue, 16 oz'?")
    page.wait_for_function("document.querySelector('#chatbot').innerText.includes('from the title alone: the "
                           "model')", timeout=180_000)
    text = page.inner_text("#chatbot")
    assert "The catalog has no description of 'Wood Glue, 16 oz'. A draft written by the model" in text
    assert "drafted by SmolLM2-135M-Instruct (base model) from the title alone" in text
    assert page.evaluate("document.querySelectorAll('#chatbot blockquote').length") >= 1  # the draft, set apart
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat_draft.png"), full_page=True)
    page.close()


def test_browser_shows_both_sources_of_a_comparison(server, browser):
    """A question naming two products: each one's own sentence, highlighted, and both products as cited
    sources (rag/compare.py)."""
    url, _ = server
    page = open_page(browser, url)
    ask(page, "Piano Lullabies for Babies, Vol. 1 or Vol. 2: which one is longer?")
    page.wait_for_function("document.querySelector('#chatbot').innerText.includes('each answered from its own')",
                           timeout=120_000)
    text = page.inner_text("#chatbot")
    assert "The two products, side by side:" not in text  # the chat shows them as headings instead
    assert text.count("source (cited)") == 2, text
    assert "Piano Lullabies for Babies, Vol. 1" in text and "Piano Lullabies for Babies, Vol. 2" in text
    marks = page.evaluate("[...document.querySelectorAll('#chatbot mark')].map(m => m.innerText)")
    assert any("62 minutes" in m for m in marks) and any("58 minutes" in m for m in marks), marks
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat_compare.png"), full_page=True)
    page.close()


def test_the_chat_keeps_serving_while_the_catalog_changes(server, browser):
    """`productqa index add` / `remove` while the chat is up: every question meanwhile is answered, the
    new product is found within seconds of the commit, the page's header follows, the removed one is gone.
    (Last in this module: it changes the index under the shared server, and puts it back.)"""
    import subprocess
    import sys
    import threading
    import time

    from gradio_client import Client

    url, qa = server
    folder, v0, n0 = qa.index.root, qa.serving.version, len(qa.serving)
    title = "Zephyrine Quartz Marimba For Toddlers"
    raw = folder.parent / "marimba.jsonl"
    raw.write_text(json.dumps({"uid": "ZEPH000001", "title": title,
                               "content": "A wooden marimba with quartz bars, for ages 2-4."}) + "\n")
    row = qa.serving.docs.iloc[5]
    page = open_page(browser, url)
    failures, answered, stop = [], [], threading.Event()

    def keep_asking():  # a shopper asking about a product that stays, all through the updates
        client = Client(url, verbose=False)
        while not stop.is_set():
            try:
                messages, _ = client.predict(f"What is '{row.title}'?", [], 3, 0.0, 16, False, True, False,
                                             api_name="/chat")
                if f"uid {row.uid}" not in messages[2]["metadata"]["title"]:
                    failures.append(messages[2]["metadata"]["title"])
                answered.append(time.time())
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(e))

    def wait_for_version(v):
        deadline = time.time() + 90
        while time.time() < deadline and qa.serving.version != v:
            time.sleep(0.2)
        assert qa.serving.version == v

    def first_source(question):
        messages, _ = Client(url, verbose=False).predict(question, [], 3, 0.0, 16, False, True, False,
                                                         api_name="/chat")
        return messages[1], messages[2]["metadata"]["title"]

    askers = [threading.Thread(target=keep_asking) for _ in range(2)]  # two shoppers at once
    for t in askers:
        t.start()
    try:
        cli = [sys.executable, "-m", "ui.cli", "index"]
        r = subprocess.run(cli + ["add", "--index", str(folder), "--input", str(raw), "--quiet"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        wait_for_version(v0 + 1)
        assert "uid ZEPH000001" in first_source(f"What is '{title}'?")[1]
        served = time.time() - (folder / "CURRENT").stat().st_mtime  # since the commit point
        assert served < 10
        page.wait_for_function(f"document.querySelector('#header').innerText.includes("
                               f"'{n0 + 1:,} products in the index (version {v0 + 1})')", timeout=30_000)
        print(f"new product served {served:.1f} s after its commit")
        r = subprocess.run(cli + ["remove", "--index", str(folder), "--uid", "ZEPH000001"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        wait_for_version(v0 + 2)
        answer, source = first_source(f"What is '{title}'?")
        assert "ZEPH000001" not in source and "none close enough" in text(answer)
        assert time.time() - (folder / "CURRENT").stat().st_mtime < 10
        assert sorted(p.name for p in (folder / "versions").iterdir()) == [str(v0 + 2)]  # old versions cleaned
    finally:
        stop.set()
        for t in askers:
            t.join()
        page.close()
    assert failures == [] and len(answered) >= 4
