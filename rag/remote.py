"""Generation through an OpenAI-compatible server (`productqa serve`: vLLM), for `--llm-url`.

    from rag.remote import RemoteLLM
    llm = RemoteLLM("http://127.0.0.1:8000/v1", api_key=None)
    llm.complete(["### Instruction: ..."], max_tokens=320, stop=["###"])   # one text per prompt
    for piece in llm.stream("### Instruction: ...", max_tokens=320, stop=["###"]): ...

Only how tokens are produced changes: ProductQA builds the same prompts (rag/prompt.py), the server
continues them with the legacy completions endpoint (no chat template: the prompt is the Alpaca
text the adapter was trained on), greedy unless a temperature is given, with the same stop strings,
kept in the output as transformers keeps them. Many prompts go in one request: the server batches
them with every other user's (continuous batching). Errors become one-line `RemoteError`s.
"""

from __future__ import annotations

from indexing.errors import UserError

TIMEOUT = 600.0  # seconds per request: a long batch on a CPU server is slow, not dead
BATCH = 64  # prompts per completions request


class RemoteError(UserError):
    """The server could not be reached, refused the key, or failed the request."""


class RemoteLLM:
    """A client of one server; `model` is its served model (default: "productqa", else its first)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None, timeout: float = TIMEOUT):
        import openai

        from rag.serve import BASE_NAME, MODEL_NAME

        self.url = url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.url, api_key=api_key or "none", timeout=timeout, max_retries=0)
        names = self.models()
        self.model = model or (MODEL_NAME if MODEL_NAME in names else names[0])
        if self.model not in names:
            raise RemoteError(f"{self.url} serves {', '.join(names)}, not {self.model!r}")
        self.base_model = BASE_NAME if BASE_NAME in names else None  # the chat's adapter-off switch

    def _call(self, fn, *a, **kw):
        import openai

        try:
            return fn(*a, **kw)
        except openai.AuthenticationError:
            raise RemoteError(f"{self.url} refused the API key (give the server's key with --api-key)") from None
        except openai.APIConnectionError as e:
            raise RemoteError(f"cannot reach the model server at {self.url} ({e.__cause__ or e})") from None
        except openai.APIStatusError as e:
            raise RemoteError(f"the model server at {self.url} answered {e.status_code}: {e.message}") from None

    def models(self) -> list[str]:
        return [m.id for m in self._call(self.client.models.list).data]

    def _params(self, max_tokens: int, temperature: float, stop: list[str], use_adapter: bool) -> dict:
        if not use_adapter and self.base_model is None:
            raise RemoteError(f"{self.url} serves no base model (start it with `productqa serve --with-base`)")
        kw = dict(model=self.model if use_adapter else self.base_model, max_tokens=max_tokens, stop=stop,
                  temperature=temperature if temperature and temperature > 0 else 0.0,
                  extra_body={"include_stop_str_in_output": True, "skip_special_tokens": True})
        if temperature and temperature > 0:
            kw["top_p"] = 0.95
        return kw

    def complete(self, prompts: list[str], max_tokens: int, stop: list[str], temperature: float = 0.0,
                 use_adapter: bool = True) -> list[str]:
        """The generated text of each prompt, in order."""
        kw = self._params(max_tokens, temperature, stop, use_adapter)
        out = []
        for s in range(0, len(prompts), BATCH):
            chunk = prompts[s: s + BATCH]
            r = self._call(self.client.completions.create, prompt=chunk, **kw)
            texts = [""] * len(chunk)
            for c in r.choices:  # choices carry the index of their prompt
                texts[c.index] = c.text
            out += texts
        return out

    def stream(self, prompt: str, max_tokens: int, stop: list[str], temperature: float = 0.0,
               use_adapter: bool = True):
        """Yield the generated text of one prompt piece by piece, as the server sends it."""
        import httpx
        import openai

        kw = self._params(max_tokens, temperature, stop, use_adapter)
        events = self._call(self.client.completions.create, prompt=prompt, stream=True, **kw)
        try:
            for ev in events:
                if ev.choices and ev.choices[0].text:
                    yield ev.choices[0].text
        except (openai.APIError, httpx.HTTPError, OSError) as e:  # the server went away mid-answer
            raise RemoteError(f"the model server at {self.url} stopped answering ({type(e).__name__})") from None
        finally:
            events.close()
