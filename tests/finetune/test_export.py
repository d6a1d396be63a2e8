"""Training-pair export: Alpaca and OpenAI chat formats, English and Portuguese phrasings."""

import json

from finetune.export import export_pairs
from rag.prompt import INSTRUCTION


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_alpaca_pairs(demo_catalog, tmp_path):
    from indexing.catalog import read_catalog

    df = read_catalog(demo_catalog)
    n = export_pairs(demo_catalog, "alpaca", tmp_path / "a.jsonl", per_product=2, progress=False)
    rows = lines(tmp_path / "a.jsonl")
    df = df[df["has_description"]].reset_index(drop=True)  # title-only products give no pairs
    assert n == len(rows) == 2 * len(df) and len(df) < len(read_catalog(demo_catalog))
    assert all(r["output"] for r in rows)
    assert set(rows[0]) == {"instruction", "input", "output"}
    assert rows[0]["output"] == df["content"][0] and rows[0]["input"] == ""
    assert df["title"][0] in rows[0]["instruction"] and df["title"][0] in rows[1]["instruction"]
    assert rows[0]["instruction"] != rows[1]["instruction"]


def test_openai_pairs_in_portuguese(demo_catalog, tmp_path):
    export_pairs(demo_catalog, "openai", tmp_path / "o.jsonl", lang="pt", limit=5, progress=False)
    rows = lines(tmp_path / "o.jsonl")
    assert len(rows) == 5
    sys_msg, user, assistant = rows[0]["messages"]
    assert sys_msg == {"role": "system", "content": INSTRUCTION}
    assert any(p in user["content"] for p in ("descrição", "O que é", "Me fale", "Descreva"))
    assert assistant["role"] == "assistant" and assistant["content"]
