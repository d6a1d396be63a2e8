"""The Gradio chat: ask about products, watch a grounded answer stream in, see where it came from.

    productqa chat --index data/index --adapter data/adapter            # http://127.0.0.1:7860
    productqa chat --index data/index --auth alice:secret --max-concurrency 4
    PRODUCTQA_AUTH=alice:secret productqa chat --index data/index --host 0.0.0.0

The models load once per process and every browser session shares them (`rag.answer.Answerer`).
With the embedded engine, questions that arrive while a generate runs go together in the next one
(rag/batching.py); with `--engine vllm` or `--llm-url` a vLLM server batches them continuously. Each
answer is followed by its sources (title, uid, cosine, the description collapsed). A follow-up that
names no product ("and how long is it?") is answered about the last product discussed. Settings:
retrieved products, temperature, new tokens, adapter on/off, retrieval only, and drafts: a product the
catalog holds without a description is answered as such, or (checkbox on) with a description the model
drafts from its title, labelled as the model's writing.

Safety: binds 127.0.0.1 unless --host says otherwise; no public share link unless --share; Gradio
analytics off. Every string shown (questions, titles, descriptions, answers) goes through
`escape_md`, so catalog text holding `<script>`, `<img onerror>` or markdown links/images renders
as text and never runs or loads anything.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import sys
import time
from pathlib import Path

from indexing.errors import UserError
from rag.answer import DEFAULT_MAX_NEW_TOKENS, add_answer_arguments, drafter
from rag.batching import MAX_BATCH

log = logging.getLogger("productqa.chat")

# Characters that start HTML or markdown syntax anywhere (tags, entities, links, images, emphasis,
# code, headings, tables), written as decimal entities: the renderer shows the character but never
# parses it. Decimal, not hex: Gradio's markdown renderer shows `&#x27;` literally. Characters that
# are syntax only in some places (list markers, URLs) are escaped only there, so screen readers
# (which get the raw message as its aria-label) see few entities.
_MD_ALWAYS = re.compile(r"[<>&\\`*_\[\]#|~]")
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=]|\d+(?=[.)]))", re.MULTILINE)  # lists, setext headings
_AUTOLINK = re.compile(r"(?i)(\w)(://)|\b(www)(\.)")  # bare URLs GFM would turn into links
# Words that point back at something said before (English and Portuguese).
_FOLLOWUP_WORDS = re.compile(
    r"\b(it|its|it's|this|that|these|those|they|them|one|ele|ela|eles|elas|isso|isto|dele|dela|deles|"
    r"esse|essa|este|esta|desse|dessa|deste|desta|nele|nela|o mesmo|a mesma)\b", re.IGNORECASE)
MAX_TURNS = 8  # earlier questions of a conversation read to find the product a follow-up is about
EMPTY_REPLY = "Please type a question about a product, for example: What is 'Mog's Kittens'?"
ERROR_REPLY = "Sorry, something went wrong while answering this question. Please try again."
MODEL_DOWN_REPLY = ("Sorry, the answering model is not reachable right now. Please try again in a moment: "
                    "your question was not lost, it is above.")


def escape_md(text: str) -> str:
    """Text that Gradio's markdown renderer shows literally: HTML escaped, markdown syntax neutralised."""
    def ent(c: str) -> str:
        return f"&#{ord(c)};"

    text = _MD_ALWAYS.sub(lambda m: ent(m.group(0)), str(text))
    text = _MD_LINE_START.sub(lambda m: m.group(1) + "".join(ent(c) for c in m.group(2)), text)
    return _AUTOLINK.sub(lambda m: (m.group(1) + ent(":") + "//") if m.group(2) else (m.group(3) + ent(".")), text)


def highlight(text: str, span) -> str:
    """`text` escaped, with text[span[0]:span[1]] inside <mark> (the only markup that is not escaped)."""
    s, e = span
    return f"{escape_md(text[:s])}<mark>{escape_md(text[s:e])}</mark>{escape_md(text[e:])}"


def is_followup(question: str) -> bool:
    """Does the question refer back ("it", "this one", "isso") rather than name a product?"""
    return bool(_FOLLOWUP_WORDS.search(question)) and "'" not in question and '"' not in question


def source_messages(hits: list, abstained: bool, cited: int | tuple | None = None) -> list[dict]:
    """One collapsed chat message per source: title, uid and cosine in its header, the description inside.
    `cited`: the rank the answer cites, or the ranks (a comparison cites both products)."""
    out = []
    cited = set(cited) if isinstance(cited, tuple) else {cited}
    for rank, h in enumerate(hits, 1):
        label = "closest, not a match" if abstained else ("source (cited)" if rank in cited else "source")
        score = f"cosine {h.dense_score:.3f}" if h.dense_score is not None else "found by keywords"
        matched = " · matched its description" if h.match == "description" else ""
        title = f"{label} {rank}: {escape_md(h.title)} · uid {escape_md(h.uid)} · {score}{matched}"
        body = escape_md(h.content) or "(no description)"
        if matched and h.passage:  # the passage that matched, first
            body = f"_matched passage:_ “{escape_md(h.passage)}”\n\n{body}"
        out.append({"role": "assistant", "content": body,
                    "metadata": {"title": title, "status": "done"}})
    return out


def example_questions(index, n: int = 2) -> list[str]:
    """Questions about products that are in this index (English and Portuguese), a follow-up, one about a
    product without a description (when the index holds one), and one about a product that is not."""
    docs = index.docs
    described = docs[docs["content"] != ""]
    titles, m = (described if len(described) else docs)["title"], len(described if len(described) else docs)
    picks = [titles.iloc[i * m // n] for i in range(n)] if m else ["Mog's Kittens"]
    title_only = docs["title"][docs["content"] == ""]
    return [f"What is '{picks[0]}'?",
            f"Qual é a descrição deste produto: {picks[-1]}?",
            "And what is it about?",
            *([f"What is '{title_only.iloc[0]}'?"] if len(title_only) else []),
            "What is 'Zorvex Levitating Sock Robot'?"]


class ChatSession:
    """What one chat turn does, independent of Gradio (tested directly): returns updated messages."""

    def __init__(self, qa):
        self.qa = qa

    def respond(self, message, history, k=3, temperature=0.0, max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                use_adapter=True, retrieval_only=False, last=None, draft=None):
        """Yield (messages, last product) as the answer streams; `last` is the product follow-ups refer to."""
        from indexing.questions import sanitize_question
        from rag.answer import Answer

        history = list(history or [])
        try:
            q, notice = sanitize_question(message)
        except UserError:
            history += [{"role": "user", "content": escape_md(message or "")},
                        {"role": "assistant", "content": escape_md(EMPTY_REPLY)}]
            yield copy.deepcopy(history), last
            return
        history.append({"role": "user", "content": escape_md(q)})
        answer = {"role": "assistant", "content": "…"}
        history.append(answer)
        yield copy.deepcopy(history), last
        try:
            k = max(1, min(int(k), 20))
            hits, prompt_q, index, retrieval_ms = self.retrieve(q, k, last)
            if retrieval_only:
                close = not self.qa.should_abstain(hits, index)
                answer["content"] = (f"Retrieval only: the {len(hits)} closest products"
                                     + ("." if close else ", none close enough to be the product asked about."))
                history += source_messages(hits, abstained=not close)
                yield copy.deepcopy(history), (hits[0] if close and hits else last)
                return
            text, final = "", None
            for piece in self.stream(q, k, temperature, max_new_tokens, use_adapter, last, draft,
                                     retrieved=(hits, prompt_q, index, retrieval_ms)):
                if isinstance(piece, Answer):
                    final = piece
                    break
                text += piece
                answer["content"] = escape_md(text)
                yield copy.deepcopy(history), last
            answer["content"] = answer_markdown(final, notice)
            history += source_messages(final.sources, final.abstained,
                                       (1, 2) if final.origin == "compare" else final.cited)
            yield copy.deepcopy(history), (final.sources[0] if final.sources and not final.abstained else last)
        except Exception as e:  # one failed request must never take the server down
            from rag.remote import RemoteError

            if isinstance(e, RemoteError):  # the model server is down or restarting: the next turn retries it
                log.warning("chat request failed: %s", e)
                answer["content"] = escape_md(MODEL_DOWN_REPLY)
            else:
                log.exception("chat request failed: %r", q[:200])
                answer["content"] = escape_md(ERROR_REPLY)
            yield copy.deepcopy(history), last

    def stream(self, q: str, k: int = 3, temperature=0.0, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, use_adapter=True,
               last=None, draft=None, retrieved=None, mode=None):
        """One turn's answer to the (sanitized) question `q` in a conversation whose last product is `last`: its
        text pieces as they come, then the final `Answer` (its timings counting the retrieval). A follow-up
        that names no product is about `last`; "how does it compare with X?" puts `last` beside X. `retrieved`:
        `retrieve`'s result when the caller already has it; `mode`: an answer mode (default: the Answerer's).
        The chat and the HTTP API (ui/api.py) answer here."""
        from rag.answer import Answer
        from rag.compare import followup_pair

        hits, prompt_q, index, retrieval_ms = retrieved or self.retrieve(q, k, last)
        pair = followup_pair(q, hits, last, index) if prompt_q == q else None  # "how does it compare with X?"
        for piece in self.qa.stream(prompt_q, k=k, max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                                    hits=hits, use_adapter=bool(use_adapter), index=index, mode=mode,
                                    draft=None if draft is None else bool(draft),
                                    compare=prompt_q == q, pair=pair):  # a follow-up: the last product
            if isinstance(piece, Answer):
                piece.retrieval_ms += retrieval_ms
                piece.latency_ms += retrieval_ms
                if piece.first_token_ms is not None:
                    piece.first_token_ms += retrieval_ms
                yield piece
                return
            yield piece

    def last_product(self, questions: list[str], k: int = 3):
        """The product a conversation's earlier questions leave it at (what the chat keeps in its state between
        turns), for a client that sends the whole conversation each time (the HTTP API's `messages`): each
        question in turn, a follow-up keeping the product before it, a product found replacing it. One
        retrieval for all of them."""
        from indexing.questions import sanitize_question

        qs = []
        for question in questions[-MAX_TURNS:]:
            try:
                qs.append(sanitize_question(question)[0])
            except UserError:
                continue
        if not qs:
            return None
        index = self.qa.serving
        last = None
        for q, hits in zip(qs, self.qa.retrieve(qs, k, index)):
            if not self._follows(q, hits, last, index) and hits and not self.qa.should_abstain(hits, index):
                last = hits[0]
        return last

    def _follows(self, q: str, hits: list, last, index) -> bool:
        """Is `q` about `last`? It refers back ("it", "isso") and finds nothing, or only a product it does not
        name ("and how long is it?" finds *The Long Kill* by one word)."""
        from indexing.lexical import title_in_question

        return last is not None and is_followup(q) and (not hits or self.qa.should_abstain(hits, index)
                                                         or not title_in_question(q, hits[0].title))

    def retrieve(self, q: str, k: int, last=None):
        """(hits, the question as the model sees it, the index version, retrieval ms): a follow-up that
        names no product ("and how long is it?") is about `last`, the product discussed last."""
        t0 = time.perf_counter()
        index = self.qa.serving  # one index version for the whole answer, even if a new one goes live
        hits = self.qa.retrieve([q], k, index)[0]
        retrieval_ms = (time.perf_counter() - t0) * 1000  # measured here, so stream() does not count it
        if self._follows(q, hits, last, index):
            return [last], f"{q} (about '{last.title}')", index, retrieval_ms
        return hits, q, index, retrieval_ms

def answer_markdown(final, notice: str | None = None) -> str:
    """A finished answer as the chat shows it: the cited product as a heading, the text, where it came
    from (a highlighted quote, the catalog, a fallback and why), and how long it took."""
    body = escape_md(final.text)
    if final.origin == "drafted":  # the lead says what it is; the model's draft set apart as a quote block
        lead = final.text[: len(final.text) - len(final.draft)].strip()
        body = f"{escape_md(lead)}\n\n> {escape_md(final.draft)}"
    if final.origin == "compare":  # each product as a heading, what its own description says, highlighted
        parts = []
        for side, src in zip(final.compared, final.sources):
            part = f"**{escape_md(side.title)}**\n\n{escape_md(side.text)}"
            if side.quote_span:
                part += "\n\n" + highlight(src.content, side.quote_span)
            parts.append(part)
        body = "\n\n".join(parts) + "\n\n_two products, each answered from its own catalog description_"
    elif final.abstained:
        body = f"**{body}**"
    elif final.cited_source is not None:  # the model's citation line, shown as a heading
        body = f"**{escape_md(final.cited_source.title)}** ({final.cited})\n\n{body}"
    if final.origin == "compare":
        pass
    elif final.quote_span and final.cited_source is not None:  # the quote, highlighted in its source
        body += "\n\n" + highlight(final.cited_source.content, final.quote_span)
        body += "\n\n_the sentence of the catalog's description that says so, highlighted_"
    elif final.origin == "not_stated":
        body += "\n\n_the product is in the catalog; its description does not hold this detail_"
    elif final.origin == "no_description" and final.fallback_reason:
        body += (f"\n\n_the product is in the catalog without a description; the model's draft was unusable "
                 f"({escape_md(final.fallback_reason)})_")
    elif final.origin == "no_description":
        body += "\n\n_the product is in the catalog without a description_"
    elif final.origin == "drafted":
        body += (f"\n\n_drafted by {escape_md(drafter(final.drafted_by))} from the title alone: the model's words, "
                 "not the catalog's; check them before relying on them_")
    elif final.origin == "catalog" and final.picked_by == "retrieval":
        body += "\n\n_the catalog's description of the best match: search was sure, no model call_"
    elif final.origin == "catalog":
        body += "\n\n_the catalog's description of the product the model picked_"
    if final.origin == "fallback" and final.mode == "read":  # answered by the rule reader instead
        body += (f"\n\n_the model's quote was unusable ({escape_md(final.fallback_reason)}): "
                 f"this answer was read without it_")
    elif final.origin == "fallback":  # the model's own words were unusable: say so
        body += (f"\n\n_the model's answer was {escape_md(final.fallback_reason)}: this is the "
                 f"catalog's description instead_")
    timing = f"{final.latency_ms / 1000:.1f} s"
    if final.first_token_ms:
        timing = f"first token {final.first_token_ms / 1000:.2f} s · total {timing}"
    return (f"_{escape_md(notice)}_\n\n" if notice else "") + body + f"\n\n_{escape_md(timing)}_"


def build_app(qa, max_concurrency: int = 2):
    """The Gradio Blocks app around a loaded Answerer."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    session = ChatSession(qa)
    adapter = qa.adapter.name if qa.adapter else "none (base model)"
    llm = qa.llm if getattr(qa, "engine", None) == "vllm" else None  # a server's client (rag/remote.py)

    def header() -> str:  # the index part follows the version serving (index add/remove while the chat runs)
        index = qa.serving
        version = getattr(index, "version", None)
        text = (f"### ProductQA\n{len(index):,} products in the index"
                + (f" (version {version})" if version else "")
                + f" · model {escape_md(qa.base_identity['name'])} · adapter {escape_md(adapter)}")
        if llm is not None:  # answers come from a vLLM server: say which
            text += f" · answered by {escape_md(llm.model)} (vLLM)"
        return text
    # the adapter-off switch: the base model must be at hand (in process, or served as productqa-base)
    can_switch = qa.adapter is not None and (llm is None or llm.base_model is not None)

    def respond(message, history, k, temperature, max_new_tokens, use_adapter, retrieval_only, draft, last):
        for messages, product in session.respond(message, history, k, temperature, max_new_tokens,
                                                 use_adapter, retrieval_only, last, draft):
            yield messages, product, ""

    with gr.Blocks(analytics_enabled=False, title="ProductQA") as demo:
        title = gr.Markdown(header(), elem_id="header")
        reload_seconds = getattr(qa.index, "reload_seconds", 0)
        if reload_seconds:
            gr.Timer(max(reload_seconds, 1.0)).tick(header, None, title, api_name=False, show_progress="hidden")
        chatbot = gr.Chatbot(label="ProductQA", height=560, elem_id="chatbot", sanitize_html=True,
                             render_markdown=True, allow_tags=False)
        last = gr.State(None)
        with gr.Row():
            box = gr.Textbox(placeholder="Ask about a product: What is '...'? / Qual é a descrição deste produto: ...",
                             show_label=False, scale=8, elem_id="question", max_length=20_000)
            send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
        with gr.Accordion("Settings", open=False):
            k = gr.Slider(1, 10, value=3, step=1, label="retrieved products (k)")
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature (0 = greedy)")
            max_new = gr.Slider(16, 512, value=DEFAULT_MAX_NEW_TOKENS, step=16, label="max new tokens")
            use_adapter = gr.Checkbox(value=qa.adapter is not None or llm is not None, interactive=can_switch,
                                      label="use the fine-tuned adapter (off: base model)")
            retrieval_only = gr.Checkbox(value=False, label="retrieval only (show the products, no answer)")
            draft = gr.Checkbox(value=qa.cfg.draft_missing, elem_id="draft",
                                label="no description in the catalog: let the model draft one from the title "
                                      "(labelled as the model's writing)")
        gr.Examples(example_questions(qa.index), inputs=[box], label="Examples")
        clear = gr.Button("New conversation", size="sm")
        inputs = [box, chatbot, k, temperature, max_new, use_adapter, retrieval_only, draft, last]
        outputs = [chatbot, last, box]
        box.submit(respond, inputs, outputs, api_name="chat", concurrency_limit=max_concurrency)
        send.click(respond, inputs, outputs, api_name=False, concurrency_limit=max_concurrency)
        clear.click(lambda: ([], None, ""), None, outputs, api_name=False)
    return demo


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """USER:PASS from --auth or $PRODUCTQA_AUTH; None = no login."""
    value = value or os.environ.get("PRODUCTQA_AUTH")
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth / PRODUCTQA_AUTH must be USER:PASS")
    return user, password


def serve(qa, host: str = "127.0.0.1", port: int = 7860, auth=None, max_concurrency: int = 2,
          share: bool = False, block: bool = True):
    """Start the server; returns (app, local URL). With block=False it runs in a background thread."""
    import gradio as gr

    demo = build_app(qa, max_concurrency=max_concurrency)
    # system fonts: the page loads nothing from outside this server (the default theme fetches Google Fonts)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    demo.queue(default_concurrency_limit=max_concurrency, max_size=512)
    try:
        demo.launch(server_name=host, server_port=port, auth=auth, share=share, prevent_thread_lock=True,
                    show_error=False, quiet=True, ssr_mode=False, enable_monitoring=False, inbrowser=False,
                    theme=theme)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e}); pick another --port") from None
    url = demo.local_url or f"http://{host}:{port}/"
    if block:
        print(f"ProductQA chat on {url}" + (f"  (public link: {demo.share_url})" if share else "")
              + "  (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            demo.close()
    return demo, url


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_answer_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", metavar="USER:PASS", help="require a login (or set PRODUCTQA_AUTH=USER:PASS)")
    p.add_argument("--max-concurrency", type=int, metavar="N",
                   help="requests worked on at once; the rest wait in the queue (default 16 with the transformers "
                        "engine: up to 16 share one generate; 64 with vLLM, which batches them continuously)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")


def main(args: argparse.Namespace) -> int:
    from rag.answer import Answerer, answer_config, uses_server

    auth = parse_auth(args.auth)
    cfg = answer_config(args)
    if args.max_concurrency is None:
        args.max_concurrency = 64 if uses_server(cfg) else MAX_BATCH
    if not 0 < args.port < 65536:
        raise UserError("--port must be between 1 and 65535")
    if args.max_concurrency < 1:
        raise UserError("--max-concurrency must be >= 1")
    if not Path(args.index).is_dir():
        raise UserError(f"{args.index}: no index here (run `productqa index build` first)")
    import socket

    with socket.socket() as s:  # a taken port fails now, not after the models have loaded
        try:
            s.bind((args.host, args.port))
        except OSError as e:
            raise UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pick another --port") from None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import signal

    def on_term(signum, frame):  # SIGTERM stops like Ctrl-C: a vLLM server started for the chat stops too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    qa = Answerer(cfg, progress=True)
    try:
        serve(qa, host=args.host, port=args.port, auth=auth, max_concurrency=args.max_concurrency, share=args.share)
    finally:
        qa.close()
    return 0
