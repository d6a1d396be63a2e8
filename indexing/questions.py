"""Questions: the phrasings ProductQA is asked in (English and Portuguese), and reading them safely.
Shared by every stage: imported by indexing (search, evaluate, calibrate), finetune (examples, export),
rag (answer, batch, evaluate) and ui (chat); tested once, in tests/indexing/test_questions.py.

`sanitize_question` and `read_questions` (JSON lines, CSV or text files of questions) serve search,
batch answering and the chat alike.

`export` and fine-tuning turn each product into questions with these templates; the retrieval
evaluation uses them (plus lower-casing, partial titles and typos) to test search.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from pathlib import Path

from indexing.errors import UserError

MAX_QUESTION_CHARS = 2000  # longer questions are cut (with a notice): titles are short, prompts are not free
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# {title} is replaced by the product title. Keep the first English and first Portuguese phrasing:
# they are the ones users and the earlier student notebooks used.
TEMPLATES_EN = (
    "What is '{title}'?",
    "Describe the product {title}.",
    "Tell me about {title}.",
    "What can you tell me about '{title}'?",
    "Give me the description of {title}.",
)
TEMPLATES_PT = (
    "Qual é a descrição deste produto: {title}?",
    "O que é '{title}'?",
    "Me fale sobre o produto {title}.",
    "Descreva o produto {title}.",
)
TEMPLATES = TEMPLATES_EN + TEMPLATES_PT


def _pick(key: str, n: int, salt: str = "") -> int:
    """Deterministic choice from a key (a uid): same product -> same phrasing on every run."""
    return int.from_bytes(hashlib.blake2b(f"{salt}{key}".encode(), digest_size=4).digest(), "little") % n


def make_question(title: str, key: str, lang: str = "any", salt: str = "") -> str:
    """One question about `title`, phrasing chosen by `key`; lang is "en", "pt" or "any"."""
    pool = {"en": TEMPLATES_EN, "pt": TEMPLATES_PT, "any": TEMPLATES}[lang]
    return pool[_pick(key, len(pool), salt)].format(title=title)


def make_questions(title: str, key: str, n: int = 1, lang: str = "any") -> list[str]:
    """`n` distinct questions about `title` (n <= number of templates of that language)."""
    pool = {"en": TEMPLATES_EN, "pt": TEMPLATES_PT, "any": TEMPLATES}[lang]
    start = _pick(key, len(pool))
    return [pool[(start + i) % len(pool)].format(title=title) for i in range(min(n, len(pool)))]


# ------------------------------------------------------------------ generated questions (evaluation, calibration)

# How people ask about a product they can name (eval retrieval, calibration, eval answers):
#   exact       an English phrasing with the exact title         "What is 'Mog's Kittens'?"
#   lower       the title lower-cased                            "tell me about mog's kittens."
#   partial     the first ~60% of the title's words              "What is 'Girls Ballet Tutu'?"
#   typo        one typo (two adjacent letters swapped)          "Describe the product Mgo's Kittens."
#   portuguese  a Portuguese phrasing around the English title   "Qual é a descrição deste produto: Mog's Kittens?"
VARIANTS = ("exact", "lower", "partial", "typo", "portuguese")
# ... and about one they can only describe (never with the title's words):
#   quote       a quoted span of the description                 'Which product is described as "..."?'
#   looking     a "looking for something that..." phrasing        "I'm looking for something that ..."
#   pt_desc     a Portuguese phrasing around a description span  "Procuro um produto assim: ..."
DESCRIPTION_VARIANTS = ("quote", "looking", "pt_desc")
SPAN_WORDS = (8, 14)  # words in a description span


def typo(title: str, rng: random.Random) -> str:
    """Swap two adjacent letters inside the title's longest word (of >= 4 letters)."""
    words = title.split()
    cands = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not cands:
        return title
    i = max(cands, key=lambda j: (len(words[j]), -j))
    w = words[i]
    pos = [j for j in range(len(w) - 1) if w[j].isalpha() and w[j + 1].isalpha() and w[j] != w[j + 1]]
    if not pos:
        return title
    j = rng.choice(pos)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def partial(title: str) -> str:
    words = title.split()
    if len(words) <= 2:
        return title
    return " ".join(words[: max(2, round(len(words) * 0.6))])


def _sample(docs, n: int, rng: random.Random):
    """(uid, title, content) of `n` products of `docs` in a seeded random order (rng is shuffled once)."""
    rows = list(range(len(docs)))
    rng.shuffle(rows)
    for r in rows[:n]:
        yield docs["uid"].iloc[r], docs["title"].iloc[r], docs["content"].iloc[r]


def make_eval_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """[{"qid", "variant", "question", "uid", "title"}] for a sample of `n` products."""
    rng = random.Random(seed)
    out = []
    for uid, title, _ in _sample(docs, n, rng):
        variants = {
            "exact": make_question(title, uid, "en"),
            "lower": make_question(title.lower(), uid, "en", salt="lower"),
            "partial": make_question(partial(title), uid, "en", salt="partial"),
            "typo": make_question(typo(title, rng), uid, "en", salt="typo"),
            "portuguese": make_question(title, uid, "pt"),
        }
        for v, q in variants.items():
            out.append({"qid": f"{uid}:{v}", "variant": v, "question": q, "uid": uid, "title": title,
                        **prefix_of(title, v == "partial")})
    return out


def prefix_of(title: str, is_partial: bool) -> dict:
    """{"prefix": the partial title} for a question that names only the start of `title`, else {}."""
    p = partial(title)
    return {"prefix": p} if is_partial and p != title else {}


def found(q: dict, uid: str, title: str, content: str) -> tuple[bool, bool]:
    """(strict, counted): does a product answer question `q`? Strictly, when it is the asked-about product
    or shares its title (two editions of one book: the question cannot tell them apart). Counted also, by
    the same reasoning, when the question names only the start of the title (`q["prefix"]`) and the
    product's title starts so ("A Day in the" of "A Day in the Life of Ireland"), or quotes a span of a
    description (`q["span"]`) that the product's description holds too (`holds_span`)."""
    strict = uid == q["uid"] or title.casefold() == q["title"].casefold()
    if strict:
        return True, True
    prefix, span = q.get("prefix"), q.get("span")
    counted = bool(prefix) and title.casefold().startswith(prefix.casefold())
    if not counted and span:
        words = _WORDS.findall(span)
        counted = bool(words) and words[0].casefold() in content.casefold() and holds_span(content, span)
    return False, counted


# Conversational frames: how shoppers name a product in passing ("would you recommend ...?"). The
# learned fusion (indexing/rank.py) trains on TRAIN_FRAMES only; HELD_OUT_FRAMES are never trained on and
# are what `eval retrieval` reports as held out, so its figures measure phrasings the ranker never saw.
TRAIN_FRAMES_EN = (
    "Would you recommend {title}?", "Is {title} worth it?", "What's {title} like?", "Any thoughts on {title}?",
    "I'm thinking of buying {title}. Is it good?", "Have you got {title}?", "Can you tell me more about {title}?",
    "My friend mentioned {title}, what is it?", "Do you sell {title}?", "Is {title} any good?",
    "I need info on {title} please", "{title} - what's it about?",
)
HELD_OUT_FRAMES_EN = (
    "Would you recommend {title}? What's it like?", "Should I get {title}?", "How good is {title}?",
    "what do you know about {title}", "Looking at {title}, is it for me?",
    "Thinking about {title} for a gift - thoughts?", "Could you give me some details on {title}?",
    "Heard good things about {title}. Tell me more.", "is {title} good for beginners?", "{title}: worth buying?",
    "What are people saying about {title}?", "Explain {title} to me.",
)
TRAIN_FRAMES_PT = (
    "Vale a pena {title}?", "Você recomenda {title}?", "O que você acha de {title}?", "Quero saber mais sobre {title}.",
    "Vocês vendem {title}?", "Me conta sobre {title}",
)
HELD_OUT_FRAMES_PT = (
    "{title} é bom?", "Estou pensando em comprar {title}. Vale a pena?", "Pode me dar detalhes de {title}?",
    "Como é {title}?", "Alguém conhece {title}?", "Fiquei curioso sobre {title}, o que é?",
)
# ... and how they describe one in passing ({span}: words of its description, never its title's)
TRAIN_DESCRIBE_FRAMES = (
    "Do you have anything that {span}?", "I want a product that {span}", "Searching for: {span}",
    "Estou procurando algo com: {span}",
)
HELD_OUT_DESCRIBE_FRAMES = (
    "Is there something in the catalog that goes like '{span}'?", "Can you find the one that says {span}",
    "Help me find this: {span}", "Quero achar o produto que fala de {span}",
)
# Held-out kinds (eval retrieval): a held-out frame around the exact or lower-cased title (chat), a
# Portuguese one (chat_pt), around a typo'd (chat_typo) or partial title (chat_partial), around a title of
# one or two words (short), around a description span (desc_chat); chat_trained uses a training frame.
CHAT_VARIANTS = ("chat_trained", "chat", "chat_pt", "chat_typo", "chat_partial", "short")
CHAT_DESCRIPTION_VARIANTS = ("desc_chat",)
EVAL_SHARE = 2  # 1 in EVAL_SHARE products is held out from the ranker's training (by a hash of its uid)


def held_out_product(uid: str) -> bool:
    """Is this product one the learned fusion never trains on (the evaluation's products)? A fixed hash
    of the uid: the same on every machine, build and catalog size."""
    return _pick(uid, EVAL_SHARE, salt="ranker-split") == 0


def title_forms(title: str, rng: random.Random) -> dict:
    """The ways a shopper writes a title: exact, lower-cased, partial, with a typo."""
    return {"exact": title, "lower": title.lower(), "partial": partial(title), "typo": typo(title, rng)}


def short_title(title: str) -> bool:
    return len(_WORDS.findall(title)) <= 2


def make_chat_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """[{"qid", "variant", "question", "uid", "title"}]: CHAT_VARIANTS about a sample of `n` products; every
    variant but chat_trained uses HELD_OUT frames. Products with short titles are also asked with four
    held-out frames each ("short", the stress set)."""
    rng = random.Random(seed + 2)
    out = []
    for uid, title, _ in _sample(docs, n, rng):
        forms = title_forms(title, rng)
        en, pt = HELD_OUT_FRAMES_EN, HELD_OUT_FRAMES_PT
        variants = {
            "chat_trained": rng.choice(TRAIN_FRAMES_EN + TRAIN_FRAMES_PT).format(title=rng.choice(
                (forms["exact"], forms["lower"]))),
            "chat": rng.choice(en).format(title=rng.choice((forms["exact"], forms["lower"]))),
            "chat_pt": rng.choice(pt).format(title=rng.choice((forms["exact"], forms["lower"]))),
            "chat_typo": rng.choice(en + pt).format(title=forms["typo"]),
            "chat_partial": rng.choice(en + pt).format(title=forms["partial"]),
        }
        for v, q in variants.items():
            out.append({"qid": f"{uid}:{v}", "variant": v, "question": q, "uid": uid, "title": title,
                        **prefix_of(title, v == "chat_partial")})
        if short_title(title):
            for i, f in enumerate(rng.sample(en + pt, 4)):
                out.append({"qid": f"{uid}:short{i}", "variant": "short", "question": f.format(title=title),
                            "uid": uid, "title": title})
    return out


_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _spans(content: str, title: str, rng: random.Random, n: int) -> list[str]:
    """`n` spans of SPAN_WORDS words of `content` with none of the title's words (those are dropped
    from the span when every window has some), starting at different places."""
    from indexing.lexical import QUESTION_WORDS

    words = content.split()
    banned = {w.casefold() for w in _WORDS.findall(title) if len(w) > 2} - QUESTION_WORDS
    lo, hi = SPAN_WORDS

    def clean(ws):
        return [w for w in ws if not ({x.casefold() for x in _WORDS.findall(w)} & banned)]

    size = min(hi, max(lo, len(words) // 3))
    starts = list(range(max(1, len(words) - size + 1)))
    rng.shuffle(starts)
    starts.sort(key=lambda s: len(clean(words[s: s + size])) < len(words[s: s + size]))  # title-free windows first
    out = []
    for s in starts[:n]:
        span = " ".join(clean(words[s: s + size])).strip(" ,;:-'\"")
        if len(_WORDS.findall(span)) >= 4:
            out.append(span)
    return out


def make_description_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """[{"qid", "variant", "question", "uid", "title", "span"}]: questions that describe a sample of `n` products
    with spans of their descriptions (DESCRIPTION_VARIANTS), never their titles' words. Products whose
    description is too short to quote (fewer than 4 words left) are skipped."""
    rng = random.Random(seed + 1)
    out = []
    for uid, title, content in _sample(docs, n, rng):
        spans = _spans(content, title, rng, 3)
        if len(spans) < 3:
            continue
        variants = {"quote": f'Which product is described as "{spans[0]}"?',
                    "looking": f"I'm looking for something that {spans[1][0].lower() + spans[1][1:]}",
                    "pt_desc": f"Procuro um produto assim: {spans[2]}"}
        for (v, q), span in zip(variants.items(), spans):
            out.append({"qid": f"{uid}:{v}", "variant": v, "question": q, "uid": uid, "title": title, "span": span})
    return out


def make_chat_description_questions(docs, n: int = 500, seed: int = 0) -> list[dict]:
    """[{"qid", "variant": "desc_chat", ...}]: a span of each sampled product's description in a
    HELD_OUT_DESCRIBE_FRAMES phrasing (never its title's words)."""
    rng = random.Random(seed + 3)
    out = []
    for uid, title, content in _sample(docs, n, rng):
        spans = _spans(content, title, rng, 1)
        if spans:
            q = rng.choice(HELD_OUT_DESCRIBE_FRAMES).format(span=spans[0])
            out.append({"qid": f"{uid}:desc_chat", "variant": "desc_chat", "question": q, "uid": uid, "title": title,
                        "span": spans[0]})
    return out


def holds_span(content: str, span: str) -> bool:
    """Does `content` hold the words of `span` in order, close together (at most one other word between
    two of them: the span's title words were dropped)? A description question quoting a blurb that
    several products share (an author's biography, a series' blurb, a review quote) cannot tell them
    apart; the retrieval evaluation counts any of them as found, as it does products sharing a title."""
    want = [w.casefold() for w in _WORDS.findall(span)]
    have = [w.casefold() for w in _WORDS.findall(content)]
    if not want:
        return False
    for s in (i for i, w in enumerate(have) if w == want[0]):
        j, pos = 1, s
        while j < len(want):
            nxt = next((p for p in range(pos + 1, min(pos + 3, len(have))) if have[p] == want[j]), None)
            if nxt is None:
                break
            j, pos = j + 1, nxt
        if j == len(want):
            return True
    return False


# A question asks for one detail (rather than what the product is) when a clause opens with a detail
# question word ("how long...", "and who wrote it?", "Mog's Kittens: how many pages?") and no
# description word is named. English and Portuguese. ("the book where a tiger comes to tea" describes.)
_DESCRIPTION_WORDS = re.compile(
    r"\b(what\s+is|what's|whats|tell\s+me\s+about|describe|description|"
    r"o\s+que\s+[ée]|descri[çc][ãa]o|descreva|fale\s+(?:sobre|do|da)|me\s+fale)\b", re.I)
_DETAIL_WORDS = re.compile(
    r"(?:^|[:;,.?!]\s*)(?:(?:and|but|so|e|mas)\s+)?"
    r"(how|who|when|where|why|which|does|do|did|is|are|can|will|would|should|"
    r"quanto|quanta|quantos|quantas|como|quem|quando|onde|por\s*que|porque|serve|tem|funciona)\b", re.I)


def asks_for_description(question: str) -> bool:
    """Does the question ask what a product is (its description), rather than one detail of it?
    "What is 'Mog's Kittens'?", "qual é a descrição deste produto: ...", "the picture book where a tiger
    comes to tea" and a bare title do; "how long is it?", "quantas páginas tem?" do not."""
    if _DESCRIPTION_WORDS.search(question):
        return True
    return not _DETAIL_WORDS.search(question)


def sanitize_question(question) -> tuple[str, str | None]:
    """(clean question, notice). Raises UserError for an empty one."""
    if not isinstance(question, str) or not question.strip():
        raise UserError("the question is empty: ask about a product, e.g. \"What is 'Mog's Kittens'?\"")
    q = " ".join(_CONTROL.sub(" ", question).split())
    if not q:
        raise UserError("the question is empty after removing control characters")
    notice = None
    if len(q) > MAX_QUESTION_CHARS:
        notice = f"question truncated from {len(q):,} to {MAX_QUESTION_CHARS:,} characters"
        q = q[:MAX_QUESTION_CHARS]
    return q, notice


def read_questions(path: str | Path) -> tuple[list[dict], list[str]]:
    """([{"id", "question"}], warnings). Ids are kept as given (strings or numbers)."""
    import orjson

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise UserError(f"{path}: looks like a binary file, expected JSON lines, CSV or text")
    text = raw.decode("utf-8", errors="replace")
    items, warnings, seen = [], [], set()

    def add(id_, q, where):
        try:
            sanitize_question(q)
        except UserError:
            warnings.append(f"{path.name}:{where}: empty or missing question, skipped")
            return
        key = json.dumps(id_)
        if key in seen:
            warnings.append(f"{path.name}:{where}: duplicate id {id_!r}, skipped")
            return
        seen.add(key)
        items.append({"id": id_, "question": q})

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                warnings.append(f"{path.name}:{n}: not valid JSON, skipped")
                continue
            if not isinstance(obj, dict) or "question" not in obj:
                warnings.append(f"{path.name}:{n}: not a {{\"id\", \"question\"}} object, skipped")
                continue
            add(obj.get("id", n), obj["question"], n)
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "question" not in reader.fieldnames:
            raise UserError(f"{path}: CSV needs a header with columns id,question")
        for n, row in enumerate(reader, 2):  # line 1 is the header
            id_ = row.get("id")
            add(id_ if id_ not in (None, "") else n, row.get("question"), n)
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                add(n, line.strip(), n)
    return items, warnings
