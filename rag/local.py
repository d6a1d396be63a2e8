"""Generation in this process (transformers), with the same interface as rag/remote.py's RemoteLLM, so
that rag/answer.py holds one generator and never asks which engine it is.

    from rag.local import LocalLLM
    llm = LocalLLM(base_path, adapter="data/adapter")                  # loads the model once
    llm.complete(["### Instruction: ..."], max_tokens=320, stop=["###"])  # one text per prompt
    for piece in llm.stream("### Instruction: ...", max_tokens=320, stop=["###"]): ...

`complete` over several prompts is one left-padded generate (batch answering). A single prompt, and
every `stream`, goes through rag/batching.py: concurrent requests with the same settings (the chat's
users) share the next generate. `use_adapter=False` answers with the base model (the chat's switch).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

# Measured (docs/design.md, `eval answers --repetition-penalty`): transformers' penalty also counts the
# prompt's tokens, so any value > 1 punishes copying the retrieved description (ROUGE-L 0.684 at 1.0,
# 0.338 at 1.05 on held-out products); loops are rare and cut by max_new_tokens.
REPETITION_PENALTY = 1.0


def inference_dtype(device: str, four_bit: bool) -> str:
    """Weights' dtype for answering: bf16 on GPUs and on CPUs with bf16 instructions (AVX512-BF16 or
    AMX: a faster prefill, so a faster first token and batch; see benchmarks/answer.py), else fp32."""
    from indexing.runtime import native_bf16

    if four_bit:
        return "auto"
    if device == "cuda":
        return "bf16" if native_bf16("cuda") else "fp16"
    return "bf16" if native_bf16("cpu") else "fp32"


class LocalLLM:
    """A base model (+ LoRA adapter) loaded here: `complete` / `stream` as RemoteLLM has them."""

    def __init__(self, base: str | Path, adapter: str | Path | None = None, device: str | None = None,
                 four_bit: bool | None = None, dtype: str = "auto", merge: bool = True,
                 repetition_penalty: float = REPETITION_PENALTY):
        from indexing.runtime import pick_device, torch_dtype
        from rag.batching import Batcher
        from rag.model import load_model

        self.base_path, self.adapter = Path(base), Path(adapter) if adapter else None
        self.device = pick_device(device)
        # 4-bit NF4 saves memory on GPUs; on CPUs unquantized weights generate faster
        self.four_bit = (self.device == "cuda") if four_bit is None else four_bit
        self.dtype = inference_dtype(self.device, self.four_bit) if dtype == "auto" else dtype
        self.repetition_penalty = repetition_penalty
        self.merged, self._base_model = False, None
        # unquantized weights load in fp32 so that a LoRA merge is exact; cast afterwards
        self.model, self.tok = load_model(self.base_path, four_bit=self.four_bit, device=self.device,
                                          dtype="auto" if self.four_bit else "fp32")
        if self.adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(self.adapter))
            # merged LoRA weights: no extra matmuls per layer when generating; never into 4-bit ones
            self.merged = merge and not self.four_bit
            if self.merged:
                import warnings

                with warnings.catch_warnings():  # peft's merge calls a transformers API deprecated for v6
                    warnings.simplefilter("ignore", FutureWarning)
                    self.model = self.model.merge_and_unload()
        if not self.four_bit and self.dtype != "fp32":
            self.model.to(torch_dtype(self.dtype))
        self.model.eval()
        self.tok.padding_side = "left"  # batched generation continues every prompt from its end
        self._lock = threading.Lock()
        # concurrent stream() calls share generates: rag/batching.py
        self._batcher = Batcher(lambda prompts, streamer, **kw: self._generate(prompts, streamer=streamer, **kw),
                                self.tok)

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

                    self._base_model, _ = load_model(self.base_path, four_bit=False, device=self.device,
                                                     dtype=self.dtype)
                    self._base_model.eval()
                yield self._base_model
            else:
                with self.model.disable_adapter():
                    yield self.model

    def _generate(self, prompts: list[str], max_tokens: int, stop: list[str], temperature: float = 0.0,
                  use_adapter: bool = True, streamer=None) -> list[str]:
        """One (left-padded) generate over `prompts`; the generated texts."""
        import torch

        kw = dict(max_new_tokens=max_tokens, repetition_penalty=self.repetition_penalty, stop_strings=stop,
                  tokenizer=self.tok, pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=0.95)  # as RemoteLLM samples
        else:
            kw.update(do_sample=False)
        if streamer is not None:
            kw["streamer"] = streamer
        enc = self.tok(prompts, return_tensors="pt", padding=len(prompts) > 1).to(self.model.device)
        with self.generation_context(use_adapter) as model, torch.inference_mode():
            out = model.generate(**enc, **kw)
        return self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def complete(self, prompts: list[str], max_tokens: int, stop: list[str], temperature: float = 0.0,
                 use_adapter: bool = True) -> list[str]:
        """The generated text of each prompt, in order: several prompts are one generate (the caller
        chose the batch); one prompt waits for the batcher, with whoever else is asking."""
        if len(prompts) == 1:
            from rag.batching import drain

            return [drain(self.stream(prompts[0], max_tokens, stop, temperature, use_adapter))]
        return self._generate(prompts, max_tokens, stop, temperature, use_adapter)

    def stream(self, prompt: str, max_tokens: int, stop: list[str], temperature: float = 0.0,
               use_adapter: bool = True):
        """Yield the generated text of one prompt piece by piece; returns (StopIteration value) the whole
        text. Requests with the same settings share a generate (rag/batching.py)."""
        kw = dict(max_tokens=max_tokens, stop=list(stop), temperature=temperature, use_adapter=use_adapter)
        key = (max_tokens, tuple(stop), temperature, use_adapter)
        return (yield from self._batcher.stream(prompt, key=key, kw=kw))
