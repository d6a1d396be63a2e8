"""Encoders (indexing/embed.py): each one embeds the demo catalog and the index finds products with it;
passages searched by BM25 alone stay searchable and updatable; an index refuses another encoder."""

import json
import shutil

import pytest

from indexing.errors import UserError

pytestmark = pytest.mark.slow


def build(catalog, out, titles, passages):
    from indexing.build import BuildConfig, build_index

    return build_index(BuildConfig(catalog=str(catalog), out=str(out), progress=False, ranker=False,
                                   title_encoder=titles, passage_encoder=passages))


@pytest.fixture(scope="module")
def derived_index(demo_catalog, tmp_path_factory):
    """Titles by the int8 ONNX MiniLM, passages by the static model distilled from it."""
    out = tmp_path_factory.mktemp("enc") / "index"
    build(demo_catalog, out, "minilm-int8", "static")
    return out


def asks(docs, n=12):
    """(question, uid): a title question and a description question about each of n demo products."""
    rows = docs[docs["content"].str.len() > 80].head(n)
    return ([(f"What is '{t}'?", u) for t, u in zip(rows["title"], rows["uid"])],
            [(" ".join(c.split()[3:15]), u) for c, u in zip(rows["content"], rows["uid"])])


def test_derived_encoders_embed_and_search(derived_index, demo_catalog):
    import numpy as np

    from indexing.catalog import read_catalog
    from indexing.embed import embed, encoder_identity, load_encoder, load_kind
    from indexing.search import load_index

    idx = load_index(derived_index)
    assert idx.meta["embedding_model"]["kind"] == "minilm-int8" and idx.meta["passage_encoder"]["kind"] == "static"
    assert (idx.meta["dim"], idx.meta["passages"]["dim"]) == (384, 256)
    assert idx.passage_model is not idx.model
    named, described = asks(read_catalog(demo_catalog))
    for mode, questions in (("dense", named), ("hybrid", named), ("descriptions", described), ("hybrid", described)):
        hits = idx.retrieve_many([q for q, _ in questions], k=1, mode=mode)
        right = sum(h[0].uid == u for h, (_, u) in zip(hits, questions))
        assert right >= len(questions) - 1, (mode, right)
    # the int8 model stays close to the model it was made from; the static one is its own space
    titles = [q for q, _ in named]
    X = embed(load_encoder(), titles)
    Y = embed(load_kind(encoder_identity("minilm-int8")), titles)
    assert float(np.min((X * Y).sum(1))) > 0.95
    Z = embed(load_kind(encoder_identity("static")), titles)
    assert Z.shape == (len(titles), 256) and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)


def test_derived_encoders_are_made_once(derived_index):
    from indexing.embed import ENCODER_META, encoder_identity

    a, b = encoder_identity("static"), encoder_identity("static")
    assert a == b and a["hash"] != a["source_hash"]
    info = json.loads((__import__("pathlib").Path(a["path"]) / ENCODER_META).read_text())
    assert info["kind"] == "static" and info["source"]["hash"] == a["source_hash"]
    with pytest.raises(UserError, match="encoder must be one of"):
        encoder_identity("bert-xxl")


def test_another_encoder_is_refused(derived_index, tmp_path):
    from indexing.search import load_index

    copy = tmp_path / "index"
    shutil.copytree(derived_index, copy)
    meta_file = next(copy.glob("versions/*/meta.json"))
    meta = json.loads(meta_file.read_text())
    meta["passage_encoder"]["hash"] = "0" * 32  # as if built by another static model
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="static encoder .* was given: rebuild the index"):
        load_index(copy)
    meta["passage_encoder"] = dict(meta["embedding_model"])  # passages claim to be int8 vectors: wrong dim
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="passage encoder gives 384-dim vectors, its passage index holds 256"):
        load_index(copy)


def test_passages_by_bm25_alone_search_and_update(demo_catalog, tmp_path):
    from indexing.catalog import read_catalog
    from indexing.search import load_index
    from indexing.update import add_products, compact
    from tests.conftest import write_jsonl

    out = tmp_path / "index"
    meta = build(demo_catalog, out, "minilm", "none")
    assert meta["passage_encoder"] == {"kind": "none"} and "dim" not in meta["passages"]
    assert not list(out.glob("versions/*/passages.faiss"))
    idx = load_index(out)
    assert idx.passage_index is None and idx.passage_model is None
    named, described = asks(read_catalog(demo_catalog))
    hits = idx.retrieve_many([q for q, _ in described], k=1, mode="descriptions")  # BM25 over passages alone
    assert sum(h[0].uid == u for h, (_, u) in zip(hits, described)) >= len(described) - 1
    new = write_jsonl(tmp_path / "new.jsonl", [{"uid": "NEW1", "title": "Quillmark Copper Kettle",
                                                 "content": "A hand-hammered copper kettle that whistles softly."}])
    add_products(out, [new], progress=False, compact="never")
    assert load_index(out).retrieve("a kettle made of hammered copper that whistles", k=1)[0].uid == "NEW1"
    compact(out)
    assert load_index(out).retrieve("a kettle made of hammered copper that whistles", k=1)[0].uid == "NEW1"


def test_build_refuses_unknown_encoders(demo_catalog, tmp_path):
    with pytest.raises(UserError, match="--passage-encoder must be one of"):
        build(demo_catalog, tmp_path / "x", "minilm", "bert")


def test_a_damaged_encoder_folder_is_a_clear_error(derived_index, tmp_path, monkeypatch):
    from pathlib import Path

    from indexing.embed import encoder_identity, load_kind

    good = Path(encoder_identity("static")["path"])
    monkeypatch.setenv("PRODUCTQA_CACHE", str(tmp_path))
    bad = tmp_path / "encoders" / good.name
    shutil.copytree(good, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(UserError, match="cannot be loaded .* delete that folder"):
        load_kind(encoder_identity("static"))
