"""End to end on the demo catalog with the real small models (MiniLM + SmolLM2 with a 20-step adapter)."""

import json
import subprocess
import sys

import pytest

from indexing.errors import UserError
from rag.answer import Answer, Answerer
from rag.prompt import NOT_IN_CATALOG
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qa(demo_index, smol_adapter):
    return Answerer(demo_index, adapter=smol_adapter[0])


def test_ask_streams_a_grounded_answer(qa):
    row = qa.index.docs.iloc[5]
    pieces = list(qa.stream(f"What is '{row.title}'?", max_new_tokens=24))
    final = pieces[-1]
    assert isinstance(final, Answer) and all(isinstance(p, str) for p in pieces[:-1])
    assert final.text and not final.abstained
    assert final.sources and final.sources[0].uid == row.uid
    from rag.prompt import split_citation

    # the final text is what was streamed, less the citation line ("[1] Title")
    assert split_citation("".join(pieces[:-1]))[2] == final.text or final.text == NOT_IN_CATALOG
    assert final.first_token_ms is not None and final.latency_ms >= final.first_token_ms


def test_generated_answers_are_words_or_a_marked_fallback(qa):
    """Generate mode with the real model: the answer is the model's text (never a lone "[" or a bare
    citation: a stop string must not fire on the prompt's last newline) or the cited description."""
    for row in qa.index.docs.head(3).itertuples():
        a = qa.ask(f"What is '{row.title}'?", max_new_tokens=48, mode="generate")
        assert a.origin in ("generated", "fallback") and not a.abstained, a
        assert any(c.isalnum() for c in a.text) and not a.text.startswith("[")
        if a.origin == "fallback":
            assert a.text == a.cited_source.content and a.fallback_reason


def test_invented_product_abstains_with_closest_products(qa):
    a = qa.ask("What is 'Zorvex Levitating Sock Robot 9000'?")
    assert a.abstained and a.text == NOT_IN_CATALOG and a.sources


def test_batch_generation_matches_count_and_portuguese(qa):
    titles = list(qa.index.docs["title"][:3])
    answers = qa.ask_many([f"Qual é a descrição deste produto: {t.lower()}?" for t in titles], max_new_tokens=16)
    assert len(answers) == 3 and all(a.sources for a in answers)
    assert [a.sources[0].title for a in answers] == titles


def test_adapter_on_the_wrong_base_is_refused(demo_index, smol_adapter, tiny_llama):
    with pytest.raises(UserError, match="was trained on SmolLM2-135M-Instruct"):
        Answerer(demo_index, adapter=smol_adapter[0], base_model=tiny_llama)


def test_cli_ask_json_and_batch_csv(demo_index, smol_adapter, tmp_path):
    adapter = str(smol_adapter[0])
    r = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "Qual é a descrição deste produto: moon rock toaster?",
                        "--index", str(demo_index), "--adapter", adapter, "--json", "--max-new-tokens", "16"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"answer", "abstained", "sources"} <= set(out)
    r = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "   ", "--index", str(demo_index)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr

    q = tmp_path / "q.csv"
    q.write_text("id,question\nx1,What is 'Tea Light Candles'?\nx2,\nx3,Tell me about a cast iron skillet.\n")
    outf = tmp_path / "answers.jsonl"
    cmd = [sys.executable, "-m", "ui.cli", "batch", "--index", str(demo_index), "--adapter", adapter,
           "--questions", str(q), "--out", str(outf), "--max-new-tokens", "16", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "q.csv:3" in r.stderr
    rows = [json.loads(x) for x in outf.read_text().splitlines()]
    assert [x["id"] for x in rows] == ["x1", "x3"]
    from indexing.store import read_meta

    version = read_meta(demo_index).get("version")  # what `batch --help` promises: each line's index version
    assert version and all(x["index_version"] == version for x in rows)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert "answered 0 (already done: 2)" in r.stdout


def test_eval_answers_report(demo_index, demo_catalog, smol_adapter, tmp_path):
    r = subprocess.run([sys.executable, "-m", "ui.cli", "eval", "answers", "--index", str(demo_index), "--catalog",
                        str(demo_catalog), "--adapter", str(smol_adapter[0]), "--n", "2", "--max-new-tokens", "16",
                        "--out", str(tmp_path / "eval"), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert list(report["systems"]) == ["base", "base + RAG (auto)", "fine-tuned", "fine-tuned + RAG (auto)"]
    assert report["n_questions"] == 2 * 5  # five phrasings per product
    for m in report["systems"].values():
        assert 0 <= m["rougeL"] <= 1 and 0 <= m["grounding"] <= 1 and 0 <= m["correct_abstain"] <= 1
    tuned = report["systems"]["fine-tuned + RAG (auto)"]
    assert tuned["correct_abstain"] == 1.0  # invented products: caught by the threshold
    # the targets, on the demo adapter: never another entry's text, never a bare citation
    assert tuned["other_entry"] == 0 and tuned["bare"] == 0
    assert set(tuned["by_variant"]) == {"exact", "lower", "partial", "typo", "portuguese"}
    assert (tmp_path / "eval" / "report.png").stat().st_size > 1000
    assert "| fine-tuned + RAG (auto) |" in (tmp_path / "eval" / "report.md").read_text()


def test_merged_adapter_matches_unmerged_and_switches_off(demo_index, smol_adapter):
    """Merging the LoRA weights (the default without 4-bit) changes no answer; switching the adapter off
    gives the base model, and switching it on again gives the adapter's answers back."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    from rag.prompt import build_prompt

    merged = Answerer(demo_index, adapter=smol_adapter[0], dtype="fp32")
    plain = Answerer(demo_index, adapter=smol_adapter[0], merge=False, dtype="fp32")
    base = Answerer(demo_index, dtype="fp32")
    row = merged.index.docs.iloc[2]
    ids = merged.llm.tok(build_prompt(f"What is '{row.title}'?", [(row.title, row.content)]), return_tensors="pt")

    def last_logits(qa, use_adapter=True):
        with qa.llm.generation_context(use_adapter) as model, torch.inference_mode():
            return model(**ids).logits[0, -1]

    tuned = last_logits(plain)
    assert merged.merged and not plain.merged
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.llm.model.modules())  # plain Linear layers
    assert torch.allclose(last_logits(merged), tuned, atol=1e-3)
    assert torch.allclose(last_logits(merged, use_adapter=False), last_logits(base), atol=1e-4)
    assert torch.allclose(last_logits(plain, use_adapter=False), last_logits(base), atol=1e-4)
    assert not torch.allclose(tuned, last_logits(base), atol=1e-3)  # the adapter does change something
    assert torch.allclose(last_logits(merged), tuned, atol=1e-3)
    assert torch.allclose(last_logits(plain), tuned, atol=1e-6)


def test_bf16_answers_like_fp32(demo_index, smol_adapter):
    """bf16 weights (the CPU default where the CPU has bf16 instructions) give the same greedy answers."""
    fp32 = Answerer(demo_index, adapter=smol_adapter[0], dtype="fp32")
    bf16 = Answerer(demo_index, adapter=smol_adapter[0], dtype="bf16")
    qs = [f"What is '{t}'?" for t in fp32.index.docs["title"][:4]]
    a = [x.text for x in fp32.ask_many(qs, max_new_tokens=24, mode="generate")]
    b = [x.text for x in bf16.ask_many(qs, max_new_tokens=24, mode="generate")]
    assert sum(x == y for x, y in zip(a, b)) >= 3, (a, b)


def test_read_mode_json_carries_a_checked_quote_or_a_marked_fallback(demo_index, smol_adapter):
    """The model reads for a detail (mode read): whatever it writes, the answer's quote is word for word
    the cited entry's text at its span, or the answer says which check failed (origin fallback)."""
    r = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "How long is 'Piano Lullabies for Babies, Vol. 1'?",
                        "--index", str(demo_index), "--adapter", str(smol_adapter[0]), "--answer-mode", "read",
                        "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "read" and out["kind"] == "length" and not out["abstained"]
    assert out["origin"] in ("quote", "not_stated", "fallback")
    cited = next(s for s in out["sources"] if s["uid"] == out["cited_uid"])
    if out["origin"] == "fallback":
        assert out["fallback_reason"] in ("no citation", "empty", "quote not in the cited entry",
                                          "quote from another entry")
    if out["quote"] is not None:
        from indexing.search import load_index

        content = dict(zip(*(load_index(demo_index).docs[c] for c in ("uid", "content"))))[cited["uid"]]
        s, e = out["quote_span"]
        assert content[s:e] == out["quote"] and out["quote"] in out["answer"]
