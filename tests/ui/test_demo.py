"""`productqa demo` (what `make demo` runs) works end to end and reuses what it built."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_and_reuses_artifacts(tmp_path):
    cmd = [sys.executable, "-m", "ui.cli", "demo", "--out", str(tmp_path / "demo"), "--no-finetune"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kept" in r.stdout and "Piano Lullabies for Babies, Vol. 1" in r.stdout
    assert "closest products" in r.stdout  # the invented product is not answered
    assert '62 minutes: "' in r.stdout and "(quoted from Piano Lullabies for Babies, Vol. 1's description" in r.stdout
    # the README tour's title-only product: in the catalog, without a description; then the labelled draft
    assert "A: 'Wood Glue, 16 oz' is in the catalog, but the catalog holds no description of it." in r.stdout
    assert "The catalog has no description of 'Wood Glue, 16 oz'. A draft written by the model" in r.stdout
    assert "(drafted by SmolLM2-135M-Instruct (base model) from the title alone: not the catalog's words)" in r.stdout
    for f in ("catalog/catalog.parquet", "index/CURRENT", "index/versions/1/meta.json", "pairs.alpaca.jsonl",
              "pairs.openai.jsonl"):
        assert (tmp_path / "demo" / f).exists()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0 and r.stdout.count("reusing") == 2
    # `make demo` ends by serving the chat on the demo index and printing its URL
    from tests.ui.test_chat_e2e import free_port

    port = free_port()
    p = subprocess.Popen(cmd + ["--chat", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=ROOT)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "ProductQA chat on" in line:
                break
        assert f"http://127.0.0.1:{port}/" in lines[-1], "".join(lines)[-2000:]
        import urllib.request

        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).status == 200
    finally:
        p.terminate()
        p.wait(timeout=60)
