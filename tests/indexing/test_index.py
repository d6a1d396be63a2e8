"""Index build -> save -> load -> search with the real MiniLM, updates, atomic writes, bad artifacts."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from indexing.errors import UserError
from indexing.search import load_index
from indexing.store import live_folder
from tests.conftest import ROOT, write_jsonl


@pytest.fixture
def index_copy(demo_index, tmp_path):
    """The demo index's files in one folder: the layout before versions (it loads, its first write migrates)."""
    dst = tmp_path / "index"
    shutil.copytree(live_folder(demo_index), dst)
    return dst


def test_round_trip_finds_products(demo_index, demo_catalog):
    from indexing.catalog import read_catalog

    docs = read_catalog(demo_catalog)
    assert (demo_index / "CURRENT").read_text() == "1\n"
    meta = json.loads((demo_index / "versions" / "1" / "meta.json").read_text())
    assert meta["version"] == 1
    assert meta["count"] == len(docs) and meta["index_type"] == "flat" and meta["dim"] == 384
    assert meta["embedding_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(meta["catalog"]["fingerprint"]) == 32 and meta["embed"] == "title"
    assert meta["format_version"] == 2 and meta["fields"] == ["title", "description"]
    idx = load_index(demo_index)
    row = docs.iloc[17]
    for q in (f"What is '{row.title}'?", f"Qual é a descrição deste produto: {row.title.lower()}?"):
        hits = idx.retrieve(q, k=3)
        assert hits[0].uid == row.uid, (q, [h.title for h in hits])
        assert hits[0].content == row.content and {"dense", "bm25"} <= set(hits[0].retrievers)
        assert hits[0].dense_score > 0.5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_modes_and_k(demo_index):
    idx = load_index(demo_index)
    for mode in ("dense", "bm25", "titles", "descriptions", "hybrid"):
        hits = idx.retrieve("cast iron skillet", k=4, mode=mode)
        assert 1 <= len(hits) <= 4
    assert len(idx.retrieve("cast iron skillet", k=1000)) <= len(idx)


def test_add_upserts_and_remove(index_copy, tmp_path):
    idx0 = load_index(index_copy)
    n0 = len(idx0)
    existing = idx0.docs.iloc[3]
    new = write_jsonl(tmp_path / "new.jsonl", [
        {"uid": "ZZTEST0001", "title": "Quantum Flux Capacitor Toy Kit", "content": "A glowing &amp; humming toy kit."},
        {"uid": existing.uid, "title": existing.title, "content": "Changed description."},
    ])
    from indexing.update import add_products, remove_products

    assert idx0.version == 0  # the layout before versions
    r = add_products(index_copy, [new], progress=False)
    assert r == {"added": 1, "replaced": 1, "count": n0 + 1, "version": 1, "compacted": False, "compacting": None}
    # migrated: version 1 is live, the old top-level files are gone
    assert (index_copy / "CURRENT").read_text() == "1\n" and not (index_copy / "docs.parquet").exists()
    idx = load_index(index_copy)
    hit = idx.retrieve("What is 'Quantum Flux Capacitor Toy Kit'?", k=1)[0]
    assert hit.uid == "ZZTEST0001" and hit.content == "A glowing & humming toy kit."  # cleaned like prepare
    assert idx.retrieve(f"What is '{existing.title}'?", k=1)[0].content == "Changed description."
    assert (idx.docs["uid"] == existing.uid).sum() == 1

    r = remove_products(index_copy, ["ZZTEST0001", "NOPE"])
    assert r == {"removed": 1, "not_found": ["NOPE"], "count": n0, "version": 2, "compacted": False, "compacting": None}
    assert remove_products(index_copy, ["NOPE"])["version"] is None  # nothing removed: no new version
    idx = load_index(index_copy)
    assert idx.version == 2 and sorted(p.name for p in (index_copy / "versions").iterdir()) == ["2"]
    assert "ZZTEST0001" not in set(idx.docs["uid"])
    assert all(h.uid != "ZZTEST0001" for h in idx.retrieve("Quantum Flux Capacitor Toy Kit", k=5))
    assert idx.title_index.ntotal == n0


def test_killed_build_leaves_previous_index_usable(index_copy, tmp_path):
    # a catalog big enough that embedding takes a few seconds
    recs = [{"uid": f"K{i:09d}", "title": f"Sample product number {i} with a longer title {i * 7}",
             "content": f"Description {i}."} for i in range(6000)]
    src = write_jsonl(tmp_path / "big.jsonl", recs)
    from indexing.prepare import prepare

    prepare([src], tmp_path / "bigcat", progress=False, workers=1)
    before = (index_copy / "docs.parquet").read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "ui.cli", "index", "build", "--catalog", str(tmp_path / "bigcat"),
                          "--out", str(index_copy)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and "embed" not in seen:  # wait until it is embedding
        seen += p.stderr.read(64) or ""
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert "embed" in seen
    assert (index_copy / "docs.parquet").read_bytes() == before
    assert load_index(index_copy).retrieve("cast iron skillet", k=1)


def test_truncated_faiss_file_is_a_clear_error(index_copy):
    f = index_copy / "index.faiss"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_index(index_copy)


def test_corrupt_faiss_file_is_a_clear_error(index_copy):
    f = index_copy / "index.faiss"
    size = f.stat().st_size
    f.write_bytes(b"\x00" * size)
    with pytest.raises(UserError, match="index.faiss: corrupt"):
        load_index(index_copy)


def test_missing_piece_is_a_clear_error(index_copy):
    (index_copy / "docs.parquet").unlink()
    with pytest.raises(UserError, match="missing docs.parquet"):
        load_index(index_copy)


def test_other_embedding_model_is_refused(index_copy, tmp_path):
    from indexing.embed import default_model_path

    other = tmp_path / "other-model"
    shutil.copytree(default_model_path(), other)
    w = other / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # different weights, same shapes
    w.write_bytes(bytes(data))
    with pytest.raises(UserError, match="built with embedding model"):
        load_index(index_copy, model=other)


def test_not_an_index(tmp_path):
    with pytest.raises(UserError, match="no index here"):
        load_index(tmp_path / "nothing")
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="no index here"):
        load_index(tmp_path / "x")
    (tmp_path / "x" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="incomplete index"):
        load_index(tmp_path / "x")
    (tmp_path / "x" / "CURRENT").write_text("three\n")
    with pytest.raises(UserError, match="CURRENT: corrupt"):
        load_index(tmp_path / "x")


def test_search_cli_json_and_questions_file(demo_index, tmp_path):
    qf = tmp_path / "q.jsonl"
    qf.write_text('{"id": "a", "question": "What is \'Piano Lullabies for Babies, Vol. 1\'?"}\nnot json\n'
                  '{"id": 7, "question": "Qual é a descrição deste produto: piano lullabies for babies, vol. 1?"}\n')
    r = subprocess.run([sys.executable, "-m", "ui.cli", "search", "--index", str(demo_index), "--questions", str(qf),
                        "--json", "-k", "2"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", 7]
    assert set(out[0]) == {"id", "question", "hits"} and len(out[0]["hits"]) == 2
    assert {"uid", "title", "score"} <= set(out[0]["hits"][0])
    assert out[0]["hits"][0]["title"] == "Piano Lullabies for Babies, Vol. 1" == out[1]["hits"][0]["title"]
    assert "q.jsonl:2" in r.stderr  # the bad line is reported, not fatal
    r = subprocess.run([sys.executable, "-m", "ui.cli", "index", "info", "--index", str(demo_index)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "all-MiniLM-L6-v2" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ui.cli", "search", "x", "--index", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "no index here" in r.stderr and "Traceback" not in r.stderr
