"""ProductQA as an HTTP API: grounded answers with their sources for any OpenAI client, storefront or support tool.

    productqa api --index data/index --adapter data/adapter            # http://127.0.0.1:8080 (OpenAPI page: /docs)
    productqa api --index data/index --host 0.0.0.0 --api-key KEY      # elsewhere: clients send "Bearer KEY"
    productqa api --index data/index --chat                             # and the Gradio chat at / on the same port

Routes (docs/api.md): `POST /v1/chat/completions` (OpenAI's, model `productqa`, streamed or not; the answer's
sources, origin, cited_uid, picked_by and index_version in the extension field `productqa`), `GET /v1/models`,
`POST /v1/answers` (what `ask --json` prints, for one question or a list), `GET /v1/search?q=&k=` (what `search
--json` prints), `GET /v1/products/{uid}`, `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus).

Every answer comes from one `rag.answer.Answerer` (the chat's: `ui.chat.ChatSession.stream`), which follows the
index: a version committed by `index add/remove/build` is served without a restart, and each response says which
version answered. Safety: 127.0.0.1 unless --host; a bearer key required to listen anywhere else; request body
and question length limits; past --max-concurrency requests in flight, 429 with Retry-After instead of a queue
without bound; CORS only for the --cors-origin origins; access logs without question text unless
--log-questions.
"""


import argparse
import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field

from indexing.errors import UserError
from rag.answer import DEFAULT_MAX_NEW_TOKENS, add_answer_arguments

log = logging.getLogger("productqa.api")
MODEL = "productqa"  # the one model name /v1/models lists and /v1/chat/completions answers as
MAX_BODY = 1 << 20  # bytes of a request body (--max-body-bytes)
MAX_QUESTION = 2_000  # characters of a question (--max-question-chars)
MAX_QUESTIONS = 64  # questions in one /v1/answers request
MAX_K = 20
OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json", "/docs/oauth2-redirect")  # no key needed
TIMERS = ("retrieval", "first_token", "total")  # the answer's latency histograms


class ApiError(Exception):
    """A 4xx answer, in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kind = ("invalid_request_error" if status < 500 and status not in (401, 429)
            else "authentication_error" if status == 401 else "rate_limit_error" if status == 429 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class ApiConfig:
    """How the API serves (the answering itself is the AnswerConfig's)."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None  # clients send "Authorization: Bearer <key>"; None: no key (loopback only)
    max_concurrency: int = 16  # answers in flight; past it, 429
    max_body_bytes: int = MAX_BODY
    max_question_chars: int = MAX_QUESTION
    cors_origins: list[str] = field(default_factory=list)
    log_questions: bool = False
    chat: bool = False  # the Gradio chat at /
    chat_auth: tuple[str, str] | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Metrics:
    """The Prometheus series of one app (its own registry: two apps in one process do not share counts)."""

    def __init__(self, qa):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("productqa_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("productqa_request_seconds", "HTTP request latency by route", ["route"],
                                 registry=r, buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.answer = Histogram("productqa_answer_seconds", "answer latency: retrieval, first token, total",
                                ["stage"], registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.answers = Counter("productqa_answers", "answers by origin (refused: not in the catalog)", ["origin"],
                               registry=r)
        self.refusals = Counter("productqa_refusals", "questions answered 'not in the catalog'", registry=r)
        self.in_flight = Gauge("productqa_in_flight", "answers being worked on", registry=r)
        version = Gauge("productqa_index_version", "the index version serving", registry=r)
        version.set_function(lambda: float(getattr(qa.serving, "version", None) or 0))
        products = Gauge("productqa_index_products", "products in the index serving", registry=r)
        products.set_function(lambda: float(len(qa.serving)))

    def observe(self, ans) -> None:
        self.answers.labels(ans.origin or "unknown").inc()
        if ans.abstained:
            self.refusals.inc()
        self.answer.labels("retrieval").observe(ans.retrieval_ms / 1000)
        if ans.first_token_ms is not None:
            self.answer.labels("first_token").observe(ans.first_token_ms / 1000)
        self.answer.labels("total").observe(ans.latency_ms / 1000)


def content_text(content) -> str:
    """A message's text: a string, or OpenAI's content parts [{"type": "text", "text": ...}]."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def build_app(qa, cfg: ApiConfig):
    """The FastAPI app around a loaded Answerer (tests and `productqa api` call this)."""
    from typing import Literal

    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from indexing import __version__
    from indexing.questions import sanitize_question
    from ui.chat import ChatSession

    # at most max_concurrency answers in flight; the next is refused at once (429), never queued without bound
    session, metrics, slots = ChatSession(qa), Metrics(qa), threading.BoundedSemaphore(cfg.max_concurrency)

    class Message(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: Literal["system", "developer", "user", "assistant", "tool", "function"]
        content: str | list[dict] | None = None

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="allow")  # OpenAI's other fields (n, top_p, user, ...) are accepted
        model: str = MODEL
        messages: list[Message] = Field(min_length=1)
        stream: bool = False
        temperature: float | None = Field(None, ge=0.0, le=2.0)
        max_tokens: int | None = Field(None, ge=1, le=4096)
        max_completion_tokens: int | None = Field(None, ge=1, le=4096)
        k: int = Field(3, ge=1, le=MAX_K, description="products retrieved (a ProductQA extension)")
        mode: str | None = Field(None, description="answer mode, as `ask --answer-mode` (a ProductQA extension)")

    class AnswersRequest(BaseModel):
        question: str | list[str] = Field(description="one question, or a list of them")
        k: int = Field(3, ge=1, le=MAX_K)
        max_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, le=4096)
        temperature: float = Field(0.0, ge=0.0, le=2.0)
        mode: str | None = Field(None, description="answer mode (ask --answer-mode); default: the server's")
        draft: bool | None = Field(None, description="draft a description for a product without one")

    app = FastAPI(title="ProductQA", version=__version__,
                  description="Grounded answers from a product catalog, with their sources (docs/api.md).")

    def question(text: str) -> str:
        if len(text) > cfg.max_question_chars:
            raise ApiError(413, f"the question is {len(text):,} characters; at most {cfg.max_question_chars:,}",
                           code="question_too_long")
        try:
            return sanitize_question(text)[0]
        except UserError as e:
            raise ApiError(400, str(e), code="empty_question") from None

    def check_mode(mode: str | None) -> None:
        from rag.answer import MODES

        if mode is not None and mode not in MODES:
            raise ApiError(422, f"mode {mode!r}: choose from {', '.join(MODES)}", "invalid_request", "mode")

    # ----------------------------------------------------------------- errors, auth, limits, logs

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(error_body(e.status, e.message, e.code, e.param), e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(error_body(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}",
                                       "invalid_request", where or None), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):  # FastAPI's own: an unknown route, ...
        return JSONResponse(error_body(e.status_code, str(e.detail)), e.status_code, headers=e.headers)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        t0, path = time.perf_counter(), request.url.path
        if cfg.api_key and request.method != "OPTIONS" and (path.startswith("/v1/") or path == "/metrics"):
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), cfg.api_key):
                response = JSONResponse(error_body(401, "a valid API key is required: Authorization: Bearer KEY",
                                                   "invalid_api_key"), 401, headers={"WWW-Authenticate": "Bearer"})
                return finish(request, response, t0)
        # the body limit here, not FastAPI's max_body_size: that one answers 413 in plain text, before any handler
        # can give it OpenAI's error shape
        too_big = JSONResponse(error_body(413, f"request body over {cfg.max_body_bytes:,} bytes", "body_too_large"),
                               413)
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > cfg.max_body_bytes):
            return finish(request, too_big, t0)
        if size is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():  # chunked: counted as it comes
                body += chunk
                if len(body) > cfg.max_body_bytes:
                    return finish(request, too_big, t0)
            request._body = body  # what the route reads (starlette replays a body read in middleware)
        return finish(request, await call_next(request), t0)

    def finish(request, response, t0):
        route = request.scope.get("route")
        name = getattr(route, "path", None) or ("/" if cfg.chat else "unmatched")
        ms = (time.perf_counter() - t0) * 1000
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(ms / 1000)
        record = {"method": request.method, "path": request.url.path, "route": name,
                  "status": response.status_code, "ms": round(ms, 1),
                  "client": request.client.host if request.client else None}
        if cfg.log_questions and getattr(request.state, "question", None):
            record["question"] = request.state.question
        log.info(json.dumps(record))
        return response

    class Slot:
        """One of the --max-concurrency answers in flight (429 when none is free), released once."""

        def __init__(self):
            if not slots.acquire(blocking=False):
                raise ApiError(429, f"too many requests in flight (at most {cfg.max_concurrency}); retry shortly",
                               code="rate_limit_exceeded", headers={"Retry-After": "1"})
            metrics.in_flight.inc()
            self.held = True

        def release(self) -> None:
            if self.held:
                self.held = False
                metrics.in_flight.dec()
                slots.release()

    def answered(q: str, k: int, temperature: float, max_tokens: int, last=None, mode=None, draft=None):
        """The final Answer (the chat's path), holding a slot while it is worked on."""
        slot = Slot()
        try:
            *_, ans = session.stream(q, k, temperature, max_tokens, last=last, draft=draft, mode=mode)
        finally:
            slot.release()
        metrics.observe(ans)
        return ans

    # ----------------------------------------------------------------- OpenAI

    @app.get("/v1/models", summary="The one model: productqa")
    def models():
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "productqa"}]}

    @app.post("/v1/chat/completions", summary="OpenAI chat completions: a grounded answer, its sources in `productqa`")
    def chat_completions(body: ChatRequest, request: Request):
        if body.model != MODEL:
            raise ApiError(404, f"model {body.model!r} does not exist; this server answers as {MODEL!r}",
                           code="model_not_found", param="model")
        asked = [content_text(m.content) for m in body.messages if m.role == "user"]
        if not asked or body.messages[-1].role != "user":
            raise ApiError(400, "the last message must be the user's question", code="no_question",
                           param="messages")
        check_mode(body.mode)
        q = question(asked[-1])
        request.state.question = q
        k = body.k
        max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_NEW_TOKENS
        temperature = body.temperature or 0.0
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict, finish_reason=None, **extra) -> str:
            return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                          "model": MODEL, "choices": [{"index": 0, "delta": delta,
                                                                        "finish_reason": finish_reason}],
                                          **extra}, ensure_ascii=False) + "\n\n"

        if not body.stream:
            slot = Slot()
            try:
                last = session.last_product(asked[:-1], k) if len(asked) > 1 else None
            finally:
                slot.release()
            ans = answered(q, k, temperature, max_tokens, last, mode=body.mode)
            return {"id": cid, "object": "chat.completion", "created": created, "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.text},
                                 "finish_reason": "stop"}],
                    "productqa": ans.to_dict()}
        slot = Slot()  # taken here, so that a 429 is a status, not an error inside a started stream

        def events():
            yield chunk({"role": "assistant", "content": ""})
            said = ""
            try:
                last = session.last_product(asked[:-1], k) if len(asked) > 1 else None
                for piece in session.stream(q, k, temperature, max_tokens, last=last, mode=body.mode):
                    if isinstance(piece, str):
                        said += piece
                        yield chunk({"content": piece})
                        continue
                    slot.release()
                    metrics.observe(piece)
                    rest = tail(said, piece)
                    if rest:
                        yield chunk({"content": rest})
                    yield chunk({}, "stop", productqa=piece.to_dict())
            except Exception as e:  # noqa: BLE001 - a failed answer ends its stream, not the server
                log.exception("answer failed")
                yield "data: " + json.dumps(error_body(500, f"the answer failed ({type(e).__name__})")) + "\n\n"
            finally:
                slot.release()
            yield "data: [DONE]\n\n"

        stream = events()
        weakref.finalize(stream, slot.release)  # a stream never started (the client left) frees its slot too
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ----------------------------------------------------------------- ProductQA's own

    @app.post("/v1/answers", summary="Answer one question or a list: the JSON `ask --json` prints")
    async def answers(body: AnswersRequest, request: Request):
        check_mode(body.mode)
        if isinstance(body.question, str):
            q = question(body.question)
            request.state.question = q
            ans = await run_in_threadpool(lambda: answered(q, body.k, body.temperature, body.max_tokens,
                                                           mode=body.mode, draft=body.draft))
            return ans.to_dict()
        if not body.question or len(body.question) > MAX_QUESTIONS:
            raise ApiError(422, f"question: a list of 1 to {MAX_QUESTIONS} questions", "invalid_request", "question")
        qs = [question(x) for x in body.question]

        def many():
            slot = Slot()
            try:
                return qa.ask_many(qs, k=body.k, max_new_tokens=body.max_tokens, temperature=body.temperature,
                                   mode=body.mode, draft=body.draft)
            finally:
                slot.release()

        out = await run_in_threadpool(many)
        for a in out:
            metrics.observe(a)
        return {"answers": [a.to_dict() for a in out]}

    @app.get("/v1/search", summary="Ranked hits for a question: what `search --json` prints")
    def search(q: str = Query(..., description="the question"), k: int = Query(5, ge=1, le=100)):
        text = question(q)
        index, slot = qa.serving, Slot()
        try:
            hits = index.retrieve_many([text], k=k)[0]
        finally:
            slot.release()
        return {"question": text, "hits": [h.to_dict() for h in hits], "index_version": getattr(index, "version", None)}

    @app.get("/v1/products/{uid}", summary="One product's catalog entry (404 if the index holds none)")
    def product(uid: str):
        index = qa.serving
        entry = index.product(uid)
        if entry is None:
            raise ApiError(404, f"no product with uid {uid!r} in index version {getattr(index, 'version', None)}",
                           code="product_not_found", param="uid")
        return {**entry, "has_description": bool(entry["content"]), "index_version": getattr(index, "version", None)}

    # ----------------------------------------------------------------- operations

    @app.get("/healthz", summary="Alive")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="The index loaded: its version and product count")
    def readyz():
        index = qa.serving
        return {"status": "ready", "index_version": getattr(index, "version", None), "products": len(index),
                "model": qa.base_identity["name"], "adapter": qa.adapter.name if qa.adapter else None}

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if cfg.chat:
        import gradio as gr

        from ui.chat import build_app as chat_app

        # system fonts: the page loads nothing from outside this server (as `productqa chat`)
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])
        blocks = chat_app(qa, max_concurrency=cfg.max_concurrency)
        blocks.queue(default_concurrency_limit=cfg.max_concurrency, max_size=512)
        app = gr.mount_gradio_app(app, blocks, path="/", auth=cfg.chat_auth, ssr_mode=False, show_error=False,
                                  enable_monitoring=False, theme=theme)
    app.state.metrics = metrics
    return app


def tail(said: str, ans) -> str:
    """What the final Answer adds to the text streamed so far: nothing, the rest of it, or (a generated answer
    that fell back) a line saying why and the catalog's description, as `ask` prints them."""
    if ans.text == said or not ans.text:
        return ""
    if ans.text.startswith(said):
        return ans.text[len(said):]
    if ans.origin == "fallback" and said:
        return (f"\n\n(the model's answer was {ans.fallback_reason}; the catalog's description instead:)\n"
                + ans.text)
    return ("\n\n" if said else "") + ans.text


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_answer_arguments(p, llm_key="--llm-api-key")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--api-key", metavar="KEY", default=os.environ.get("PRODUCTQA_API_KEY"),
                   help="the key clients send (Authorization: Bearer KEY); required to bind a non-loopback "
                        "address (default $PRODUCTQA_API_KEY)")
    p.add_argument("--max-concurrency", type=int, metavar="N",
                   help="answers in flight at once; past it, 429 with Retry-After (default 16 with the "
                        "transformers engine, 64 with vLLM)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY, metavar="N",
                   help=f"largest request body (default {MAX_BODY:,}; larger: 413)")
    p.add_argument("--max-question-chars", type=int, default=MAX_QUESTION, metavar="N",
                   help=f"longest question (default {MAX_QUESTION:,}; longer: 413)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from this origin (repeatable; default: none)")
    p.add_argument("--log-questions", action="store_true",
                   help="put the question's text in the access log (default: never)")
    p.add_argument("--chat", action="store_true", help="also serve the Gradio chat at / on the same port")
    p.add_argument("--auth", metavar="USER:PASS",
                   help="with --chat: the chat's login (or $PRODUCTQA_AUTH); required on a non-loopback address")


def api_config(args: argparse.Namespace, engine_serves: bool) -> ApiConfig:
    """The ApiConfig the flags describe, refused with a one-line reason where unsafe or impossible."""
    from rag.batching import MAX_BATCH
    from ui.chat import parse_auth

    if not 0 < args.port < 65536:
        raise UserError("--port must be between 1 and 65535")
    n = args.max_concurrency if args.max_concurrency is not None else (64 if engine_serves else MAX_BATCH)
    if n < 1 or args.max_body_bytes < 1 or args.max_question_chars < 1:
        raise UserError("--max-concurrency, --max-body-bytes and --max-question-chars must be >= 1")
    chat_auth = parse_auth(args.auth) if args.chat else None
    if not is_loopback(args.host):
        if not args.api_key:
            raise UserError(f"refusing to listen on {args.host} without --api-key (or $PRODUCTQA_API_KEY): anyone "
                            f"who can reach it could use it; bind 127.0.0.1 or give a key")
        if args.chat and chat_auth is None:
            raise UserError(f"--chat on {args.host} needs --auth USER:PASS (or $PRODUCTQA_AUTH) for the chat page")
    return ApiConfig(host=args.host, port=args.port, api_key=args.api_key, max_concurrency=n,
                     max_body_bytes=args.max_body_bytes, max_question_chars=args.max_question_chars,
                     cors_origins=args.cors_origin, log_questions=args.log_questions, chat=args.chat,
                     chat_auth=chat_auth)


def main(args: argparse.Namespace) -> int:
    import socket
    from pathlib import Path

    from rag.answer import Answerer, answer_config, uses_server

    acfg = answer_config(args)
    cfg = api_config(args, uses_server(acfg))
    if not Path(args.index).is_dir():
        raise UserError(f"{args.index}: no index here (run `productqa index build` first)")
    with socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET) as s:  # fail before models load
        try:
            s.bind((cfg.host, cfg.port))
        except OSError as e:
            raise UserError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror}); pick another --port") from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import uvicorn

    qa = Answerer(acfg, progress=True)
    try:
        app = build_app(qa, cfg)
        server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                               access_log=False, timeout_graceful_shutdown=10))
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        print(f"ProductQA API on http://{host}:{cfg.port}/v1 (OpenAPI page: /docs"
              + ("; chat: /" if cfg.chat else "") + ")  (Ctrl-C stops)", file=sys.stderr, flush=True)
        server.run()  # uvicorn stops on SIGINT and SIGTERM, finishing the requests in flight
    finally:
        qa.close()
    return 0
