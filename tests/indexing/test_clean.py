"""Every cleaning rule of `prepare`, on single strings (the same code path as whole files)."""

import pytest

from indexing.prepare import clean, stable_uid


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Anna Bell&#8217;s award&#8211;winning", "Anna Bell\u2019s award\u2013winning"),  # decimal
        ("it&#x2019;s", "it\u2019s"),  # hex
        ("Tom &amp; Jerry &eacute;t&eacute; &quot;hi&quot;", 'Tom & Jerry \u00e9t\u00e9 "hi"'),  # named
        ("a&#151;b and don&#146;t", "a\u2014b and don\u2019t"),  # cp1252 codes
        ("double &amp;#8217; escaped", "double \u2019 escaped"),  # escaped twice
        ("AT&amp;T and R&D", "AT&T and R&D"),  # a bare & stays
    ],
)
def test_html_entities(raw, expected):
    assert clean(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Great book.--This text refers to thePaperbackedition.", "Great book."),
        ("Great book. -- This text refers to the Audio CD edition.", "Great book."),
        ("Out.--This text refers to an out of print or unavailable edition of this title.", "Out."),
        ("Alt.--This text refers to an alternateHardcoveredition.", "Alt."),
        ("A--This text refers to thePaperbackedition. B", "A B"),  # in the middle too
        ("--This text refers to thePaperbackedition.", ""),  # nothing left -> dropped later
    ],
)
def test_edition_footers(raw, expected):
    assert clean(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("bell\x07here", "bell here"),
        ("nul\x00x", "nul x"),
        ("tab\tand\nnewline\r\n end", "tab and newline end"),
        ("many     spaces", "many spaces"),
        ("  padded  ", "padded"),
        ("nbsp&nbsp;&nbsp;here", "nbsp here"),
        ("c1\x85control", "c1 control"),
        ("   ", ""),
    ],
)
def test_control_characters_and_whitespace(raw, expected):
    assert clean(raw) == expected


def test_clean_leaves_normal_text_alone():
    text = "Dance tutu for girls ages 2-8 years. Perfect for recitals & fun!"
    assert clean(text) == text


def test_stable_uid_is_deterministic_and_text_dependent():
    a = stable_uid("Title", "Content")
    assert a == "gen-dd05c849c9afb14b"  # pinned: the same record gets the same uid on every run
    assert a != stable_uid("Title", "Content.")
    assert a.startswith("gen-") and len(a) == 20
