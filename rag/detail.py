"""Detail answers without the model: the sentence of a product's description that states what a
question asks ("what age is Mog's Kittens for?" -> "Ages 0-3", quoting the sentence it comes from),
or, when the description holds nothing of the kind asked, "the catalog's description doesn't say".

    from rag.detail import read_detail
    d = read_detail("how many pages is Wolf Hall?", title, content)
    d.kind, d.stated, d.short, d.quote, d.span          # span: (start, end) of the quote in `content`

This is `eval answers`' `retrieval+sentence` system and the check every quote passes (`check_quote`):
  1. the question's detail kind (author, pages, age, length, ...) from its words (English and
     Portuguese, `KINDS`); a question of no known kind is answered by its most similar sentence;
  2. the description's sentences (`sentences`, character spans into the description);
  3. for a known kind, only sentences holding that kind's evidence (a number of pages, an age range,
     "read by", ...) are candidates; none -> not stated; among candidates (or all sentences, for no
     kind) the one sharing most of the question's words (stemmed, without the title's and stop words,
     each weighted by how few of the description's sentences hold it; a sentence a short answer can
     be read from first). For the main character: where the name the description uses most (twice
     or more, not the title's) is first named. Adding MiniLM's cosine, or a logistic regression over
     these scores and the cosine, scored no better on the detail fixture's held-out half (docs/results.md
     "Detail questions"), so no embedding model is used;
  4. the short answer is the evidence itself where the kind has a short form ("352 pages", "Ages 3-5",
     "by Hilary Mantel"), else the quoted clause.

Run `productqa eval answers --detail FILE` to measure it (rag/evaluate.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from indexing.lexical import _language_words, _stopwords, is_portuguese  # noqa: F401 (re-exported)

# kind -> (question words, evidence in a sentence, what is missing "doesn't say ...": (en, pt))
_NUM = r"\d+(?:[,.]\d+)*"
_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                 "fifteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundreds?",
                 "dozens?", "thousands?")
_MONTHS = r"(?:january|february|march|april|may|june|july|august|september|october|november|december)"
# a date, a year, a decade or a century ("April 15, 1989", "1951", "the 1920s", "16th-century")
_DATE = (rf"\b{_MONTHS}\s+\d{{1,2}},?\s+(?:1[5-9]|20)\d\d\b|\b(?:1[5-9]|20)\d0s\b|\b(?:1[5-9]|20)\d\d\b|"
         r"\b\d{1,2}(?:st|nd|rd|th)[\s-]+century\b")
KINDS: dict[str, tuple[str, str, tuple[str, str]]] = {
    "illustrator": (r"illustrat\w*|pictures|drawings|ilustr\w*|desenh\w*",
                    r"illustrat\w*|pictures by|drawings|ilustra\w*", ("who illustrated it", "quem o ilustrou")),
    "narrator": (r"narrat\w*|read\s+by|who\s+(?:reads|performs|voices)|reader|narra\w*|quem\s+l[êe]",
                 r"read\s+by|narrat\w*|perform\w*|reads\b|reader|recount\w*|\bhear\s+[A-Z]|\bvoice|lido\s+por|narrad\w*",
                 ("who narrates it", "quem o narra")),
    "author": (r"who\s+(?:wrote|writes|penned|is\s+(?:the\s+)?(?:author|writer))|\bauthor|\bwriter|written\s+by|"
               r"quem\s+(?:escreveu|é\s+o\s+autor)|\bautor\w*|escrit\w*\s+por",
               r"\bby\s+[A-Z]|(?i:author|written|writes|wrote|novelist|writer|novel by|autor)",
               ("who wrote it", "quem o escreveu")),
    "pages": (r"pages?\b|p[áa]ginas?", rf"{_NUM}\s*(?:-\s*)?(?:pages?|pp\b|p[áa]ginas)",
              ("how many pages it has", "quantas páginas tem")),
    "age": (r"\bage[sd]?\b|how\s+old|years?\s+old|reading\s+level|\bgrades?\b|\bidade\b|faixa\s+et[áa]ria|\banos\b|"
            r"(?:young|old)(?:er|est)\s+(?:kids|children|readers|child)|mais\s+(?:novos?|velhos?)",
            rf"\bages?\s*{_NUM}|aged\s*{_NUM}|{_NUM}\s*(?:-|to|–|and\s+up|\+)\s*(?:{_NUM}\s*)?(?:years?|yrs)|"
            r"years?\s+old|grades?\s*\d|pre-?school|toddlers?|bab(?:y|ies)|young\s+(?:readers|children)|"
            r"\bteens?\b|young\s+adult|beginning\s+readers|first\s+readers|\bidade\b",
            ("what age it is for", "para que idade é")),
    "length": (r"how\s+long|running\s+time|\blonger\b|\bshorter\b|mais\s+(?:longo|curto)|"
               r"how\s+many\s+(?:cds?|discs?|cassettes?|tapes?|hours|minutes)|"
               r"\b(?:cds?|discs?|cassettes?|tapes?)\b|minutes|hours|dura[çc][ãa]o|quant[oa]s\s+(?:cds?|fitas|discos|horas)",
               rf"{_NUM}\s*(?:-\s*)?(?:cds?|discs?|cassettes?|tapes?|hours?|hrs?|minutes?|mins?)\b|"
               r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve)\s+(?:cds?|discs?|cassettes?|tapes?|hours?)\b|"
               r"\b(?:un)?abridged\b",
               ("how long it is", "qual é a duração")),
    "format": (r"abridged|unabridged|hardcover|hardback|paperback|board\s+book|format|audio\s*book|edition|"
               r"formato|edi[çc][ãa]o|capa\s+dura|brochura|resumid\w*|integral",
               r"\b(?:un)?abridged\b|hardcover|hardback|paperback|board\s+books?|audio|cassettes?|\bcds?\b|edition|"
               r"pop-up|flap", ("what format it is", "qual é o formato")),
    "includes": (r"come\s+with|comes\s+with|include|what'?s\s+in|contains?|in\s+the\s+box|vem\s+com|inclu\w*|cont[ée]m",
                 r"includ\w*|contain\w*|comes?\s+with|together\s+with|plus\b|features?\b|collection\s+of|"
                 r"complete\s+with|inclu\w*", ("what it includes", "o que inclui")),
    "setting": (r"^\W*where\b|\bwhere\s+(?:is|was|does|did|do)\b|set\s+in|take\s+place|takes\s+place|setting|"
                r"what\s+(?:period|era|century)|"
                r"what\s+(?:village|town|city|country|island|place|state|planet)|onde|se\s+passa|ambientad\w*|[ée]poca|"
                r"cidade|pa[íi]s",
                r"\bin\s+(?:the\s+)?(?:[A-Z]\w+|\d{4}s?|\w+(?:teenth|tieth)\s+century)|\b1[5-9]\d\ds?\b|\b20\d\ds?\b|"
                r"(?i:\bset\s+(?:in|on|against|during)|takes?\s+place|during|century|village|town|city|island|"
                r"countryside|-era\b|\bera\b)", ("where it is set", "onde se passa")),
    "character": (r"main\s+character|protagonist|hero(?:ine)?|who\s+is\s+(?:it|the\s+(?:book|story))\s+about|"
                  r"personage\w*|protagonista|sobre\s+quem",
                  r"\b[A-Z][a-z]+(?:'s)?\b.*\b(?:is|was|has|must|finds?|learns?|discovers?)\b|hero(?:ine)?|"
                  r"\bstory\s+of\b|protagonist", ("who the main character is", "quem é o personagem principal")),
    "series": (r"series|part\s+of|which\s+book|volume|trilogy|sequel|s[ée]rie|cole[çc][ãa]o|volume",
               r"series|\bbook\s+(?:one|two|three|\d+)|volume|trilogy|sequel|quartet|\bvol\.?\s*\d|collection|"
               r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th))\b[\w\s.'-]{0,40}?"
               r"\b(?:mystery|novel|book|installment|instalment|adventure|outing|entry|title)",
               ("whether it is part of a series", "se faz parte de uma série")),
    "award": (r"awards?|prizes?|\bwon\b|\bwin\b|winner|bestsell\w*|pr[êe]mi\w*|ganhou|vencedor",
              r"awards?|prizes?|winner|\bwon\b|medal|shortlisted|longlisted|bestsell\w*|acclaimed|pr[êe]mi\w*",
              ("whether it won an award", "se ganhou algum prêmio")),
    "size": (r"\bsize\b|how\s+big|how\s+large|how\s+tall|how\s+long\s+is\s+the|dimensions?|length\s+of|measure|tamanho|"
             r"dimens\w*|mede|comprimento|altura|largura",
             rf"{_NUM}\s*(?:-\s*)?(?:inch(?:es)?|in\.|\"|cm|mm|centimet\w+|feet|ft|foot)\b|\bsizes?\b|"
             r"\blarge\b|\bsmall\b|one\s+size|fits", ("what size it is", "qual é o tamanho")),
    "material": (r"made\s+(?:of|from)|material|fabric|what\s+is\s+it\s+made|feit[oa]\s+de|tecido",
                 r"cotton|polyester|nylon|leather|wood(?:en)?|plastic|metal|tulle|silk|wool|steel|satin|spandex|"
                 r"rubber|made\s+(?:of|from)|algod[ãa]o", ("what it is made of", "de que é feito")),
    "weight": (r"weigh\w*|\bheavy\b|peso|pesa", rf"{_NUM}\s*(?:lbs?|pounds?|oz|ounces?|kg|kilos?|grams?|g)\b|weigh\w*",
               ("how much it weighs", "quanto pesa")),
    "price": (r"\bprice|\bcost|how\s+much\s+(?:is|does|do)|pre[çc]o|custa|valor",
              rf"[$£€]\s*{_NUM}|\bprice|{_NUM}\s*(?:dollars|pounds|euros)", ("what it costs", "quanto custa")),
    "colour": (r"colou?rs?\b|\bcor(?:es)?\b", r"\b(?:colou?rs?|red|blue|green|yellow|pink|black|white|purple|orange|"
               r"brown|grey|gray|gold|silver)\b", ("what colour it is", "de que cor é")),
    "warranty": (r"warrant\w*|guarantee\w*|garantia", r"warrant\w*|guarantee\w*|garantia",
                 ("whether it has a warranty", "se tem garantia")),
    "battery": (r"batter\w*|charge|bateria|pilhas?", r"batter\w*|rechargeable|charg\w*|pilhas?",
                ("anything about batteries", "nada sobre baterias")),
    "year": (r"what\s+year|when\s+was\s+(?:it|this|\S+(?:\s+\S+){0,6})\s+(?:published|released|written|made)|"
             r"(?:came|come|comes)\s+out\s+first|published\s+first|first\s+published|saiu\s+primeiro|"
             r"publication\s+(?:date|year)|release\s+date|em\s+que\s+ano|quando\s+(?:foi\s+)?(?:publicad|lan[çc]ad)\w*",
             r"\b(?:1[5-9]|20)\d\d\b", ("when it was published", "quando foi publicado")),
    "isbn": (r"\bisbn\b", r"\bisbn\b", ("its ISBN", "o ISBN")),
    # the generic ones, read after every specific kind: "how many photographers ...?", "when did it come out?"
    "count": (r"how\s+many|number\s+of|quant[oa]s\b", rf"\b(?:{_NUM}|{'|'.join(_NUMBER_WORDS)})\b",
              ("how many", "quantos")),
    "when": (r"^\W*when\b|\bwhen\s+(?:was|were|did|does|is|do)\b|em\s+que\s+(?:ano|dia|data|época)|\bquando\b",
             rf"{_DATE}", ("when", "quando")),
}
# first match wins: the specific kinds (illustrator before author, weight before size, ...)
ORDER = ("isbn", "warranty", "battery", "weight", "price", "colour", "illustrator", "narrator", "author", "pages",
         "length", "age", "format", "includes", "material", "size", "award", "series", "year", "setting", "character",
         "count", "when")
_Q = {k: re.compile(KINDS[k][0], re.I) for k in ORDER}
_EVIDENCE = {k: re.compile(KINDS[k][1], re.I if k not in ("author", "setting", "character") else 0) for k in ORDER}
# where the evidence itself is a good short answer ("352 pages", "Ages 3-5", "3 CDs"); others quote the clause
SHORT_KINDS = ("pages", "length", "weight", "price", "size")
_SHORT_FORM = SHORT_KINDS + ("age", "author", "count", "when", "year")
_AUTHOR_NAME = re.compile(r"\bby\s+((?:[A-Z][\w.'-]*\.?\s*){1,4})")
_PERSON = r"((?:[A-Z][\w.'’-]*\.?\s?){1,4})"  # "Jim Dale", "Elinor M. Brent-Dyer"
_WRITER_NAME = re.compile(rf"\b(?:author|writer|novelist|writing\s+as)\s+{_PERSON}")  # "Indian author Roy"
_BY_NAME = {"narrator": re.compile(rf"\b(?i:read|narrated|performed|voiced)\s+by\s+{_PERSON}"),
            "illustrator": re.compile(rf"\b(?i:illustrated|illustrations|pictures|drawings|art)\s+by\s+{_PERSON}")}
# a place or a period: "in Wyoming", "on Folly Island", "in 16th-century England", "in Potsdam in 1747"
_PLACE_SPAN = re.compile(r"\b(?:in|on|at|near|off)\s+(?:the\s+)?(?:(?:\d{1,2}(?:st|nd|rd|th)-century|\d{4}s?|"
                         r"[A-Z][\w'’-]+)(?:\s+(?:of\s+|de\s+)?[A-Z][\w'’-]*|\s+in\s+\d{4}s?\b)*)")
# a sentence ends at . ! ? before a capital, but not after an initial ("James R. Gaines") or a title
_NOT_END = "".join(f"(?<!{a})" for a in (r"\b[A-Z]\.", "Mr.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "Mrs.", "vs.",
                                         "Vol.", "No."))
_SENTENCE_END = re.compile(rf"(?<=[.!?]){_NOT_END}[\"')\]]*\s+(?=[\"'(\[]*[A-Z0-9])|\n+|\s+-{{2,}}\s*|\s+[•·]\s+")
# reviewers' and publishers' boilerplate states nothing about the product
_BOILERPLATE = re.compile(r"copyright|all rights reserved|reed business information|this text refers to|"
                          r"\b(?:Lib\.|Library),\s+\w+", re.I)
_CLAUSE_END = re.compile(r"[;:]\s+|\s+[-–—]\s+|,\s+(?=(?:and|but|which|while|with)\b)")
MAX_QUOTE_WORDS = 40  # a longer sentence is narrowed to its clause holding the evidence
_WORDS = re.compile(r"[^\W_]+", re.U)


@dataclass
class Detail:
    kind: str | None  # the detail asked ("age", "pages", ...), None for a question of no known kind
    stated: bool  # the description holds it
    short: str = ""  # the short answer ("Ages 3-5"; the quote where there is no shorter form)
    quote: str = ""  # the sentence (or clause) stating it, word for word from the description
    span: tuple[int, int] | None = None  # the quote's [start, end) in the description
    sentence: tuple[int, int] | None = None  # the whole sentence's, where the quote is a part of it


def without_title(question: str, title: str | None) -> str:
    """`question` with the product title's words taken out, word by word (so a partial title or one
    with a typo comes out too): what is left is what the question asks about the product."""
    if not title:
        return question
    words = {w.lower() for w in _WORDS.findall(title)}
    return _WORDS.sub(lambda m: " " if m.group(0).lower() in words else m.group(0), question)


def detail_kind(question: str, title: str | None = None) -> str | None:
    """The detail a question asks for (KINDS), or None; the product's `title`, where known, is taken out
    first ("what is The Age of Innocence?" asks no age)."""
    q = without_title(question, title)
    return next((k for k in ORDER if _Q[k].search(q)), None)


def sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of the sentences of `text`, stripped, in order."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if _WORDS.search(text[s:e]):
            out.append((s, e))
    return out


def _narrow(text: str, s: int, e: int, at: int) -> tuple[int, int]:
    """The clause of text[s:e] holding position `at`, when the sentence is longer than MAX_QUOTE_WORDS;
    a clause still longer: MAX_QUOTE_WORDS of its words around `at` (the quote stays word for word)."""
    if len(text[s:e].split()) <= MAX_QUOTE_WORDS:
        return s, e
    cuts = [s] + [s + m.end() for m in _CLAUSE_END.finditer(text[s:e])] + [e]
    for a, b in zip(cuts, cuts[1:]):
        if a <= at < b:
            b2 = b
            while b2 > a and (text[b2 - 1].isspace() or text[b2 - 1] in ";:,-–—"):
                b2 -= 1
            s, e = a, b2
            break
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[s:e])]
    if len(words) <= MAX_QUOTE_WORDS:
        return s, e
    i = next((j for j, (a, b) in enumerate(words) if s + b > at), 0)
    first = max(0, min(i - MAX_QUOTE_WORDS // 4, len(words) - MAX_QUOTE_WORDS))
    return s + words[first][0], s + words[first + MAX_QUOTE_WORDS - 1][1]


def _focus(asked: str, text: str, s: int, e: int) -> int:
    """Where in text[s:e] the question's rarest word (longest, as a proxy) first occurs: what a quote of a
    long sentence is narrowed around when the question names no kind."""
    words = sorted(_stems(asked), key=len, reverse=True)
    low = text[s:e].lower()
    for w in words:
        at = low.find(w)
        if at >= 0:
            return s + at
    return s


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def check_quote(quote: str, content: str) -> tuple[int, int] | None:
    """Where `quote` occurs in `content`, ignoring case and whitespace: its [start, end) span, or None
    (a quote that is not word for word the cited entry's is never shown)."""
    q = normalise(quote).strip(" \"'“”")
    if not q:
        return None
    # map each character of the normalised content back to its position in `content`
    norm, pos, prev_space = [], [], True
    for i, ch in enumerate(content):
        if ch.isspace():
            if not prev_space:
                norm.append(" "), pos.append(i)
            prev_space = True
        else:
            norm.append(ch.lower()), pos.append(i)
            prev_space = False
    at = "".join(norm).find(q)
    return None if at < 0 else (pos[at], pos[at + len(q) - 1] + 1)


def _stems(text: str) -> set[str]:
    """The stemmed, lower-cased words of `text` without stop words ("performs" ~ "performed")."""
    from indexing.lexical import _stemmer

    stem = _stemmer().stemWord
    return {stem(w.lower()) for w in _WORDS.findall(text)} - _stop()


def _overlap(question_words: set[str], sentence_words: list[set[str]]) -> list[float]:
    """Each sentence's share of the question's words, each word weighted by how few of the description's
    sentences hold it (BM25's idf over sentences): "village" in one sentence outweighs "Poirot" in
    three when the question asks "what village does Poirot go to?"."""
    import math

    n = len(sentence_words)
    idf = {w: math.log(1 + n / (1 + sum(w in s for s in sentence_words))) for w in question_words}
    total = sum(idf.values()) or 1.0
    return [sum(idf[w] for w in question_words & s) / total for s in sentence_words]


def _short(kind: str | None, quote: str, question: str = "") -> str:
    if kind == "count":  # the number and the thing counted: "Ninety photographers"
        nouns = {cognate(w) for w in _WORDS.findall(question) if len(w) > 3}  # "fotógrafos" ~ "photographers"
        for m in re.finditer(rf"\b(?:{_NUM}|{'|'.join(_NUMBER_WORDS)})\b(?:\s+[\w-]+){{0,3}}", quote, re.I):
            words = m.group(0).split()
            for n, w in enumerate(words[1:], 1):
                if cognate(w) in nouns:
                    return " ".join(words[: n + 1])
        return quote
    if kind in ("when", "year"):
        m = re.search(_DATE if kind == "when" else r"\b(?:1[5-9]|20)\d\d\b", quote, re.I)
        return m.group(0) if m else quote
    if kind == "author":
        if m := _AUTHOR_NAME.search(quote):
            return f"by {m.group(1).strip()}"
        m = _WRITER_NAME.search(quote)  # "author Reginald Hill": word for word, so that its span is known
        return m.group(0).strip().rstrip(".,") if m else quote
    if kind in ("narrator", "illustrator"):
        m = _BY_NAME[kind].search(quote)
        return m.group(0).strip().rstrip(".,") if m else quote
    if kind == "setting":
        m = _PLACE_SPAN.search(quote)
        return m.group(0).strip() if m else quote
    if kind in SHORT_KINDS:
        m = _EVIDENCE[kind].search(quote)
        return m.group(0) if m else quote
    if kind == "age":
        m = re.search(rf"\bages?\s*{_NUM}(?:\s*(?:-|to|–|and\s+up|\+)\s*(?:{_NUM})?)?|aged\s*{_NUM}[^,.;]*|"
                      rf"{_NUM}\s*(?:-|to|–)\s*{_NUM}\s*(?:years?|yrs)(?:\s+old)?|grades?\s*\d+(?:\s*(?:-|to|–)\s*\d+)?",
                      quote, re.I)
        return m.group(0) if m else quote
    return quote


@lru_cache(maxsize=1)
def _stop() -> frozenset:
    return frozenset(_stopwords())


_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")


def _main_name(texts: list[str], title: str) -> str | None:
    """The name a description mentions most, at least twice (a story's blurb keeps naming its hero),
    not a stop word ("The", "But") nor a word of the title."""
    skip = {w.lower() for w in _WORDS.findall(title)} | _stop()
    counts: dict[str, int] = {}
    for t in texts:
        for m in _NAME.finditer(t):
            if m.group(0).lower() not in skip:
                counts[m.group(0)] = counts.get(m.group(0), 0) + 1
    name, n = max(counts.items(), key=lambda kv: kv[1], default=(None, 0))
    return name if n >= 2 else None


def read_detail(question: str, title: str, content: str) -> Detail:
    """The sentence of `content` answering `question` about the product `title` (module docstring; the learned
    alternative, measured against it and not the default: rag.evidence.read_ranked)."""
    asked = without_title(question, title)
    kind = detail_kind(asked)
    spans = sentences(content)
    if not spans:
        return Detail(kind, False)
    qwords = _stems(asked)
    spans = [(s, e) for s, e in spans if not _BOILERPLATE.search(content[s:e])] or spans
    name = _main_name([content[s:e] for s, e in spans], title) if kind == "character" else None
    if name is not None:  # the hero: where the most-named name is first named
        cands = [next((s, e, s + m.start()) for s, e in spans if (m := re.search(rf"\b{name}\b", content[s:e])))]
    elif kind is not None:
        cands = [(s, e, m.start() + s) for s, e in spans if (m := _EVIDENCE[kind].search(content[s:e]))]
        if not cands:
            return Detail(kind, False)
    else:
        cands = [(s, e, None) for s, e in spans]  # where to narrow: found for the chosen sentence only
    # a sentence a short answer can be read from ("Ages 3-5", "by Judith Kerr") beats one that only
    # mentions the kind ("for young children")
    if is_portuguese(asked):  # Portuguese words meet the English description's as cognates ("bibliografia")
        qwords = {cognate(w) for w in _WORDS.findall(asked) if len(w) > 3 and w.lower() not in _language_words()[0]}
        overlap = dict(zip(spans, _overlap(qwords, [{cognate(w) for w in _WORDS.findall(content[s:e])}
                                                    for s, e in spans])))
    else:
        overlap = dict(zip(spans, _overlap(qwords, [_stems(content[s:e]) for s, e in spans])))
    scores = [overlap[s, e] + (0.5 if kind in _SHORT_FORM and _short(kind, content[s:e], asked) != content[s:e]
                               else 0.0) for s, e, _ in cands]
    best = max(range(len(cands)), key=lambda i: (scores[i], -i))  # ties: the earlier sentence
    s0, e0, at = cands[best]
    s, e = _narrow(content, s0, e0, _focus(asked, content, s0, e0) if at is None else at)
    quote = content[s:e]
    return Detail(kind, True, _short(kind, quote, asked), quote, (s, e), (s0, e0))


def quoted(kind: str | None, content: str, span: tuple[int, int]) -> Detail:
    """The Detail of a quote already checked to be content[span[0]:span[1]] (a model's, in read mode)."""
    quote = content[span[0]:span[1]]
    return Detail(kind, True, _short(kind, quote), quote, span)


def not_stated_text(title: str, kind: str | None, portuguese: bool) -> str:
    """"The catalog's description of *Title* doesn't say how much it weighs." (or in Portuguese)."""
    what = KINDS[kind][2][1 if portuguese else 0] if kind else ("isso" if portuguese else "that")
    if portuguese:
        return f"A descrição de *{title}* no catálogo não diz {what}."
    return f"The catalog's description of *{title}* doesn't say {what}."


def no_description_text(title: str, detail: bool, portuguese: bool) -> str:
    """A product the catalog holds without a description: "'Wood Glue, 16 oz' is in the catalog, but ..."
    (a detail question: "... nothing to answer this from"), in the question's language."""
    if portuguese:
        return (f"'{title}' está no catálogo, mas sem descrição: o catálogo não tem de onde responder a isso."
                if detail else f"'{title}' está no catálogo, mas o catálogo não tem uma descrição dele.")
    return (f"'{title}' is in the catalog, but its entry has no description: the catalog holds nothing to answer "
            "this from." if detail else f"'{title}' is in the catalog, but the catalog holds no description of it.")


def draft_lead(title: str, portuguese: bool) -> str:
    """What a drafted answer starts with: the catalog has no description; what follows is the model's."""
    if portuguese:
        return (f"O catálogo não tem descrição de '{title}'. Um rascunho escrito pelo modelo só a partir do "
                "título (não vem do catálogo):\n\n")
    return (f"The catalog has no description of '{title}'. A draft written by the model from the title alone "
            "(not from the catalog):\n\n")


def detail_text(d: Detail) -> str:
    """The answer's text: the short answer, then the quote (once, where they are the same); "…" marks a
    quote that is part of its sentence."""
    cut = d.sentence and d.span and d.sentence != d.span
    quote = (f"{'…' if cut and d.span[0] > d.sentence[0] else ''}\"{d.quote}\""
             f"{'…' if cut and d.span[1] < d.sentence[1] else ''}")
    if d.short and d.short != d.quote:
        return f"{d.short}: {quote}"
    return quote


# ---- questions about one detail, for training examples (finetune/examples.py) and evaluation.
# Several phrasings per kind and language; each is recognised as its kind by `detail_kind` (tested).
QUESTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (English, Portuguese)
    "illustrator": (("Who illustrated '{t}'?", "Who did the pictures in {t}?", "who is the illustrator of {t}"),
                    ("Quem ilustrou '{t}'?", "Quem fez as ilustrações de {t}?")),
    "narrator": (("Who narrates the audiobook of '{t}'?", "Who reads {t}?", "who is the narrator of {t}?"),
                 ("Quem narra '{t}'?", "Quem lê o audiolivro {t}?")),
    "author": (("Who wrote '{t}'?", "Who is the author of {t}?", "{t}: who is it written by?"),
               ("Quem escreveu '{t}'?", "Quem é o autor de {t}?")),
    "pages": (("How many pages does '{t}' have?", "What's the page count of {t}?", "{t} - how many pages?"),
              ("Quantas páginas tem '{t}'?", "{t} tem quantas páginas?")),
    "age": (("What age is '{t}' for?", "What age group is {t} aimed at?", "how old should a child be for {t}?"),
            ("Para que idade é '{t}'?", "Qual é a faixa etária de {t}?")),
    "length": (("How long is '{t}'?", "What is the running time of {t}?", "how many CDs or cassettes is {t}?"),
               ("Qual é a duração de '{t}'?", "Quantos CDs tem {t}?")),
    "format": (("What format is '{t}'?", "Is {t} a hardcover or a paperback?", "which edition of {t} is this?"),
               ("Qual é o formato de '{t}'?", "{t} é capa dura ou brochura?")),
    "includes": (("What does '{t}' come with?", "What's included with {t}?", "what does {t} contain?"),
                 ("O que vem com '{t}'?", "O que inclui {t}?")),
    "material": (("What is '{t}' made of?", "What material is {t}?"),
                 ("'{t}' é feito de quê?", "Qual é o tecido de {t}?")),
    "size": (("What size is '{t}'?", "What are the dimensions of {t}?", "how big is {t}?"),
             ("Qual é o tamanho de '{t}'?", "Quais são as dimensões de {t}?")),
    "award": (("Did '{t}' win any awards?", "Has {t} won a prize?"),
              ("'{t}' ganhou algum prêmio?", "{t} recebeu algum prêmio?")),
    "series": (("Is '{t}' part of a series?", "Which series does {t} belong to?"),
               ("'{t}' faz parte de uma série?", "De qual coleção é {t}?")),
    "year": (("What year did '{t}' come out?", "In what year was {t} published?"),
             ("Em que ano foi publicado '{t}'?", "Quando foi publicado {t}?")),
    "setting": (("Where is '{t}' set?", "Where does {t} take place?", "what period is {t} set in?"),
                ("Onde se passa '{t}'?", "Em que época se passa {t}?")),
    "character": (("Who is the main character of '{t}'?", "Who is the hero of {t}?"),
                  ("Quem é o protagonista de '{t}'?", "Quem é o personagem principal de {t}?")),
    "weight": (("How much does '{t}' weigh?", "What is the weight of {t}?"),
               ("Quanto pesa '{t}'?", "Qual é o peso de {t}?")),
    "price": (("How much does '{t}' cost?", "What is the price of {t}?"),
              ("Quanto custa '{t}'?", "Qual é o preço de {t}?")),
    "colour": (("What colour is '{t}'?", "What colors does {t} come in?"),
               ("De que cor é '{t}'?", "Quais cores tem {t}?")),
    "warranty": (("Does '{t}' have a warranty?", "Is there a guarantee on {t}?"),
                 ("'{t}' tem garantia?", "Qual é a garantia de {t}?")),
    "battery": (("Does '{t}' need batteries?", "What batteries does {t} take?"),
                ("'{t}' usa pilhas?", "{t} tem bateria?")),
    "isbn": (("What is the ISBN of '{t}'?", "{t} ISBN?"), ("Qual é o ISBN de '{t}'?", "ISBN de {t}?")),
}
# kinds a "not stated" training question asks about: details shoppers ask that book blurbs rarely hold
NOT_STATED_KINDS = ("weight", "price", "size", "colour", "warranty", "battery", "isbn", "material", "pages",
                    "year", "award", "illustrator", "narrator")


# kinds whose evidence pattern holds in most descriptions ("Mog is ...", "in London"): asked less often,
# so that training questions are mostly about the details their evidence really states
_TRAIN_WEIGHT = {"character": 0.1, "setting": 0.3, "year": 0.5, "includes": 0.5}


def stated_kinds(content: str) -> list[str]:
    """The kinds (ORDER) whose evidence some non-boilerplate sentence of `content` holds."""
    spans = [content[s:e] for s, e in sentences(content) if not _BOILERPLATE.search(content[s:e])]
    return [k for k in ORDER if any(_EVIDENCE[k].search(t) for t in spans)]


def detail_question(title: str, kind: str, rng, portuguese: bool = False) -> str:
    """One phrasing (chosen by `rng`, a random.Random) of a question about `kind` of the product `title`,
    the title as typed by shoppers: as written, or lower-case."""
    t = title if rng.random() < 0.6 else title.lower()
    return rng.choice(QUESTIONS[kind][1 if portuguese else 0]).format(t=t)


def detail_example(title: str, content: str, rng, p_not_stated: float = 0.25, p_portuguese: float = 0.2,
                   stated: list[str] | None = None):
    """(question, kind, quote) for a training example about one detail of a product, or None when its
    description states no known kind: a kind it states, with `read_detail`'s quote (the sentence the
    answer must copy), or in `p_not_stated` of them a kind it lacks, with quote None ("not stated").
    `stated`: `stated_kinds(content)`, where the caller has it already."""
    stated = [k for k in (stated_kinds(content) if stated is None else stated) if k in QUESTIONS]  # not the
    # generic "count" / "when": the training examples keep the kinds they had (prompt version 4)
    missing = [k for k in NOT_STATED_KINDS if k not in stated]
    portuguese = rng.random() < p_portuguese
    if missing and (not stated or rng.random() < p_not_stated):
        kind = rng.choice(missing)
        return detail_question(title, kind, rng, portuguese), kind, None
    if not stated:
        return None
    kind = rng.choices(stated, weights=[_TRAIN_WEIGHT.get(k, 1.0) for k in stated])[0]
    q = detail_question(title, kind, rng, portuguese)
    d = read_detail(q, title, content)
    if d.kind != kind or not d.stated:  # the title's words changed what the question asks: skip it
        return None
    return q, kind, d.quote


# ---- yes/no questions ("is it unabridged?", "does it have photographs?", "serve para iniciantes?"): the answer
# leads with the evidence; "Yes" or "No" only where `yes_no` settles it (docs/answering.md: its precision on
# held-out questions, and how often it speaks)
# a Portuguese yes/no question holds a verb like these and no question word
_YES_NO_PT_VERB = re.compile(r"\b(?:é|e|são|tem|têm|possui|serve|servem|pode|podem|vem|vêm|funciona|traz|inclui|há|"
                             r"está|ensina|fala|conta|mostra|ganhou|usa|precisa|cabe|fica|foi|era|tinha|vale|"
                             r"recomenda\w*|indicad[oa]s?|adequad[oa]s?|apropriad[oa]s?)\b", re.I)
# an auxiliary opening the question or one of its clauses ("im a total beginner, is it ok for me?")
_YES_NO_AUX = re.compile(r"(?:^|[,;:.!?]\s*)\W*(?:is|are|was|were|does|do|did|can|could|will|would|should|has|have|"
                         r"had|isn't|doesn't)\b", re.I)
# a negation governing the next few words ("omits desserts", "not recommended", "no index", "sem fotos")
_NEGATION = {"not", "no", "never", "without", "omit", "omits", "omitted", "lacks", "lack", "lacking", "nor", "none",
             "neither", "n't", "cannot", "não", "sem", "nunca", "nem", "nenhum", "nenhuma"}
_NEGATION_REACH = 3  # words after a negation that it negates


def is_yes_no(question: str) -> bool:
    """Does the question ask for a yes or a no ("Is it unabridged?", "does X have photos?", "O X tem
    bibliografia?")? English: an auxiliary verb opens it or one of its clauses, and
    it is not a wh-question; Portuguese: a question holding a verb
    ("é", "tem", "serve", ...) and no question word ("quem", "quanto", "onde", "que", ...)."""
    q = question.strip()
    if _YES_NO_AUX.search(q) and not re.match(r"^\W*(?:what|who|which|where|when|how|why)\b", q, re.I):
        return True
    if not q.endswith("?") or not is_portuguese(q):
        return False
    return _YES_NO_PT_VERB.search(q) is not None and not re.search(
        r"\b(?:qu[ea]m|quant[oa]s?|onde|quando|como|qual|quais|por\s*que|o\s+que|que)\b", q, re.I)


def cognate(word: str) -> str:
    """A word's first 5 letters, accents taken off and spelled alike ("bibliografia" ~ "bibliography",
    "fotografias" ~ "photographs", "protagonista" ~ "protagonist"): how a Portuguese (or a differently inflected)
    question word still meets the English description's."""
    w = unicodedata.normalize("NFKD", word.lower()).encode("ascii", "ignore").decode()
    for a, b in (("ph", "f"), ("th", "t"), ("y", "i"), ("k", "c"), ("qu", "c")):
        w = w.replace(a, b)
    return w[:5]


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[^\W_]+(?:'t)?", text, re.U)]


def yes_no(question: str, title: str, quote: str) -> str | None:
    """"yes" when every word the question asks about (its stemmed content words, the title's taken out) is
    in the quoted sentence and none of them is negated there; "no" when one of them is negated there ("does it
    have dessert recipes?" / "... omits desserts"); None (say no verdict) otherwise: a missing word, a question
    itself negated. A Portuguese question's words (4+ letters, not function words) meet the English sentence's
    as cognates (`cognate`: "bibliografia" ~ "bibliography"). Measured,
    not assumed: docs/results.md "Shopper questions"."""
    from indexing.lexical import _stemmer

    asked = _tokens(without_title(question, title))
    if any(w in _NEGATION or w.endswith("n't") for w in asked):  # "isn't it ...?": a yes would be ambiguous
        return None
    if is_portuguese(" ".join(asked)):  # its words meet the English description's as cognates ("bibliografia")
        stem = cognate
        pt, en = _language_words()
        asked = [w for w in asked if len(w) > 3 and w not in pt and w not in en]
    else:
        stem = _stemmer().stemWord
    words = {stem(w) for w in asked} - _stop() - {stem(w) for w in _YES_NO_AUX_WORDS}
    words = {w for w in words if len(w) > 2}
    if not words:
        return None
    sent = _tokens(quote)
    stems = [stem(w) for w in sent]
    negated = set()
    for i, w in enumerate(sent):
        if w in _NEGATION or w.endswith("n't"):
            negated |= set(stems[i + 1: i + 1 + _NEGATION_REACH])
    if words & negated:
        return "no"
    if words <= set(stems):
        return "yes"
    return None


_YES_NO_AUX_WORDS = ("is", "are", "was", "were", "does", "do", "did", "can", "could", "will", "would", "should", "has",
                     "have", "had", "any", "good", "ok", "okay", "it", "this", "book", "one", "tem", "serve", "pode")


def yes_no_text(verdict: str | None, d: Detail, portuguese: bool) -> str:
    """The answer to a yes/no question: the verdict where `yes_no` gave one, then the evidence, quoted."""
    lead = {("yes", False): "Yes. ", ("no", False): "No. ", ("yes", True): "Sim. ", ("no", True): "Não. "}.get(
        (verdict, portuguese), "")
    says = "A descrição diz" if portuguese else "The description says"
    return f"{lead}{says}: \"{d.quote}\""
