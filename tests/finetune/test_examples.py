"""RAFT example builder: no leakage across the split, distractor mix, Portuguese phrasings."""

import pandas as pd
import pytest

from finetune.examples import ExampleConfig, build_examples, is_validation
from indexing.errors import UserError
from rag.prompt import NOT_IN_CATALOG
from tests.conftest import FakeIndex


def catalog(n=200):
    return pd.DataFrame({"uid": [f"U{i:04d}" for i in range(n)],
                         "title": [f"Product {i} widget model {i % 17}" for i in range(n)],
                         "content": [f"Description of product {i}, unique text {i * 31}." for i in range(n)]})


def test_split_is_by_product_and_stable():
    docs = catalog(1000)
    val = [u for u in docs["uid"] if is_validation(u)]
    assert 60 < len(val) < 140  # ~10%
    assert val[:6] == ["U0000", "U0005", "U0010", "U0026", "U0029", "U0035"]  # a hash of the uid: pinned


def test_no_validation_product_in_training_prompts():
    docs = catalog()
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig())
    val_uids = {e["uid"] for e in val}
    assert val_uids and not val_uids & {e["uid"] for e in train}
    val_texts = [docs.set_index("uid").loc[u, "content"] for u in val_uids]
    for e in train:
        assert not any(t in e["prompt"] or t in e["completion"] for t in val_texts)


def test_mix_of_oracle_distractor_and_not_first():
    docs = catalog()
    train, _ = build_examples(docs, FakeIndex(docs), ExampleConfig(p_distractor_only=0.2, p_not_first=0.3, p_detail=0,
                                                                   p_draft=0))
    kinds = pd.Series([e["kind"] for e in train]).value_counts(normalize=True)
    assert 0.1 < kinds["distractor"] < 0.3
    assert 0.15 < kinds["oracle-not-first"] < 0.35
    by_uid = docs.set_index("uid")
    for e in train:
        desc = by_uid.loc[e["uid"], "content"]
        if e["kind"] == "distractor":
            assert e["completion"] == NOT_IN_CATALOG and desc not in e["prompt"]
        else:
            title = by_uid.loc[e["uid"], "title"]
            rank = int(e["completion"][1])
            # the response cites the entry as the prompt labels it, then copies its description
            assert e["completion"] == f"[{rank}] {title}\n{desc}" and f"[{rank}] {title}\n{desc}" in e["prompt"]
            first_entry = e["prompt"].split("### Input:\n[1] ")[1].split("\n")[0]
            assert (first_entry == title) == (e["kind"] == "oracle") == (rank == 1)
        assert e["prompt"].count("\n[") <= 3  # k = 3 entries


def test_draft_examples_write_the_description_from_the_title_alone():
    from rag.prompt import DRAFT_INSTRUCTION, build_draft_response

    docs = catalog()
    docs.loc[3, "content"] = "A long description. " * 60
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig(p_draft=0.5))
    drafts = [e for e in train + val if e["kind"] == "draft"]
    assert 0.3 < len(drafts) / len(docs) < 0.7
    by_uid = docs.set_index("uid")
    for e in drafts:
        title, desc = by_uid.loc[e["uid"], "title"], by_uid.loc[e["uid"], "content"]
        assert DRAFT_INSTRUCTION in e["prompt"] and e["prompt"].endswith(f"Title: {title}\n\n### Response:\n")
        assert desc not in e["prompt"] and "[1]" not in e["prompt"]  # the title alone: no catalog entry
        assert e["completion"] == build_draft_response(desc) and len(e["completion"]) <= 600
    assert {e["uid"] for e in drafts if e in val} <= {e["uid"] for e in val if e["kind"] != "draft"}
    again, _ = build_examples(docs, FakeIndex(docs), ExampleConfig(p_draft=0.5))
    assert [e["uid"] for e in again if e["kind"] == "draft"] == [e["uid"] for e in train if e["kind"] == "draft"]


def test_kinds_keeps_only_the_kinds_named():

    docs = catalog()
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig(p_draft=1.0, kinds="draft"))
    assert train and {e["kind"] for e in train + val} == {"draft"}
    assert len(train) + len(val) == len(docs)  # every product's draft, nothing else
    with pytest.raises(UserError, match="unknown kind"):
        build_examples(docs, FakeIndex(docs), ExampleConfig(kinds="draft,drafts"))


def test_questions_in_both_languages():
    docs = catalog()
    train, _ = build_examples(docs, FakeIndex(docs), ExampleConfig(p_detail=0))
    qs = [e["question"] for e in train]
    pt = [q for q in qs if any(w in q for w in ("descrição", "O que é", "Me fale", "Descreva"))]
    assert 0.2 < len(pt) / len(qs) < 0.7
    assert all(f"Question: {e['question']}" in e["prompt"] for e in train)


BOOKS = ["Mog has kittens in this board book. Illustrated by Judith Kerr. For ages 0-3.",
         "A thriller set in Venice. 352 pages. Winner of the Edgar Award.",
         "Unabridged, 6 cassettes, 9 hours. Read by Jim Dale.",
         "A gentle story about friendship."]


def test_detail_examples_quote_the_stating_sentence_or_say_not_stated():
    from rag.detail import _EVIDENCE, detail_kind
    from rag.prompt import NOT_STATED

    n = 120
    docs = pd.DataFrame({"uid": [f"B{i:03d}" for i in range(n)], "title": [f"Book number {i}" for i in range(n)],
                         "content": [BOOKS[i % 4] for i in range(n)]})
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig(p_detail=1.0, p_distractor_only=0.0, p_draft=0))
    kinds = pd.Series([e["kind"] for e in train]).value_counts()
    assert (kinds["detail"] > 30 and kinds["detail-not-stated"] > 10
            and set(kinds.index) <= {"detail", "detail-not-stated"})
    for e in train + val:
        desc, title = BOOKS[int(e["uid"][1:]) % 4], f"Book number {int(e['uid'][1:])}"
        cite, answer = e["completion"].split("\n", 1)
        assert cite.startswith("[") and cite.endswith(f"] {title}") and f"{cite}\n{desc}" in e["prompt"]
        assert detail_kind(e["question"], title) == e["detail"]  # the question asks the kind it is labelled
        if e["kind"] == "detail":
            assert answer in desc and _EVIDENCE[e["detail"]].search(answer)  # word for word, holding the evidence
        else:
            assert answer == NOT_STATED and not _EVIDENCE[e["detail"]].search(desc)
    assert any("Quem" in e["question"] or "Qual" in e["question"] or "Quant" in e["question"] for e in train)


def test_hold_out_products_never_reach_training(tmp_path):
    import json

    docs = catalog()
    held = list(docs["title"][3:9])
    f = tmp_path / "fixture.json"
    f.write_text(json.dumps([{"title": t, "question": f"Who wrote {t}?", "answers": []} for t in held]))
    train, val = build_examples(docs, FakeIndex(docs), ExampleConfig(hold_out=str(f)))
    texts = list(docs["content"][3:9])
    assert {e["uid"] for e in val} >= set(docs["uid"][3:9])
    assert not any(t in e["prompt"] for e in train for t in texts)
    f.write_text('{"title": "not a list"}')
    with pytest.raises(UserError, match="hold-out"):
        build_examples(docs, FakeIndex(docs), ExampleConfig(hold_out=str(f)))


# ---- streamed, resumable example building (finetune/examples.py: write_examples)

def write_catalog(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    docs.to_parquet(folder / "catalog.parquet", index=False)
    return folder


def test_stratified_sample_is_exact_reproducible_and_keeps_band_shares(tmp_path):
    from finetune.examples import LENGTH_BANDS, _band, stratified_sample

    n = 3000
    lengths = [50 + (i * 7919) % 2500 for i in range(n)]  # spread over every band
    docs = pd.DataFrame({"uid": [f"U{i:05d}" for i in range(n)], "title": [f"T{i}" for i in range(n)],
                         "content": ["x" * k for k in lengths]})
    cat = write_catalog(tmp_path / "cat", docs)
    a, b, c = (stratified_sample(cat, 300, seed=1), stratified_sample(cat, 300, seed=1),
               stratified_sample(cat, 300, seed=2))
    assert len(a) == 300 and a == b and a != c and a <= set(docs["uid"])
    band_of = dict(zip(docs["uid"], (_band(k) for k in lengths)))
    for band in range(len(LENGTH_BANDS) + 1):
        share = sum(v == band for v in band_of.values()) / n
        assert abs(sum(band_of[u] == band for u in a) - 300 * share) <= 1  # largest remainders: off by <= 1
    assert stratified_sample(cat, 10**6) == set(docs["uid"])  # more than there are: all of them


def test_interrupted_and_resumed_examples_equal_an_uninterrupted_run(demo_catalog, demo_index, tmp_path):
    from finetune.examples import ExampleConfig, read_examples_meta, write_examples

    cfg = ExampleConfig(max_products=80, chunk_size=16)
    whole = write_examples(demo_catalog, demo_index, tmp_path / "whole", cfg, progress=False)
    assert whole["chunks_done"] == 5 and whole["products"] == 80 and whole["products_in_index"] == 80

    def ctrl_c_after_two(done):
        if done == 2:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        write_examples(demo_catalog, demo_index, part, cfg, progress=False, on_chunk=ctrl_c_after_two)
    meta = read_examples_meta(part)
    assert meta["chunks_done"] == 2 and not meta["finished"]
    with open(part / "train.jsonl", "ab") as f:  # a crash mid-write: half a line past the recorded end
        f.write(b'{"prompt": "torn')
    resumed = write_examples(demo_catalog, demo_index, part, cfg, progress=False)
    for name in ("train.jsonl", "val.jsonl"):
        assert (part / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert resumed["fingerprint"] == whole["fingerprint"] and resumed["examples"] == whole["examples"]

    # finished: a rerun changes nothing; other settings are refused; --fresh replaces
    before = (part / "examples.json").read_text()
    write_examples(demo_catalog, demo_index, part, cfg, progress=False)
    assert (part / "examples.json").read_text() == before
    with pytest.raises(UserError, match="other settings.*config.k"):
        write_examples(demo_catalog, demo_index, part, ExampleConfig(max_products=80, chunk_size=16, k=2),
                       progress=False)
    fresh = write_examples(demo_catalog, demo_index, part, ExampleConfig(max_products=20, chunk_size=16), fresh=True,
                           progress=False)
    assert fresh["products"] == 20


def test_a_product_s_examples_do_not_depend_on_the_others(demo_catalog, demo_index, tmp_path):
    import json

    from finetune.examples import ExampleConfig, write_examples

    def read_split(folder):
        return [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]

    write_examples(demo_catalog, demo_index, tmp_path / "a", ExampleConfig(max_products=40), progress=False)
    write_examples(demo_catalog, demo_index, tmp_path / "b", ExampleConfig(sample=60), progress=False)
    a = {e["uid"]: e for e in read_split(tmp_path / "a")}
    b = {e["uid"]: e for e in read_split(tmp_path / "b")}
    both = set(a) & set(b)
    assert both and all(a[u]["question"] == b[u]["question"] and a[u]["kind"] == b[u]["kind"] for u in both)


def test_example_building_refuses_bad_input(demo_catalog, demo_index, tmp_path):
    from finetune.examples import ExampleConfig, write_examples

    other = write_catalog(tmp_path / "other", catalog(50))  # none of these uids is in the demo index
    with pytest.raises(UserError, match="wrong index"):
        write_examples(other, demo_index, tmp_path / "x", ExampleConfig(), progress=False)
    with pytest.raises(UserError, match="give one"):
        write_examples(demo_catalog, demo_index, tmp_path / "y", ExampleConfig(max_products=5, sample=5),
                       progress=False)
    with pytest.raises(UserError, match=">= 1"):
        write_examples(demo_catalog, demo_index, tmp_path / "z", ExampleConfig(sample=0), progress=False)
