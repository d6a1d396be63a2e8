"""Two products in one question: "Mog's Kittens or Mog in the Dark: which is for younger children?",
"X vs Y", "difference between X and Y", "qual é melhor, X ou Y?".

    splits = compare_splits(question)          # every way the words could name two products
    pair = pick_pair(question, splits, index)  # the split whose two halves find two products, or None
    pair = followup_pair(question, hits, last, index)  # the chat: "how does it compare with X?"

A question is only a comparison when the catalog says so: the parse proposes a split at each "or", "vs",
"ou" (and at "and", "e", "&", "with" after "between" / "compare" / "entre", or in a question about "both",
"the same", "ambos"), and `pick_pair` keeps a split whose halves each name a product of their own (its best
hit, not "not in the catalog", holding MIN_TITLE_NAMED of that title's words), where no single product's
title spans the split ("Pride and Prejudice" is one product; "What is 'War or Peace'?" is never split).
Titles holding "and" or "or" are why every split is tried, not only the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "between X and Y", "compare X with Y", "diferença entre X e Y": here "and" separates two products; so it does
# in a question about both ("are X and Y by the same author?", "X e Y são da mesma autora?")
_PAIR_LEAD = re.compile(r"\b(?:between|compare|comparing|compared|comparison|entre|compar[ae]\w*)\s+", re.I)
_BOTH = re.compile(r"\b(?:both|each|same|either|ambos|ambas|mesm[oa]s?|cada\s+um|os\s+dois|as\s+duas)\b", re.I)
# a half names a product when it holds this share of the product's title words (a typo away counts): "Taken at
# the Flood" names "Taken at the Flood (Agatha Christie Collection)"; "babies" does not name "Piano Lullabies
# for Babies, Vol. 3"
MIN_TITLE_NAMED = 0.3
_ALWAYS = r"or|vs\.?|versus|ou"
_AFTER_LEAD = r"and|&|with|to|e|com"
# a clause asking the question, before the names ("which is for younger children, X or Y") or after them
# ("X or Y, which comes first?")
_ASK_BEFORE = re.compile(r"^\W*(?:which|what|who|how|is|are|does|do|should|qual|quais|quem|como|o\s+que|[ée]|devo)\b"
                         r"[^,:;]*[,:;]\s+", re.I)
_ASK_AFTER = re.compile(r"(?:[,:;]\s*|\s+-\s+)(?:which|what|who|how|qual|quais|quem|como|o\s+que)\b.*$|[?!.]+\s*$",
                        re.I)
_QUOTES = "'\"\u2018\u2019\u201c\u201d"


@dataclass
class Pair:
    """Two products named in one question, each with the part of the question naming it and its hits."""
    names: tuple[str, str]
    hits: tuple[list, list]


def compare_splits(question: str) -> list[tuple[str, str]]:
    """Every (left, right) split of the question at a separator that could stand between two product names,
    with the asking clause trimmed from each side; [] when there is no separator."""
    q = " ".join(question.split())
    lead = _PAIR_LEAD.search(q)
    seps = _ALWAYS + (f"|{_AFTER_LEAD}" if lead or _BOTH.search(q) else "")
    start = lead.end() if lead else 0
    out = []
    for m in re.finditer(rf"\s+(?:{seps})\s+", q[start:], re.I):
        left, right = q[start: start + m.start()], q[start + m.end():]
        if len(_OPENING.findall(left)) > len(_CLOSING.findall(left)):
            continue  # inside a quoted title: "What is 'War or Peace'?"
        if not lead:
            left = _ASK_BEFORE.sub("", left)
        right = _ASK_AFTER.sub("", re.sub(r"\?\s+\S.*$", "", right))  # "X and Y? who is each one about"
        left, right = left.strip(" ," + _QUOTES), right.strip(" ," + _QUOTES)
        if not (_WORD.search(left) and _WORD.search(right)):
            continue
        out.append((left, right))
        lw, rw = left.split(), right.split()
        if len(rw) <= 3 and len(lw) > len(rw) and rw[0].lower() in {w.lower() for w in lw}:
            # "Vol. 1 or Vol. 2": the second named by what differs
            out.append((left, " ".join(lw[: -len(rw)] + rw)))
    return out


_OPENING = re.compile(r"(?:^|\s)['\"\u2018\u201c]")
_CLOSING = re.compile(r"['\"\u2019\u201d](?=\s|$|[?!.,;:])")


_WORD = re.compile(r"[^\W_]{2,}")


def pick_pair(question: str, splits: list[tuple[str, str]], index, whole_hits: list | None = None,
              k: int = 3) -> Pair | None:
    """The split whose halves name two different products of the catalog (each half's best hit, neither
    half "not in the catalog", each half holding MIN_TITLE_NAMED of its title's words), the most strongly
    supported one (the weaker half's evidence, highest); None
    when no split does, or when the whole question's best product has a title spanning the split (its
    title holds the words on both sides of the separator)."""
    from indexing.lexical import fuzzy_coverage

    if not splits:
        return None
    names = [n for pair in splits for n in pair]
    found = index.retrieve_many(names, k=k)
    best, best_score = None, float("-inf")
    for i, (left, right) in enumerate(splits):
        a, b = found[2 * i], found[2 * i + 1]
        if not a or not b or a[0].uid == b[0].uid or index.abstains(a) or index.abstains(b):
            continue
        if min(fuzzy_coverage(a[0].title, left), fuzzy_coverage(b[0].title, right)) < MIN_TITLE_NAMED:
            continue  # a half that only shares a word with a title ("... for toddlers or babies?")
        if whole_hits and _spans(whole_hits[0].title, left, right):
            continue
        score = min(index.support(a[0]), index.support(b[0]))
        if score > best_score:
            best, best_score = Pair((left, right), (a, b)), score
    return best


def _spans(title: str, left: str, right: str) -> bool:
    """Does `title` hold the last word before the split and the first word after it, in that order, close
    together ("Pride and Prejudice" for "Pride" | "Prejudice")?"""
    lw, rw = _WORD.findall(left), _WORD.findall(right)
    if not lw or not rw:
        return False
    return re.search(rf"\b{re.escape(lw[-1])}\b\W+(?:\w+\W+)?{re.escape(rw[0])}\b", title, re.I) is not None


@dataclass
class Side:
    """One product's part of a comparison: what the catalog says about what was asked."""
    uid: str
    title: str
    origin: str  # "quote" (a sentence of its description), "not_stated", "no_description"
    text: str  # this side's answer text ("Ages 0-3: \"...\"", or "... doesn't say ...")
    kind: str | None = None
    quote: str | None = None
    quote_span: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return {"uid": self.uid, "title": self.title, "origin": self.origin, "text": self.text, "kind": self.kind,
                "quote": self.quote, "quote_span": list(self.quote_span) if self.quote_span else None}


def compare_sides(question: str, pair: Pair) -> list[Side]:
    """Each product's evidence for the question (rag.detail.read_detail on its own description, the other
    product's title words taken out of the question), word for word from that description or "doesn't say";
    a product without a description says so. The detail asked is read from the question without either title."""
    from rag.detail import (
        check_quote,
        detail_kind,
        detail_text,
        is_portuguese,
        no_description_text,
        not_stated_text,
        read_detail,
        without_title,
    )

    a, b = pair.hits[0][0], pair.hits[1][0]
    bare = without_title(without_title(question, a.title), b.title)
    kind = detail_kind(bare)
    portuguese = is_portuguese(bare)
    sides = []
    for hit, other in ((a, b), (b, a)):
        asked = without_title(question, other.title)
        if not hit.content:
            sides.append(Side(hit.uid, hit.title, "no_description", no_description_text(hit.title, True, portuguese),
                              kind))
            continue
        d = read_detail(asked, hit.title, hit.content)
        span = check_quote(d.quote, hit.content) if d.stated else None
        if span is None:
            sides.append(Side(hit.uid, hit.title, "not_stated", not_stated_text(hit.title, d.kind, portuguese),
                              d.kind))
        else:
            sides.append(Side(hit.uid, hit.title, "quote", detail_text(d), d.kind, d.quote, span))
    return sides


def compare_text(sides: list[Side], portuguese: bool) -> str:
    """Side by side: each product's title, then what its description says."""
    head = "Os dois produtos, lado a lado:" if portuguese else "The two products, side by side:"
    return head + "\n\n" + "\n\n".join(f"**{s.title}**: {s.text}" for s in sides)


# a follow-up that compares: "how does it compare with X?", "is it longer than X?", "e comparado com X?"
_COMPARE_CUE = re.compile(r"\b(?:compare[sd]?|comparing|comparison|versus|vs\.?|than|differ\w*|difference|"
                          r"compara\w*|diferen[çc]a|do\s+que|ou\s+o|ou\s+a)\b", re.I)


def followup_pair(question: str, hits: list, last, index) -> Pair | None:
    """A chat follow-up comparing the product discussed last (`last`, a Hit) with the one it names: the
    question holds a comparing word, its best hit is another product of the catalog (not "not in the
    catalog", holding MIN_TITLE_NAMED of that title's words). None otherwise."""
    from indexing.lexical import fuzzy_coverage

    if last is None or not hits or not _COMPARE_CUE.search(question) or hits[0].uid == last.uid:
        return None
    if index.abstains(hits) or fuzzy_coverage(hits[0].title, question) < MIN_TITLE_NAMED:
        return None
    return Pair((last.title, hits[0].title), ([last], hits))
