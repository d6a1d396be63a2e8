"""`productqa describe` (drafts for the products without a description: resumable, one JSON line each) and
`productqa eval describe` (base vs fine-tuned drafts on held-out products)."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from indexing.errors import UserError
from rag.describe import describe, products_to_draft, read_uids
from tests.conftest import ROOT, ScriptedAnswerer


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_products_to_draft_and_uid_files(tmp_path):
    docs = pd.DataFrame({"uid": ["a", "b", "c"], "title": ["A", "B", "C"], "content": ["", "has one", ""]})
    assert products_to_draft(docs) == ([("a", "A"), ("c", "C")], [])
    assert products_to_draft(docs, ["b", "zz"]) == ([("b", "B")], ["zz"])  # a given list: with a description too
    f = tmp_path / "uids.txt"
    f.write_text('a\n\n{"uid": "c", "draft": null}\na\n')
    assert read_uids(f) == ["a", "c"]


def test_drafts_by_another_model_are_not_mixed_in(tmp_path):
    docs = pd.DataFrame({"uid": ["g1"], "title": ["Wood Glue"], "content": [""]})
    qa = ScriptedAnswerer(docs, {"Describe the product Wood Glue.": "Glue for wood."})
    out = tmp_path / "drafts.jsonl"
    assert describe(qa, [("g1", "Wood Glue")], out, progress=False)["drafted"] == 1
    rec = lines(out)[0]
    assert (rec["uid"], rec["draft"], rec["reviewed"], rec["model"], rec["prompt_version"]) == (
        "g1", "Glue for wood.", False, "ScriptedLLM", 4)
    out.write_text(json.dumps({**rec, "base_hash": "another"}) + "\n")
    with pytest.raises(UserError, match="holds drafts by ScriptedLLM .* choose another --out, or --fresh"):
        describe(qa, [("g1", "Wood Glue")], out, progress=False)
    assert describe(qa, [("g1", "Wood Glue")], out, fresh=True, progress=False)["drafted"] == 1


def test_describe_resumes_after_a_kill_without_duplicates(demo_index, tiny_llama, tmp_path):
    out = tmp_path / "drafts.jsonl"
    cmd = [sys.executable, "-m", "ui.cli", "describe", "--index", str(demo_index), "--base-model", str(tiny_llama),
           "--out", str(out), "--limit", "40", "--batch-size", "2", "--max-new-tokens", "48", "--quiet"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (out.exists() and out.read_bytes().count(b"\n") >= 4):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)  # mid-run: some batches written, the rest not
    p.wait()
    with open(out, "ab") as f:
        f.write(b'{"uid": "torn')  # as if killed mid-write
    first = out.read_bytes().count(b"\n")
    assert 4 <= first < 40
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"already done: {first}) of 40 products" in r.stdout
    recs = lines(out)
    uids = [x["uid"] for x in recs]
    assert len(uids) == len(set(uids)) == 40  # every product once: nothing lost, nothing twice
    title_only = set(demo_index_docs(demo_index).query("content == ''")["uid"])
    assert set(uids) <= title_only
    assert all(x["adapter"] is None and x["reviewed"] is False and (x["draft"] is None) == bool(x["unusable"])
               for x in recs)


def test_sigterm_stops_describe_cleanly(demo_index, tiny_llama, tmp_path):
    """A scheduler's SIGTERM exits like Ctrl-C (ui/cli.py): no traceback, whole lines written, and atexit runs
    (where a vLLM server this process started is stopped)."""
    out = tmp_path / "drafts.jsonl"
    cmd = [sys.executable, "-m", "ui.cli", "describe", "--index", str(demo_index), "--base-model", str(tiny_llama),
           "--out", str(out), "--limit", "40", "--batch-size", "2", "--max-new-tokens", "48", "--quiet"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (out.exists() and out.read_bytes().count(b"\n") >= 2):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stdout + stderr
    assert "productqa describe: interrupted: terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert out.read_bytes().endswith(b"\n") and all(x["uid"] for x in lines(out))


def demo_index_docs(folder):
    from indexing.search import load_index

    return load_index(folder).docs


def test_eval_describe_on_a_tiny_adapter_writes_its_table(demo_index, demo_catalog, smol_adapter, tmp_path, capsys):
    from ui.cli import main

    adapter, meta = smol_adapter
    assert main(["eval", "describe", "--index", str(demo_index), "--catalog", str(demo_catalog), "--adapter",
                 str(adapter), "--n", "2", "--max-new-tokens", "32", "--out", str(tmp_path), "--quiet"]) == 0
    table = (tmp_path / "describe.md").read_text()
    assert f"{meta['global_step']} training steps" in table
    report = json.loads((tmp_path / "describe.json").read_text())
    assert set(report["systems"]) == {"base", "fine-tuned"}
    for system in ("base", "fine-tuned"):
        assert set(report["systems"][system]) == {"en", "pt", "all"}
        m = report["systems"][system]["all"]
        assert m["n"] == 4 and 0 <= m["rougeL"] <= 1 and 0 <= m["invented"] <= 1
        assert f"| {system} | en | 2 |" in table
    held = set(meta["data"]["held_out_uids"])
    assert {d["uid"] for d in report["drafts"]} <= held  # never a product it trained on
    assert len(report["drafts"]) == 8


def test_invented_facts():
    from rag.evaluate_drafts import invented_facts

    title = "Wood Glue, 16 oz"
    assert invented_facts("Strong glue for wood. Holds 16 oz jars.", title) == []
    assert invented_facts("Made in 1998 by Gorilla in Ohio, 32 oz.", title) == ["1998", "32", "Gorilla", "Ohio"]
    assert invented_facts("Wood Glue is great. It dries fast.", title) == []  # sentence starts, title words
