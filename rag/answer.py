"""Grounded answers: retrieve the products a question is about, then let the (fine-tuned) model answer
from their descriptions, or abstain.

    productqa ask "What is 'Girls Ballet Tutu Neon Pink'?" --index data/index --adapter data/adapter
    productqa ask "Qual é a descrição deste produto: mog's kittens?" --index data/index --json

    from rag.answer import Answerer
    qa = Answerer("data/index", adapter="data/adapter")     # models load once
    a = qa.ask("What is 'Mog's Kittens'?")                   # Answer(text, sources, abstained, ...)
    for piece in qa.stream("..."): ...                       # text pieces, then the Answer

Abstention happens twice: before generating, when the best retrieved product is not close enough
(cosine below the threshold calibrated at index build time and stored in meta.json), and when the
fine-tuned model itself answers that the product is not in the catalog. An answer always carries
the products it was drawn from; with no sources there is no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from indexing.errors import UserError
from indexing.questions import MAX_QUESTION_CHARS, sanitize_question  # noqa: F401  (re-exported)

DEFAULT_MAX_NEW_TOKENS = 320  # ~1,200 characters: the longest answer the prompt can support
# Measured (README, `eval answers --repetition-penalty`): transformers' penalty also counts the
# prompt's tokens, so any value > 1 punishes copying the retrieved description (ROUGE-L 0.684 at 1.0,
# 0.338 at 1.05 on held-out products); loops are rare and cut by max_new_tokens.
REPETITION_PENALTY = 1.0
STOP_STRINGS = ["###"]  # the next Alpaca section means the answer is over


@dataclass
class Answer:
    question: str
    text: str
    sources: list = field(default_factory=list)  # indexing.search.Hit, best first
    abstained: bool = False
    notice: str | None = None  # e.g. "question truncated to 2,000 characters"
    latency_ms: float = 0.0
    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    cited: int | None = None  # the source (1-based rank) the answer's citation line names, if any

    @property
    def cited_source(self):
        return self.sources[self.cited - 1] if self.cited and self.cited <= len(self.sources) else None

    def to_dict(self) -> dict:
        cited = self.cited_source
        return {"question": self.question, "answer": self.text, "abstained": self.abstained,
                "cited_uid": cited.uid if cited else None,
                "sources": [{"uid": h.uid, "title": h.title, "score": round(h.dense_score or 0.0, 4)}
                            for h in self.sources],
                "notice": self.notice, "latency_ms": round(self.latency_ms, 1),
                "retrieval_ms": round(self.retrieval_ms, 1),
                "first_token_ms": None if self.first_token_ms is None else round(self.first_token_ms, 1)}


def token_streamer(tok, timeout: float | None = None):
    """A TextIteratorStreamer that hands out text after every token. The stock one waits for a space
    (a whole word: one to three tokens of extra first-token latency); this one only holds back a
    token that ends inside a multi-byte character."""
    from transformers import TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        def put(self, value):
            if len(value.shape) > 1:
                if value.shape[0] > 1:
                    raise ValueError("token_streamer supports batch size 1")
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            if text.endswith("\ufffd"):  # half a character: wait for the rest
                return
            printable = text[self.print_len:]
            if text.endswith("\n"):
                self.token_cache, self.print_len = [], 0
            else:
                self.print_len = len(text)
            self.on_finalized_text(printable)

    return TokenStreamer(tok, skip_prompt=True, timeout=timeout, skip_special_tokens=True)


def clean_generation(text: str) -> str:
    """Cut at the next "###" section and trim."""
    return text.split("###", 1)[0].strip()


def inference_dtype(device: str, four_bit: bool) -> str:
    """Weights' dtype for answering: bf16 on GPUs and on CPUs with bf16 instructions (AVX512-BF16 or
    AMX: a faster prefill, so a faster first token and batch; see benchmarks/answer.py), else fp32."""
    import torch

    if four_bit:
        return "auto"
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # older torch: no probe, stay safe
        native = False
    return "bf16" if native else "fp32"


class Answerer:
    """Index + base model (+ LoRA adapter), loaded once, shared by ask / batch / chat."""

    def __init__(self, index: str | Path, adapter: str | Path | None = None, base_model: str | Path | None = None,
                 device: str | None = None, four_bit: bool | None = None, progress: bool = False,
                 repetition_penalty: float = REPETITION_PENALTY, merge: bool = True, dtype: str = "auto"):
        from indexing.search import load_index
        from rag.model import base_identity, load_model, pick_device, resolve_base
        from rag.prompt import PROMPT_VERSION

        self.adapter = Path(adapter) if adapter else None
        self.adapter_meta = None
        self.merged = False
        self.repetition_penalty = repetition_penalty
        if self.adapter:
            meta_file = self.adapter / "training_meta.json"
            if not (self.adapter / "adapter_config.json").exists() or not meta_file.exists():
                raise UserError(f"{self.adapter}: not an adapter folder (run `productqa finetune` first)")
            self.adapter_meta = json.loads(meta_file.read_text())
            if self.adapter_meta.get("prompt_version") != PROMPT_VERSION:
                raise UserError(f"{self.adapter}: trained with prompt version {self.adapter_meta.get('prompt_version')}, "
                                f"this ProductQA builds version {PROMPT_VERSION}: retrain the adapter")
            trained_on = self.adapter_meta["base_model"]
            if base_model is None and Path(trained_on["path"]).is_dir():
                base_model = trained_on["path"]
        base = resolve_base(base_model, progress=progress)
        ident = base_identity(base)
        if self.adapter_meta and ident["hash"] != self.adapter_meta["base_model"]["hash"]:
            raise UserError(f"{self.adapter} was trained on {self.adapter_meta['base_model']['name']} "
                            f"(hash {self.adapter_meta['base_model']['hash'][:12]}), not on {base} "
                            f"(hash {ident['hash'][:12]}): pass the matching --base-model")
        self.base_identity = ident
        # the index (and its encoder) loads after the cheap checks above, so a wrong --adapter fails fast
        self.index = load_index(index)
        self.threshold = float(self.index.meta.get("abstain_threshold", 0.0))
        self.device = pick_device(device)
        # 4-bit NF4 saves memory on GPUs; on CPUs unquantized weights generate faster
        self.four_bit = (self.device == "cuda") if four_bit is None else four_bit
        self.dtype = inference_dtype(self.device, self.four_bit) if dtype == "auto" else dtype
        self.base_path, self._base_model = base, None
        # unquantized weights load in fp32 so that a LoRA merge is exact; cast afterwards
        load_dtype = "auto" if self.four_bit else "fp32"
        self.model, self.tok = load_model(base, four_bit=self.four_bit, device=self.device, dtype=load_dtype)
        if self.adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(self.adapter))
            # merged LoRA weights: no extra matmuls per layer when generating; never into 4-bit ones
            self.merged = merge and not self.four_bit
            if self.merged:
                self.model = self.model.merge_and_unload()
        if not self.four_bit and self.dtype != "fp32":
            import torch

            self.model.to({"bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype])
        self.model.eval()
        self._lock = threading.Lock()
        self.tok.padding_side = "left"  # batched generation continues every prompt from its end

    # ------------------------------------------------------------------ steps

    def retrieve(self, questions: list[str], k: int):
        return self.index.retrieve_many(questions, k=k)

    def should_abstain(self, hits) -> bool:
        """No product close enough: the best cosine is below the calibrated threshold."""
        if not hits:
            return True
        best = max((h.dense_score or 0.0) for h in hits)
        return best < self.threshold

    def _gen_kwargs(self, max_new_tokens: int, temperature: float) -> dict:
        kw = dict(max_new_tokens=max_new_tokens, repetition_penalty=self.repetition_penalty,
                  stop_strings=STOP_STRINGS, tokenizer=self.tok, pad_token_id=self.tok.pad_token_id,
                  eos_token_id=self.tok.eos_token_id)
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            kw.update(do_sample=False)
        return kw

    def _finish(self, ans: Answer, generated: str) -> Answer:
        """The final text: cut at the next section, the citation line ("[2] Title") taken off into
        `ans.cited`, an empty answer turned into "not in the catalog"."""
        from rag.prompt import NOT_IN_CATALOG, split_citation

        rank, title, body = split_citation(clean_generation(generated))
        ans.cited = rank if rank and rank <= len(ans.sources) else None
        ans.text = body or (f"[{rank}] {title}" if rank else NOT_IN_CATALOG)
        ans.abstained = ans.text.startswith(NOT_IN_CATALOG.rstrip("."))
        return ans

    # ------------------------------------------------------------------ API

    @contextmanager
    def generation_context(self, use_adapter: bool = True):
        """The model to generate with, held exclusively: one generate at a time (the model and its
        adapter switch are shared; on CPU two concurrent generates only fight over the cores).
        Adapter off: peft's switch for an unmerged adapter; for a merged one, the base model, loaded
        on first use (unmerging in place would drift in bf16)."""
        with self._lock:
            if not self.adapter or use_adapter:
                yield self.model
            elif self.merged:
                if self._base_model is None:
                    from rag.model import load_model

                    self._base_model, _ = load_model(self.base_path, four_bit=False, device=self.device, dtype=self.dtype)
                    self._base_model.eval()
                yield self._base_model
            else:
                with self.model.disable_adapter():
                    yield self.model

    def stream(self, question: str, k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
               temperature: float = 0.0, use_retrieval: bool = True, hits: list | None = None,
               use_adapter: bool = True):
        """Yield the answer's text pieces as they are generated; the generator's return value (and a
        final `Answer` yielded last) carries the sources and flags. `hits` replaces retrieval (the chat
        passes the last product for follow-ups); `use_adapter=False` answers with the base model."""

        import torch

        from rag.prompt import NOT_IN_CATALOG, build_prompt

        t0 = time.perf_counter()
        q, notice = sanitize_question(question)
        if hits is None:
            hits = self.retrieve([q], k)[0] if use_retrieval else []
        ans = Answer(question=q, text="", sources=hits, notice=notice,
                     retrieval_ms=(time.perf_counter() - t0) * 1000)
        if use_retrieval and self.should_abstain(hits):
            ans.text, ans.abstained = NOT_IN_CATALOG, True
            ans.latency_ms = ans.first_token_ms = (time.perf_counter() - t0) * 1000
            yield ans.text
            yield ans
            return ans
        prompt = build_prompt(q, [(h.title, h.content) for h in hits])
        ids = self.tok(prompt, return_tensors="pt").to(self.model.device)
        streamer = token_streamer(self.tok)
        kw = {**ids, **self._gen_kwargs(max_new_tokens, temperature), "streamer": streamer}
        errors = []

        def run():
            try:
                with self.generation_context(use_adapter) as model, torch.inference_mode():
                    model.generate(**kw)
            except Exception as e:  # surfaced below, never swallowed
                errors.append(e)
                streamer.end()

        th = threading.Thread(target=run, daemon=True)
        th.start()
        text = ""
        for piece in streamer:
            if not piece:
                continue
            if ans.first_token_ms is None:
                ans.first_token_ms = (time.perf_counter() - t0) * 1000
            if "###" in text + piece:  # the stop string may arrive split over pieces
                piece = (text + piece).split("###", 1)[0][len(text):]
                text += piece
                if piece:
                    yield piece
                continue
            text += piece
            yield piece
        th.join()
        if errors:
            raise errors[0]
        self._finish(ans, text)
        ans.latency_ms = (time.perf_counter() - t0) * 1000
        yield ans
        return ans

    def ask(self, question: str, k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            temperature: float = 0.0, use_retrieval: bool = True, hits: list | None = None,
            use_adapter: bool = True) -> Answer:
        *_, ans = self.stream(question, k, max_new_tokens, temperature, use_retrieval, hits, use_adapter)
        return ans

    def ask_many(self, questions: list[str], k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 temperature: float = 0.0, use_retrieval: bool = True, use_adapter: bool = True,
                 batch_size: int | None = None) -> list[Answer]:
        """Answer many questions: one retrieval call, then batched generates (left-padded prompts) of
        `batch_size` (default: all at once). Answers come back in the questions' order."""
        import torch

        from rag.prompt import NOT_IN_CATALOG, build_prompt

        t0 = time.perf_counter()
        clean = [sanitize_question(q) for q in questions]
        qs = [q for q, _ in clean]
        all_hits = self.retrieve(qs, k) if use_retrieval else [[] for _ in qs]
        t_ret = (time.perf_counter() - t0) * 1000 / max(len(qs), 1)
        answers = [Answer(question=q, text="", sources=h, notice=n, retrieval_ms=t_ret)
                   for (q, n), h in zip(clean, all_hits)]
        todo = []
        for a in answers:
            if use_retrieval and self.should_abstain(a.sources):
                a.text, a.abstained = NOT_IN_CATALOG, True
            else:
                todo.append(a)
        # A batch generates until its longest answer ends, and pads to its longest prompt. The answer
        # copies the top source's description, so batching answers by that length groups similar
        # prompt and answer lengths (benchmarks/answer.py: sorted vs arrival order).
        todo.sort(key=lambda a: len(a.sources[0].content) if a.sources else 0)
        bs = batch_size or max(len(todo), 1)
        for s in range(0, len(todo), bs):
            chunk = todo[s: s + bs]
            prompts = [build_prompt(a.question, [(h.title, h.content) for h in a.sources]) for a in chunk]
            enc = self.tok(prompts, return_tensors="pt", padding=True).to(self.model.device)
            with self.generation_context(use_adapter) as model, torch.inference_mode():
                out = model.generate(**enc, **self._gen_kwargs(max_new_tokens, temperature))
            texts = self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for a, t in zip(chunk, texts):
                self._finish(a, t)
        total = (time.perf_counter() - t0) * 1000
        for a in answers:
            a.latency_ms = total / len(answers)  # batch time, shared
        return answers


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the question, e.g. \"What is 'Mog's Kittens'?\"")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder (productqa index build)")
    p.add_argument("--adapter", metavar="ADAPTER_DIR", help="LoRA adapter (productqa finetune); default: the base model")
    p.add_argument("--base-model", metavar="PATH", help="base model folder (default: the adapter's, or SmolLM2)")
    p.add_argument("-k", type=int, default=3, help="retrieved products in the prompt (default 3)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--no-retrieval", action="store_true", help="answer without catalog context (for comparison)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    p.add_argument("--device", choices=("cpu", "cuda"))


def main(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError("-k must be >= 1")
    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be >= 1")
    q, notice = sanitize_question(args.question)
    qa = Answerer(args.index, adapter=args.adapter, base_model=args.base_model, device=args.device, progress=True)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    ans = None
    for piece in qa.stream(q, k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           use_retrieval=not args.no_retrieval):
        if isinstance(piece, Answer):
            ans = piece
        elif not args.json:
            print(piece, end="", flush=True)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
        return 0
    print()
    label = "closest products (not in the catalog)" if ans.abstained else "sources"
    if ans.sources:
        print(f"\n{label}:")
        for rank, h in enumerate(ans.sources, 1):
            mark = "  <- cited" if rank == ans.cited else ""
            print(f"{rank:>2}. {h.uid}  {h.title}  (cosine {h.dense_score or 0:.3f}){mark}")
    print(f"\n{ans.latency_ms:.0f} ms (retrieval {ans.retrieval_ms:.0f} ms"
          + (f", first token {ans.first_token_ms:.0f} ms" if ans.first_token_ms else "") + ")")
    return 0
