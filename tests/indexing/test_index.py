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
    assert meta["embedding_model"]["name"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert meta["embedding_model"]["kind"] == meta["passage_encoder"]["kind"] == "minilm"
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


def test_sure_margin_is_calibrated_and_applied(demo_index, demo_catalog):
    """The build measures the learned fusion's "sure" margin (indexing/calibrate.py); Index.sure applies it."""
    from indexing.catalog import read_catalog

    idx = load_index(demo_index)
    m, cal = idx.meta["catalog_margin"], idx.meta["catalog_calibration"]
    assert m is not None and cal["questions"] > 20 and 0 < cal["share_sure"] <= 1
    assert cal["wrong_when_sure"] <= cal["max_wrong"]
    docs = read_catalog(demo_catalog)
    named = [f"What is '{t}'?" for t in docs["title"].iloc[:40]]
    hits = idx.retrieve_many(named, k=3)
    assert all(h[0].fused is not None and h[0].fused >= h[1].fused for h in hits)
    sure = [idx.sure(h) for h in hits]
    assert sum(sure) >= 20  # most exact titles are sure ...
    assert all(h[0].uid == u for h, u, s in zip(hits, docs["uid"], sure) if s)  # ... and right when sure
    h = hits[0]
    h[1].fused = h[0].fused - m / 2  # a runner-up closer than the margin: unsure
    assert not idx.sure(h) and not idx.sure(h[:0])


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
    assert r == {"added": 1, "replaced": 1, "count": n0 + 1, "version": 1, "compacted": False, "compacting": None,
                 "title_only": 0, "skipped": []}
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
    # different weights, same shapes: a word embedding (which every encoder made from the model carries; the
    # file's last tensor, the pooler, is not in the ONNX export)
    n = int.from_bytes(data[:8], "little")
    start = json.loads(data[8: 8 + n])["embeddings.word_embeddings.weight"]["data_offsets"][0]
    data[8 + n + start + 4 * 384 * 2000 + 3] ^= 0x40  # the high byte of one weight of token 2000's row
    w.write_bytes(bytes(data))
    with pytest.raises(UserError, match="built with (embedding model|minilm-int8 encoder) .* was given"):
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


def test_ivf_indexes_are_memory_mapped_for_search(demo_catalog, tmp_path):
    """A version without deltas or tombstones serves its IVF lists memory-mapped (store.read_faiss), with
    the same results; a version with a delta reads them into memory to add to them; compaction writes
    ordinary files again."""
    import faiss
    import numpy as np

    from indexing.build import BuildConfig, build_index
    from indexing.store import PASSAGE_VECTORS
    from indexing.update import add_products, compact

    out = tmp_path / "ivf"
    build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), progress=False, ranker=False, index_type="ivf"))
    kind = lambda index: type(faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)).__name__  # noqa: E731
    idx = load_index(out)
    assert kind(idx._cpu["titles"]) == kind(idx._cpu["passages"]) == "OnDiskInvertedLists"
    for name, index in (("index.faiss", idx._cpu["titles"]), (PASSAGE_VECTORS, idx._cpu["passages"])):
        ram = faiss.read_index(str(live_folder(out) / name))
        faiss.extract_index_ivf(ram).nprobe = faiss.extract_index_ivf(index).nprobe
        xq = np.random.default_rng(0).standard_normal((5, index.d)).astype("float32")
        assert all(np.array_equal(a, b) for a, b in zip(index.search(xq, 5), ram.search(xq, 5)))
    hits = idx.retrieve("What is 'Halloween Witch Costume for Girls'?", k=1)
    new = write_jsonl(tmp_path / "new.jsonl", [{"uid": "NEW1", "title": "Quillmark Copper Kettle",
                                                 "content": "A hand-hammered copper kettle that whistles softly."}])
    add_products(out, [new], progress=False, compact="never")
    idx2 = load_index(out)
    assert (kind(idx2._cpu["titles"]) == "ArrayInvertedLists"
            and idx2.retrieve("Quillmark Copper Kettle", k=1)[0].uid == "NEW1")
    compact(out)
    assert "ilod" not in (live_folder(out) / "index.faiss").read_bytes()[:4096].decode("latin-1")  # self-contained
    idx3 = load_index(out)
    assert (kind(idx3._cpu["titles"]) == "OnDiskInvertedLists"
            and idx3.retrieve("Quillmark Copper Kettle", k=1)[0].uid == "NEW1")
    assert idx3.retrieve("What is 'Halloween Witch Costume for Girls'?", k=1)[0].uid == hits[0].uid


@pytest.mark.parametrize("index_type", ["ivfpq", "ivfsq"])
def test_reranked_indexes_score_exactly_and_update(demo_catalog, tmp_path, index_type):
    """A re-ranked index (indexing.vectors.Reranked: IVF codes propose, exact vectors by id re-rank) scores
    its hits with exact cosines, gives vectors back by id, takes adds and removes (tombstones), and compacts
    into one base whose exact vectors keep their ids; its exact vectors are checked like the other files."""
    import faiss
    import numpy as np

    from indexing.build import BuildConfig, build_index
    from indexing.store import EXACT, TITLES
    from indexing.update import add_products, compact, remove_products
    from indexing.vectors import Reranked

    out = tmp_path / "pq"
    meta = build_index(BuildConfig(catalog=str(demo_catalog), out=str(out), progress=False, ranker=False,
                                   index_type=index_type))
    assert meta["index_type"] == meta["passages"]["index_type"] == index_type and meta["rerank"] >= 10
    idx = load_index(out)
    t = idx._cpu["titles"]
    assert isinstance(t, Reranked) and isinstance(t.exact, np.memmap)
    ids = idx.docs["id"].to_numpy()
    X = t.reconstruct_batch(ids)
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-3)
    xq = idx.model.encode(["Halloween Witch Costume for Girls", "a book about a tiger"], normalize_embeddings=True)
    exact = faiss.IndexFlatIP(X.shape[1])
    exact.add(X)
    De, Ie = exact.search(xq, 5)
    D, I = t.search(xq, 5)
    assert np.allclose(D, De, atol=1e-5) and (I[:, 0] == ids[Ie[:, 0]]).all()  # exact scores, the exact best hit
    hit = idx.retrieve("What is 'Halloween Witch Costume for Girls'?", k=1)[0]
    new = write_jsonl(tmp_path / "new.jsonl", [{"uid": "NEW1", "title": "Quillmark Copper Kettle",
                                                 "content": "A hand-hammered copper kettle that whistles softly."}])
    add_products(out, [new], progress=False, compact="never")
    remove_products(out, [hit.uid], progress=False, compact="never")
    idx2 = load_index(out)
    assert idx2.retrieve("Quillmark Copper Kettle", k=1)[0].uid == "NEW1"
    assert hit.uid not in {h.uid for h in idx2.retrieve("What is 'Halloween Witch Costume for Girls'?", k=5)}
    compact(out)
    idx3 = load_index(out)
    assert isinstance(idx3._cpu["titles"], Reranked) and idx3.retrieve("Quillmark Copper Kettle", k=1)[0].uid == "NEW1"
    new_id = int(idx3.docs.loc[idx3.docs["uid"] == "NEW1", "id"].iloc[0])
    assert np.allclose(idx3._cpu["titles"].reconstruct_batch([new_id]),
                       idx2._cpu["titles"].reconstruct_batch([new_id]))
    (live_folder(out) / EXACT[TITLES]).write_bytes(b"\x93NUMPY")  # truncated: caught on load, one line
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_index(out)
