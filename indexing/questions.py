"""The question phrasings ProductQA is asked in, English and Portuguese, shared by every stage.

`export` and fine-tuning turn each product into questions with these templates; the retrieval
evaluation uses them (plus lower-casing, partial titles and typos) to test search.
"""

from __future__ import annotations

import hashlib

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
