"""Products without a description (title-only): in the index by their titles, no passages; `index add`
takes them and reports every record it skips, with the reason."""

import json
import shutil

import pytest

from indexing.search import load_index
from tests.conftest import write_jsonl

GLUE = "B00UX401AU"  # "Wood Glue, 16 oz": a title-only product of the demo catalog (the README tour's)


@pytest.fixture(scope="module")
def index(demo_index):
    return load_index(demo_index)


@pytest.mark.parametrize("question", ["What is 'Wood Glue, 16 oz'?", "tell me about wood glue, 16 oz.",
                                      "What is 'Wood Glue'?", "Describe the product Wodo Glue, 16 oz.",
                                      "Qual é a descrição deste produto: Wood Glue, 16 oz?",
                                      "Is Wood Glue, 16 oz any good?"])
def test_a_title_only_product_is_found_by_name_and_not_refused(index, question):
    hits = index.retrieve(question, k=3)
    assert hits[0].uid == GLUE and hits[0].content == "" and hits[0].passage is None, [h.title for h in hits]
    assert not index.abstains(hits)


def test_title_only_products_have_titles_indexed_and_no_passages(index):
    docs = index.docs
    title_only = docs[docs["content"] == ""]
    assert 0.3 < len(title_only) / len(docs) < 0.45  # ~38%, as in the real data
    owners = set(docs["id"].to_numpy()[index.passage_owner])
    assert not owners & set(title_only["id"]) and set(docs["id"]) - set(title_only["id"]) == owners
    assert index.meta["count"] == len(docs)
    calibration = index.meta["calibration"]  # recalibrated with them in the index
    assert calibration["correct_abstain_rate"] >= 0.98 and calibration["false_abstain_rate"] <= 0.03
    assert index.abstains(index.retrieve("What is 'Zorvex Levitating Sock Robot'?", k=3))


def test_index_add_takes_title_only_records_and_reports_every_skip(demo_index, tmp_path, capsys):
    from ui.cli import main

    root = tmp_path / "index"
    shutil.copytree(demo_index, root)
    records = [{"uid": "NEW0000001", "title": "Cedar Plant Labels, 50 Pack", "content": "Cedar labels for seedlings."},
               {"uid": "NEW0000002", "title": "Rightly Dividing the Word",
                "content": "--This text refers to thePaperbackedition."},  # only a footer: title-only
               {"uid": "NEW0000003", "title": "Bamboo Cutting Board, Large", "content": ""},
               {"uid": "NEW0000004", "title": None, "content": "A description without a title."},
               {"uid": "NEW0000005", "title": "  ", "content": "A blank title."},
               {"uid": "NEW0000003", "title": "Bamboo Cutting Board, Large (2 Pack)", "content": ""}]
    f = write_jsonl(tmp_path / "new.jsonl", records, raw_lines=['{"uid": "NEW0000006", "title": "Brok'])
    assert main(["index", "add", "--index", str(root), "--input", str(f), "--quiet", "--no-compact",
                 "--skipped", str(tmp_path / "skipped.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "added 3, replaced 0 (2 of them without a description: title-only products)" in out
    assert "skipped 4 records: " in out
    skipped = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert sorted((s.get("uid") or "", s["reason"]) for s in skipped) == [
        ("", "not a JSON object"), ("NEW0000003", "the same uid again later in the input: the later record is "
                                                    "the one added"),
        ("NEW0000004", "no title"), ("NEW0000005", "title empty after cleaning")]
    assert next(s for s in skipped if s["reason"] == "not a JSON object")["line"] == 7
    assert f"{f}: record 4 (uid NEW0000004): no title" in out
    idx = load_index(root)
    for q, uid in (("What is 'Rightly Dividing the Word'?", "NEW0000002"),
                   ("What is 'Bamboo Cutting Board, Large (2 Pack)'?", "NEW0000003")):
        hits = idx.retrieve(q, k=3)
        assert hits[0].uid == uid and hits[0].content == "" and not idx.abstains(hits)


def test_index_add_takes_reviewed_drafts_back(demo_index, tmp_path, capsys):
    """`productqa describe` writes drafts; a person marks the good ones "reviewed": true; `index add` takes
    those as the products' descriptions and reports the rest as not reviewed."""
    from ui.cli import main

    root = tmp_path / "index"
    shutil.copytree(demo_index, root)
    drafts = [{"uid": GLUE, "title": "Wood Glue, 16 oz", "draft": "Wood glue for furniture, dries clear.",
               "model": "SmolLM2-135M-Instruct", "reviewed": True},
              {"uid": "B00KWEEPLM", "title": "Garden Hose 100 ft, Expandable", "draft": "A hose.", "reviewed": False}]
    f = write_jsonl(tmp_path / "drafts.jsonl", drafts)
    assert main(["index", "add", "--index", str(root), "--input", str(f), "--quiet", "--no-compact"]) == 0
    out = capsys.readouterr().out
    assert "added 0, replaced 1 (0 of them without a description" in out
    assert "(uid B00KWEEPLM 'Garden Hose 100 ft, Expandable'): draft not reviewed" in out
    hits = load_index(root).retrieve("What is 'Wood Glue, 16 oz'?", k=3)
    assert hits[0].uid == GLUE and hits[0].content == "Wood glue for furniture, dries clear."
