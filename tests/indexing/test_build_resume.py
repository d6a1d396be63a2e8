"""Sharded, resumable index builds: kill -9 and resume gives the same index, corrupt shards are redone,
a build folder made with other settings is refused."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.build import BuildConfig, build_index
from indexing.errors import UserError
from indexing.store import (
    BM25,
    BM25_PASSAGES,
    DOCS,
    PASSAGE_VECTORS,
    PASSAGES,
    TITLES,
    build_folder,
    live_folder,
    read_meta,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SHARD = 26  # products per shard: the demo catalog's 376 products make 15 shards


def files(folder: Path) -> dict[str, bytes]:
    """Every file of an index that holds vectors or texts (meta.json carries timestamps, so it differs)."""
    folder = live_folder(folder)
    out = {f: (folder / f).read_bytes() for f in (TITLES, DOCS, PASSAGE_VECTORS, PASSAGES)}
    for d in (BM25, BM25_PASSAGES):
        out.update({f"{d}/{p.name}": p.read_bytes() for p in sorted((folder / d).iterdir())})
    return out


@pytest.fixture(scope="module")
def straight(demo_catalog, tmp_path_factory):
    """The demo catalog built in one go."""
    out = tmp_path_factory.mktemp("straight") / "index"
    build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), shard_size=SHARD, ranker=False, progress=False))
    return out


def test_sigkill_mid_build_then_resume_gives_the_same_index(demo_catalog, straight, tmp_path):
    out = tmp_path / "index"
    cmd = [sys.executable, "-m", "ui.cli", "index", "build", "--catalog", str(demo_catalog), "--out", str(out),
           "--shard-size", str(SHARD), "--fusion", "rule", "--quiet"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = build_folder(out) / "manifest.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and p.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = len(manifest.read_text().splitlines())
    assert 3 <= done < 15, "the build was not caught mid-way"
    assert not (out / "CURRENT").exists()  # nothing published where the index goes
    with pytest.raises(UserError, match="no index committed here yet"):
        read_meta(out)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming {out}: {done} of 15 shards already embedded" in r.stdout
    assert files(out) == files(straight)
    meta = json.loads((live_folder(out) / "meta.json").read_text())
    assert meta["build"]["resumed_shards"] == done and not build_folder(out).exists()


class Interrupt(Exception):
    pass


def interrupted_build(catalog, out, monkeypatch, after: int = 4, **kw):
    """Run a build that stops (like Ctrl-C) after `after` shards are written."""
    from indexing import store

    write = store.Shards.write
    count = {"n": 0}

    def write_then_stop(self, shard, arrays):
        if count["n"] == after:
            raise Interrupt
        count["n"] += 1
        write(self, shard, arrays)

    monkeypatch.setattr(store.Shards, "write", write_then_stop)
    with pytest.raises(Interrupt):
        build_index(BuildConfig(catalog=str(catalog), out=str(out), shard_size=SHARD, ranker=False, progress=False,
                                **kw))
    monkeypatch.setattr(store.Shards, "write", write)


def test_a_corrupt_shard_is_reported_and_embedded_again(demo_catalog, straight, tmp_path, monkeypatch, capsys):
    out = tmp_path / "index"
    interrupted_build(demo_catalog, out, monkeypatch)
    shard = build_folder(out) / "shards" / "00001.passages.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # same size, other bytes: only the checksum can tell
    shard.write_bytes(bytes(data))
    (build_folder(out) / "shards" / "00002.titles.npy").write_bytes(b"")  # truncated
    build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), shard_size=SHARD, ranker=False, progress=False))
    said = capsys.readouterr().out
    assert "shard 1: 00001.passages.npy corrupt or truncated" in said
    assert "shard 2: 00002.titles.npy corrupt or truncated" in said
    assert files(out) == files(straight)


def test_resuming_with_other_settings_is_refused(demo_catalog, tmp_path, monkeypatch):
    out = tmp_path / "index"
    interrupted_build(demo_catalog, out, monkeypatch, after=2)
    with pytest.raises(UserError, match=r"other settings \(passage_tokens differ\).*--fresh"):
        build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), shard_size=SHARD, ranker=False,
                                passage_tokens=64, progress=False))
    meta = build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), shard_size=SHARD, ranker=False,
                                   passage_tokens=64, fresh=True, progress=False))
    assert meta["passages"]["max_tokens"] == 64 and meta["build"]["resumed_shards"] == 0
