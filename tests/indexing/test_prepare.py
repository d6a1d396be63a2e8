"""`prepare` on whole files: formats, counts after each step, outputs, atomic writes."""

import gzip
import json

import pyarrow.parquet as pq
import pytest

from indexing.errors import UserError
from indexing.prepare import format_stats, prepare
from tests.conftest import DEMO_RAW, write_jsonl


def rec(uid, title, content):
    return {"uid": uid, "title": title, "content": content, "target_ind": [1, 2], "target_rel": [1.0, 1.0]}


def read(out):
    return pq.read_table(out / "catalog.parquet").to_pylist()


@pytest.fixture
def raw_file(tmp_path):
    return write_jsonl(
        tmp_path / "trn.json",
        [
            rec("A1", "Girls Tutu", "High quality 3 layer tutu&#8217;s."),
            rec("A2", "Empty One", ""),
            rec("A3", "Blank", "   \t "),
            rec("A4", None, "no title"),
            rec("A5", 42, "title is a number"),
            {"uid": "A6", "title": "no content key"},
            rec("A7", "Girls Tutu", "High quality 3 layer tutu\u2019s."),  # duplicate after cleaning
            rec("", "No Uid", "Gets a generated id."),
            rec("A9", "Book", "Nice.--This text refers to thePaperbackedition."),
        ],
        raw_lines=['{"uid": "B1", "title": "Broken', "[1, 2]", "not json at all"],
    )


def test_counts_after_every_step(raw_file, tmp_path):
    """--require-description: the catalog before title-only products were kept."""
    stats = prepare([raw_file], tmp_path / "out", progress=False, workers=1, require_description=True)
    c = stats["total"]["counts"]
    assert c == {"read": 12, "valid_json": 9, "has_fields": 6, "non_empty": 4, "unique": 3, "with_description": 3,
                 "title_only": 0}
    f = stats["files"][0]
    assert f["format"] == "amazontitles-jsonl"
    assert f["bad_lines"] == [10, 11, 12]
    assert stats["total"]["changes"]["uids_generated"] == 1
    assert stats["total"]["changes"]["footers_removed"] == 1
    assert stats["records"] == 3
    rows = read(tmp_path / "out")
    assert [r["uid"] for r in rows][:1] == ["A1"]  # first occurrence of a duplicate wins
    assert rows[0]["content"] == "High quality 3 layer tutu\u2019s."
    assert [r["title"] for r in rows] == ["Girls Tutu", "No Uid", "Book"]
    assert any(r["uid"].startswith("gen-") for r in rows)
    assert [r["content"] for r in rows if r["uid"] == "A9"] == ["Nice."]
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["total"] == stats["total"] and len(saved["fingerprint"]) == 32
    table = format_stats(stats)
    assert "12 read → 9 valid JSON → 6 with title+content → 4 non-empty → 3 kept" in table
    assert all(r["has_description"] for r in rows)


def test_title_only_records_are_kept_marked_and_counted(raw_file, tmp_path):
    """Every record with a title is a product: an empty, blank, missing or footer-only description makes
    it title-only (has_description false), counted in the report; only records without a title go."""
    stats = prepare([raw_file], tmp_path / "out", progress=False, workers=1)
    c = stats["total"]["counts"]
    assert c == {"read": 12, "valid_json": 9, "has_fields": 7, "non_empty": 7, "unique": 6, "with_description": 3,
                 "title_only": 3}
    assert (stats["with_description"], stats["title_only"], stats["records"]) == (3, 3, 6)
    assert stats["total"]["changes"]["descriptions_emptied"] == 1  # "   \t " (blank)
    rows = read(tmp_path / "out")
    # described products first (input order), then the title-only ones (input order)
    assert [(r["title"], r["content"], r["has_description"]) for r in rows] == [
        ("Girls Tutu", "High quality 3 layer tutu’s.", True), ("No Uid", "Gets a generated id.", True),
        ("Book", "Nice.", True), ("Empty One", "", False), ("Blank", "", False), ("no content key", "", False)]
    assert "→ 6 kept (duplicates removed: 1) → 3 with a description, 3 title only" in format_stats(stats)


def test_footer_only_description_is_a_title_only_product(tmp_path):
    f = write_jsonl(tmp_path / "trn.json", [rec("R1", "Rightly Dividing the Word",
                                                "--This text refers to thePaperbackedition."),
                                            rec("R2", "Mog&#8217;s Kittens", "Board book.")])
    stats = prepare([f], tmp_path / "out", progress=False, workers=1)
    assert stats["total"]["changes"]["footers_removed"] == 1 and stats["total"]["changes"]["descriptions_emptied"] == 1
    assert {r["uid"]: r["has_description"] for r in read(tmp_path / "out")} == {"R1": False, "R2": True}
    strict = prepare([f], tmp_path / "strict", progress=False, workers=1, require_description=True)
    assert [r["uid"] for r in read(tmp_path / "strict")] == ["R2"] and strict["title_only"] == 0


def test_title_only_duplicates_collapse_into_the_described_product(tmp_path):
    """A title-only record with the title of a described one collapses into it, whichever comes first and
    in whichever file; of two title-only records with one title the first stays."""
    a = write_jsonl(tmp_path / "trn.json", [rec("T1", "Wood Glue", ""), rec("T2", "Hose", ""),
                                            rec("T3", "Hose", "  "), rec("D1", "Tutu", "A tutu.")])
    b = write_jsonl(tmp_path / "tst.json", [rec("T4", "Tutu", ""), rec("D2", "Wood Glue", "Glue for wood.")])
    for workers in (1, 2):
        stats = prepare([a, b], tmp_path / f"out{workers}", progress=False, workers=workers)
        rows = read(tmp_path / f"out{workers}")
        assert [(r["uid"], r["has_description"]) for r in rows] == [("D1", True), ("D2", True), ("T2", False)]
        assert [f["counts"]["unique"] for f in stats["files"]] == [2, 1]  # T1 counted out of trn.json
        assert [f["counts"]["title_only"] for f in stats["files"]] == [1, 0]
        assert stats["total"]["counts"]["non_empty"] - stats["total"]["counts"]["unique"] == 3


def test_workers_give_identical_catalog(raw_file, tmp_path):
    a = prepare([raw_file], tmp_path / "a", progress=False, workers=1)
    b = prepare([raw_file], tmp_path / "b", progress=False, workers=2)
    assert read(tmp_path / "a") == read(tmp_path / "b")
    assert a["total"] == b["total"] and a["fingerprint"] == b["fingerprint"]


def test_gzip_input_detected_from_bytes(raw_file, tmp_path):
    gz = tmp_path / "trn.json.data"  # no .gz extension on purpose
    gz.write_bytes(gzip.compress(raw_file.read_bytes()))
    stats = prepare([gz], tmp_path / "out", progress=False, workers=1)
    assert stats["total"]["counts"]["unique"] == 6


def test_alpaca_array_and_jsonl(tmp_path):
    items = [{"instruction": "Mog&#8217;s Kittens", "input": "", "output": "Board book."},
             {"instruction": "Tutu", "input": "", "output": ""},
             {"instruction": "Prophet", "input": "", "output": "Wisdom."}]
    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps(items, indent=2))
    jl = write_jsonl(tmp_path / "alpaca.jsonl", items)
    s1 = prepare([arr], tmp_path / "o1", progress=False, workers=1)
    s2 = prepare([jl], tmp_path / "o2", progress=False, workers=1)
    assert s1["files"][0]["format"] == "alpaca-json-array"
    assert s2["files"][0]["format"] == "alpaca-jsonl"
    for s, out in ((s1, "o1"), (s2, "o2")):
        assert s["total"]["counts"] == {"read": 3, "valid_json": 3, "has_fields": 3, "non_empty": 3, "unique": 3,
                                        "with_description": 2, "title_only": 1}
        rows = read(tmp_path / out)
        assert rows[0]["title"] == "Mog\u2019s Kittens" and rows[0]["uid"].startswith("gen-")


def test_truncated_alpaca_array_keeps_what_was_read(tmp_path):
    arr = tmp_path / "alpaca.json"
    arr.write_text('[{"instruction": "A", "input": "", "output": "a"}, {"instruction": "B", "inp')
    stats = prepare([arr], tmp_path / "o", progress=False, workers=1)
    assert stats["records"] == 1 and stats["files"][0]["bad_lines"] == [2]


def test_duplicates_removed_across_files(tmp_path):
    a = write_jsonl(tmp_path / "trn.json", [rec("1", "T", "C"), rec("2", "U", "D")])
    b = write_jsonl(tmp_path / "tst.json", [rec("3", "T", "C  "), rec("4", "V", "E")])
    stats = prepare([a, b], tmp_path / "out", progress=False, workers=1)
    assert [f["counts"]["unique"] for f in stats["files"]] == [2, 1]
    assert stats["total"]["counts"]["unique"] == 3


def test_sample_size_and_shards(tmp_path):
    recs = [rec(str(i), f"Title {i}", f"Content {i}") for i in range(25)]
    f = write_jsonl(tmp_path / "trn.json", recs)
    stats = prepare([f], tmp_path / "out", sample_size=10, shard_size=4, progress=False, workers=1)
    assert stats["records"] == 10 and stats["stopped_early_at_sample_size"]
    assert stats["total"]["counts"]["unique"] == 10
    shards = sorted((tmp_path / "out" / "shards").glob("*.parquet"))
    assert [pq.read_metadata(s).num_rows for s in shards] == [4, 4, 2]
    assert [r["uid"] for r in read(tmp_path / "out")] == [str(i) for i in range(10)]


def test_failed_run_leaves_previous_catalog_intact(raw_file, tmp_path):
    out = tmp_path / "out"
    prepare([raw_file], out, progress=False, workers=1)
    before = (out / "catalog.parquet").read_bytes()
    junk = tmp_path / "junk.json"
    junk.write_text("nope\nstill nope\n")
    with pytest.raises(UserError, match="no valid JSON records"):
        prepare([raw_file, junk], out, progress=False, workers=1)
    assert (out / "catalog.parquet").read_bytes() == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_interrupted_run_leaves_previous_catalog_intact(raw_file, tmp_path, monkeypatch):
    import indexing.prepare as P

    out = tmp_path / "out"
    prepare([raw_file], out, progress=False, workers=1)
    before = (out / "catalog.parquet").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P._CatalogWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare([raw_file], out, progress=False, workers=1)
    assert (out / "catalog.parquet").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["catalog.parquet", "stats.json"]


def test_demo_catalog_counts(demo_catalog):
    stats = json.loads((demo_catalog / "stats.json").read_text())
    c = stats["total"]["counts"]
    lines = DEMO_RAW.read_text().splitlines()
    assert c["read"] == len(lines)
    assert c["read"] - c["valid_json"] == 2  # one truncated object, one JSON array
    assert c["has_fields"] == c["valid_json"] - 1  # a title that is a number (a null content is title-only)
    assert 0.3 < c["title_only"] / c["unique"] < 0.45  # ~38% without a description, as in the real data
    assert c["non_empty"] - c["unique"] >= 6  # exact and normalization duplicates
    assert stats["total"]["changes"]["footers_removed"] >= 10
    rows = pq.read_table(demo_catalog / "catalog.parquet").to_pylist()
    glue = next(r for r in rows if r["uid"] == "B00UX401AU")  # the README tour's title-only product
    assert (glue["title"], glue["content"], glue["has_description"]) == ("Wood Glue, 16 oz", "", False)
    assert not any("&#" in r["content"] or "This text refers to" in r["content"] for r in rows)
    assert len({r["uid"] for r in rows}) == len(rows)


def test_real_records_from_shared(shared_data, tmp_path):
    stats = prepare([shared_data / "trn_first500_title_content_alpaca.json",
                     shared_data / "trn_raw_lines_from_readme.jsonl"], tmp_path / "out", progress=False)
    alpaca, raw = stats["files"]
    assert alpaca["format"] == "alpaca-json-array" and raw["format"] == "amazontitles-jsonl"
    # 500 records, all with content, but "Rightly Dividing the Word" has nothing but an edition
    # footer; two editions of "Somebody Else's Kids" differ only by a double space, so they are one
    # product after cleaning. "Rightly Dividing the Word" stays, as a title-only product.
    assert alpaca["counts"] == {"read": 500, "valid_json": 500, "has_fields": 500, "non_empty": 500, "unique": 499,
                                "with_description": 498, "title_only": 1}
    # The two raw lines are Mog's Kittens and Girls Ballet Tutu Neon Blue, both already in the 500.
    assert raw["counts"] == {"read": 2, "valid_json": 2, "has_fields": 2, "non_empty": 2, "unique": 0,
                             "with_description": 0, "title_only": 0}
    rows = read(tmp_path / "out")
    assert [r["title"] for r in rows if not r["has_description"]] == ["Rightly Dividing the Word"]
    mog = next(r for r in rows if r["title"] == "Mog's Kittens")
    assert mog["content"].startswith("Judith Kerr\u2019s best\u2013selling adventures")
    assert sum("This text refers to" in r["content"] for r in rows) == 0
    assert stats["total"]["changes"]["footers_removed"] >= 100
