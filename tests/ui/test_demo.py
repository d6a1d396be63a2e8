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
    for f in ("catalog/catalog.parquet", "index/meta.json", "pairs.alpaca.jsonl", "pairs.openai.jsonl"):
        assert (tmp_path / "demo" / f).exists()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0 and r.stdout.count("reusing") == 2
