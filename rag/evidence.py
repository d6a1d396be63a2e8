"""The learned evidence ranker (issue 36): which sentence of a product's description answers a question,
scored by a small LightGBM model over signals instead of rag.detail's hand-weighted rule. Measured against the
rules on the hand-written fixtures' held-out half and **not the default** (docs/results.md "A learned evidence
ranker": it ties or loses); `read_ranked(question, title, content, EvidenceRanker.load(PATH))` reads with it
(benchmarks/readers.py).

    from rag.evidence import EvidenceRanker, candidates, sentence_features
    r = EvidenceRanker.load("/tmp/evidence")                  # /tmp/evidence.txt (booster) + .json (its card)
    p = r.score(sentence_features(asked, kind, title, content, spans)[candidates(kind, content, spans, title)])

Candidates are the rules' (for a known kind the sentences holding its evidence, none -> "doesn't say"; else
every sentence); a question of no known kind whose best candidate scores under `threshold` is not stated.
Signals per sentence (FEATURES): the rules' idf-weighted word overlap with the question (title words taken
out), the rules' score and pick; whether the sentence holds the asked kind's evidence (rag.detail.KINDS) and
how many sentences do; whether a short answer reads from it; what the question asks (a number, a date, a
person, a place) against what the sentence holds; cognates (5-letter stems, accents off: "bibliografia" ~
"bibliography"); position, length, the title's share of its words, the description's most-named name, the
question's language.

Trained on questions generated from a catalog (`training_questions`): for each sentence of each description,
questions whose answer is that sentence by construction: a detail kind it states (rag.detail.QUESTIONS,
English and Portuguese; with a word of the sentence as a hint where other sentences state the kind too),
"how many <noun>?" from a number and its noun, "what does it say about <word>?" from a word only that
sentence holds (half of them inflected otherwise); and questions the description does not answer, whose
sentences are all negatives. The hand-written fixtures' products are left out; `--hand-written` adds their
dev half (rag.evaluate.tuning_part), never the held-out one.

    python -m rag.evidence --catalog artifacts/real/catalog --out /tmp/evidence [--hand-written FIXTURE ...]
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from rag.detail import Detail

FEATURES = ("overlap", "overlap_best", "evidence", "evidence_sentences", "short_form", "kind", "asks_number",
            "asks_date", "asks_person", "asks_place", "has_number", "has_date", "names", "has_place",
            "typed_match", "position", "first", "sentences", "words", "title_share", "main_name", "portuguese",
            "boilerplate", "rule_pick", "first_candidate", "cognates", "cognates_best")

# what a question asks for, by the form of its answer (English and Portuguese)
_ASKS_NUMBER = re.compile(r"how\s+(?:many|much|long|old|big)|number\s+of|quant[oa]s?\b|\bpages?\b|p[áa]ginas|"
                          r"\bages?\b|idade|\bsize\b|tamanho|weigh|peso", re.I)
_ASKS_DATE = re.compile(r"\bwhen\b|what\s+year|\bquando\b|em\s+que\s+ano|period|\bera\b|century|[ée]poca|s[ée]culo|"
                        r"published|publicad", re.I)
_ASKS_PERSON = re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bquem\b|author|autor|writer|illustrat|ilustr|narrat|narra|"
                          r"protagonist|character|personage|hero|\bgirl\b|\bboy\b|\bman\b|\bwoman\b|chama", re.I)
_ASKS_PLACE = re.compile(r"\bwhere\b|\bonde\b|set\s+in|take\s+place|takes\s+place|se\s+passa|village|town|city|"
                         r"country|island|cidade|pa[íi]s|lugar|ilha|\bborn\b|nasceu", re.I)
_PLACE = re.compile(r"\b(?:in|at|near|from|across|around|off)\s+(?:the\s+)?[A-Z][a-z]+|"
                    r"(?i:\b(?:village|town|city|island|county|countryside|coast|river|valley|country)\b)")
_CAP = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")


def _cognates(asked: str, texts: list[str]) -> list[float]:
    """Each sentence's share of the question's words (4+ letters, not stop words) met by a `rag.detail.cognate`,
    each weighted by how few sentences hold it, as rag.detail._overlap."""
    from rag.detail import _language_words, _stop, cognate

    stop = _stop() | _language_words()[0] | _language_words()[1]
    q = {cognate(w) for w in re.findall(r"[^\W_\d]{4,}", asked) if w.lower() not in stop}
    sents = [{cognate(w) for w in re.findall(r"[^\W_\d]{4,}", t)} for t in texts]
    idf = {w: math.log(1 + len(sents) / (1 + sum(w in s for s in sents))) for w in q}
    total = sum(idf.values()) or 1.0
    return [sum(idf[w] for w in q & s) / total for s in sents]


def _question_signals(asked: str) -> tuple[float, float, float, float]:
    return tuple(float(bool(p.search(asked))) for p in (_ASKS_NUMBER, _ASKS_DATE, _ASKS_PERSON, _ASKS_PLACE))


def sentence_features(asked: str, kind: str | None, title: str, content: str, spans: list[tuple[int, int]],
                      portuguese: bool | None = None) -> "np.ndarray":
    """FEATURES for each sentence `spans` of `content` ([n, len(FEATURES)] float32), the question `asked`
    with the title's words already taken out (rag.detail.without_title), `kind` its detail kind or None."""
    import numpy as np

    from rag.detail import (
        _BOILERPLATE,
        _DATE,
        _EVIDENCE,
        _NUM,
        _NUMBER_WORDS,
        _SHORT_FORM,
        ORDER,
        _main_name,
        _overlap,
        _short,
        _stems,
        is_portuguese,
    )

    texts = [content[s:e] for s, e in spans]
    n = len(texts)
    X = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if not n:
        return X
    stems = [_stems(t) for t in texts]
    overlap = _overlap(_stems(asked), stems)
    best = max(overlap)
    evidence = [bool(_EVIDENCE[kind].search(t)) if kind else False for t in texts]
    asks = _question_signals(asked)
    title_words = {w.lower() for w in re.findall(r"[^\W_]+", title)}
    name = _main_name(texts, title)
    cognates = _cognates(asked, texts)
    cands = candidates(kind, content, spans, title)
    rule = {i: overlap[i] + (0.5 if kind in _SHORT_FORM and _short(kind, texts[i], asked) != texts[i] else 0.0)
            for i in cands}  # rag.detail's rules: their score, their pick (ties: the earlier)
    pick = max(cands, key=lambda i: (rule[i], -i)) if cands else -1
    number = re.compile(rf"\b(?:{_NUM}|{'|'.join(_NUMBER_WORDS)})\b", re.I)
    date = re.compile(_DATE, re.I)
    pt = is_portuguese(asked) if portuguese is None else portuguese
    for i, t in enumerate(texts):
        words = re.findall(r"[^\W_]+", t)
        has = (bool(number.search(t)), bool(date.search(t)),
               sum(w.lower() not in title_words for w in _CAP.findall(t)), bool(_PLACE.search(t)))
        typed = (asks[0] and has[0]) or (asks[1] and has[1]) or (asks[2] and has[2] > 0) or (asks[3] and has[3])
        X[i] = (overlap[i], float(overlap[i] == best and best > 0), float(evidence[i]), float(sum(evidence)),
                float(kind in _SHORT_FORM and _short(kind, t, asked) != t),
                float(ORDER.index(kind) if kind else len(ORDER)), *asks, float(has[0]), float(has[1]),
                float(min(has[2], 5)), float(has[3]), float(typed), i / n, float(i == 0), float(n),
                math.log1p(len(words)), sum(w.lower() in title_words for w in words) / max(1, len(words)),
                float(bool(name and re.search(rf"\b{re.escape(name)}\b", t))), float(pt),
                float(bool(_BOILERPLATE.search(t))), float(i == pick), float(bool(cands) and i == cands[0]),
                cognates[i], float(cognates[i] == max(cognates) and cognates[i] > 0))
    return X


def candidates(kind: str | None, content: str, spans: list[tuple[int, int]], title: str = "") -> list[int]:
    """The sentences the ranker chooses among: for a known kind those holding its evidence (none: the
    description does not say; the main character: the sentence first naming the name the description uses
    most), else every sentence; boilerplate ("Copyright ...") only where nothing else."""
    from rag.detail import _BOILERPLATE, _EVIDENCE, _main_name

    keep = [i for i, (s, e) in enumerate(spans) if not _BOILERPLATE.search(content[s:e])] or list(range(len(spans)))
    if kind == "character" and (name := _main_name([content[s:e] for s, e in (spans[i] for i in keep)], title)):
        return [next(i for i in keep if re.search(rf"\b{re.escape(name)}\b", content[spans[i][0]:spans[i][1]]))]
    return [i for i in keep if _EVIDENCE[kind].search(content[spans[i][0]:spans[i][1]])] if kind else keep


@dataclass
class EvidenceRanker:
    """A LightGBM booster over FEATURES: the probability that a sentence answers the question; the best
    sentence below `threshold` means the description does not say."""

    booster: object
    threshold: float
    card: dict

    def score(self, X) -> "np.ndarray":
        return self.booster.predict(X, num_threads=1) if len(X) else X[:, 0]

    def save(self, path: str | Path) -> None:
        """`path`.txt (the booster, LightGBM's text format) and `path`.json (the card: features, threshold,
        training data and figures)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path.with_suffix(".txt")))
        card = dict(self.card, features=list(FEATURES), threshold=self.threshold)
        path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "EvidenceRanker":
        import lightgbm as lgb

        from indexing.errors import UserError

        path = Path(path)
        try:
            card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            booster = lgb.Booster(model_file=str(path.with_suffix(".txt")))
        except (OSError, ValueError, lgb.basic.LightGBMError) as e:
            raise UserError(f"{path}: no readable evidence ranker ({str(e).splitlines()[0][:200]})") from None
        if tuple(booster.feature_name()) != FEATURES or tuple(card.get("features", ())) != FEATURES:
            raise UserError(f"{path}: evidence ranker made with other features than this ProductQA computes; "
                            "retrain it: python -m rag.evidence")
        return cls(booster, float(card["threshold"]), card)


def read_ranked(question: str, title: str, content: str, ranker: EvidenceRanker) -> Detail:
    """rag.detail.read_detail with the learned ranker: the candidates are the rules' (`candidates`), the ranker
    orders them, and a question of no known kind whose best sentence scores under its threshold is not stated."""
    from rag.detail import _EVIDENCE, Detail, _focus, _narrow, _short, detail_kind, sentences, without_title

    asked = without_title(question, title)
    kind = detail_kind(asked)
    spans = sentences(content)
    cands = candidates(kind, content, spans, title)
    if not cands:
        return Detail(kind, False)
    p = ranker.score(sentence_features(asked, kind, title, content, spans)[cands])
    best = int(p.argmax())
    if kind is None and p[best] < ranker.threshold:
        return Detail(kind, False)
    s0, e0 = spans[cands[best]]
    m = _EVIDENCE[kind].search(content, s0, e0) if kind else None
    s, e = _narrow(content, s0, e0, m.start() if m else _focus(asked, content, s0, e0))
    quote = content[s:e]
    return Detail(kind, True, _short(kind, quote, asked), quote, (s, e), (s0, e0))


# ---- training questions, generated from a catalog
_HINT = (("{q} Something about {w}?", "{q} (the part about {w})", "{q} it mentions {w} I think"),
         ("{q} Algo sobre {w}?", "{q} (a parte sobre {w})"))
_ABOUT = (("What does {t} say about {w}?", "tell me about the {w} in {t}", "{t}: anything on {w}?",
           "what about {w} in {t}?"), ("O que {t} diz sobre {w}?", "{t}: fala de {w}?", "e sobre {w} em {t}?"))
_COUNT = (("How many {w} are in {t}?", "{t} - how many {w}?", "number of {w} in {t}?"),
          ("Quantos {w} tem {t}?", "{t} tem quantos {w}?"))


def _distinct_words(texts: list[str], i: int, title: str) -> list[str]:
    """Words of sentence i (5+ letters, not stop words, not the title's) no other sentence holds."""
    from rag.detail import _stop

    skip = {w.lower() for w in re.findall(r"[^\W_]+", title)} | _stop()
    others = {w.lower() for j, t in enumerate(texts) if j != i for w in re.findall(r"[^\W_]+", t)}
    return sorted({w for w in re.findall(r"[^\W_\d]{5,}", texts[i]) if w.lower() not in skip | others})


def training_questions(rows, rng, per_product: int = 8) -> list[dict]:
    """[{"question", "title", "content", "positive": sentence index or None}] for (title, content) `rows`
    (module docstring). `rng`: a random.Random."""
    from rag.detail import (
        _BOILERPLATE,
        _EVIDENCE,
        _NUM,
        NOT_STATED_KINDS,
        QUESTIONS,
        detail_question,
        sentences,
    )

    out = []
    for pi, (title, content) in enumerate(rows):
        spans = sentences(content)
        texts = [content[s:e] for s, e in spans]
        if len(texts) < 2:
            continue
        t = title if rng.random() < 0.6 else title.lower()
        qs = []
        for i, text in enumerate(texts):
            if _BOILERPLATE.search(text):
                continue
            pt = rng.random() < 0.3
            distinct = _distinct_words(texts, i, title)
            for kind in QUESTIONS:
                if not _EVIDENCE[kind].search(text):
                    continue
                q = detail_question(title, kind, rng, pt)
                if sum(bool(_EVIDENCE[kind].search(x)) for x in texts) > 1:  # ambiguous without a hint
                    if not distinct:
                        continue
                    q = rng.choice(_HINT[pt]).format(q=q, w=rng.choice(distinct))
                qs.append((q, i))
            if distinct:  # half of them with the word inflected otherwise, as a Portuguese shopper might write it
                w = rng.choice(distinct)
                if rng.random() < 0.5 and len(w) > 6:
                    w = w[:max(5, len(w) - 3)] + rng.choice(("ia", "os", "as", "o", "a", "es", "ico"))
                qs.append((rng.choice(_ABOUT[pt]).format(t=t, w=w), i))
            m = re.search(rf"\b(?:{_NUM})\s+([a-z]{{4,}}s)\b", text)
            if m and sum(m.group(1) in x for x in texts) == 1:
                qs.append((rng.choice(_COUNT[pt]).format(t=t, w=m.group(1)), i))
        stated = {k for k in QUESTIONS if any(_EVIDENCE[k].search(x) for x in texts)}
        missing = [k for k in NOT_STATED_KINDS if k not in stated]
        rng.shuffle(qs)
        qs = qs[:per_product]
        n_neg = max(1, len(qs) // 3)
        for _ in range(n_neg):  # questions the description does not answer
            pt = rng.random() < 0.3
            if missing and rng.random() < 0.6:
                qs.append((detail_question(title, rng.choice(missing), rng, pt), None))
            else:
                other_title, other = rows[(pi + 1 + rng.randrange(len(rows) - 1)) % len(rows)]
                words = [w for w in re.findall(r"[^\W_\d]{6,}", other) if w.lower() not in content.lower()]
                if words:
                    qs.append((rng.choice(_ABOUT[pt]).format(t=t, w=rng.choice(words)), None))
        out += [{"question": q, "title": title, "content": content, "positive": i} for q, i in qs]
    return out


def _matrix(items) -> tuple["np.ndarray", "np.ndarray", "np.ndarray", list[dict]]:
    """(X, y, group sizes, the items kept) over each item's candidate sentences (`candidates`); an item
    without candidates, or whose positive is not among them, says nothing about ranking and is left out."""
    import numpy as np

    from rag.detail import detail_kind, sentences, without_title

    Xs, ys, gs, kept = [], [], [], []
    for it in items:
        spans = sentences(it["content"])
        asked = without_title(it["question"], it["title"])
        kind = detail_kind(asked)
        cands = candidates(kind, it["content"], spans, it["title"])
        if not cands or (it["positive"] is not None and it["positive"] not in cands):
            continue
        X = sentence_features(asked, kind, it["title"], it["content"], spans)[cands]
        y = np.array([float(i == it["positive"]) for i in cands], dtype=np.float32)
        Xs.append(X), ys.append(y), gs.append(len(cands)), kept.append(dict(it, kind=kind, cands=cands))
    return np.concatenate(Xs), np.concatenate(ys), np.array(gs), kept


def calibrate(best_p, answerable, false_budget: float = 0.08) -> float:
    """The "doesn't say" threshold: the highest one that leaves at most `false_budget` of the answerable
    questions unanswered (best sentence's probability below it)."""
    import numpy as np

    pa = np.sort(np.asarray(best_p)[np.asarray(answerable)])
    return float(pa[int(math.floor(false_budget * len(pa)))]) if len(pa) else 0.5


def labelled(fixture_items, content: dict) -> list[dict]:
    """Hand-written questions with gold strings ({"title", "question", "answers"}; rag.evaluate's fixtures) as
    training items: the positive is the first sentence holding a gold string; `answers: []`: none."""
    from rag.detail import sentences

    out = []
    for it in fixture_items:
        text = content.get(it["title"])
        if not text or it.get("kind") == "compare":
            continue
        spans = sentences(text)
        pos = next((i for i, (s, e) in enumerate(spans) if any(g.lower() in text[s:e].lower() for g in it["answers"])),
                   None)
        if it["answers"] and pos is None:
            continue
        out.append({"question": it["question"], "title": it["title"], "content": text, "positive": pos,
                    "hand_written": True})
    return out


def train(rows, seed: int = 0, val_share: int = 5, trees: int = 200, extra: list[dict] | None = None,
          extra_weight: float = 5.0) -> EvidenceRanker:
    """An EvidenceRanker for (title, content) `rows` of a catalog: products with (crc32 of the title % val_share
    == 0) validate (the threshold is calibrated on them, the figures in the card come from them)."""
    import random
    import zlib

    import lightgbm as lgb
    import numpy as np

    rng = random.Random(seed)
    items = training_questions(rows, rng) + list(extra or [])
    X, y, g, items = _matrix(items)
    is_val = np.array([zlib.crc32(it["title"].encode()) % val_share == 0 for it in items])
    row_val = np.repeat(is_val, g)
    model = lgb.LGBMClassifier(n_estimators=trees, num_leaves=15, learning_rate=0.05, min_child_samples=20,
                               subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed, n_jobs=2,
                               deterministic=True, force_row_wise=True, verbose=-1)
    w = np.repeat([extra_weight if it.get("hand_written") else 1.0 for it in items], g)
    model.fit(X[~row_val], y[~row_val], sample_weight=w[~row_val], feature_name=list(FEATURES),
              categorical_feature=["kind"])
    booster = model.booster_
    p = booster.predict(X, num_threads=1)
    starts = np.concatenate([[0], np.cumsum(g)[:-1]])
    best = np.array([p[s:s + n].max() for s, n in zip(starts, g)])
    right = np.array([it["positive"] is not None and it["cands"][int(p[s:s + n].argmax())] == it["positive"]
                      for it, s, n in zip(items, starts, g)])
    answerable = np.array([it["positive"] is not None for it in items])
    no_kind = np.array([it["kind"] is None for it in items])  # only their "doesn't say" is the threshold's
    threshold = calibrate(best[is_val & no_kind], answerable[is_val & no_kind])
    said = (best >= threshold) | ~no_kind
    val_a, val_u = is_val & answerable, is_val & ~answerable
    card = {"library": f"lightgbm {lgb.__version__}", "objective": "binary (a sentence answers the question)",
            "trees": int(booster.num_trees()), "seed": seed,
            "training": {"products": len({it["title"] for it, v in zip(items, is_val) if not v}),
                         "questions": int((~is_val).sum()), "sentences": int((~row_val).sum()),
                         "generated": "rag.evidence.training_questions (module docstring)",
                         "split": f"products with crc32(title) % {val_share} == 0 validate"},
            "validation": {"products": len({it["title"] for it, v in zip(items, is_val) if v}),
                           "answerable": int(val_a.sum()), "unanswerable": int(val_u.sum()),
                           "right_sentence": round(float(right[val_a].mean()), 4) if val_a.any() else None,
                           "stated_and_right": round(float((right & said)[val_a].mean()), 4)
                           if val_a.any() else None,
                           "doesnt_say_on_unanswerable": round(float((~said[val_u]).mean()), 4)
                           if val_u.any() else None}}
    return EvidenceRanker(booster, threshold, card)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import hashlib

    from indexing.catalog import catalog_file, read_catalog
    from indexing.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m rag.evidence", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", required=True, help="a catalog from `productqa prepare`")
    ap.add_argument("--exclude", nargs="*", default=["tests/rag/data/shopper_questions.json",
                                                    "tests/rag/data/detail_questions.json"],
                    help="question fixtures ([{title, ...}]) whose products are never trained on")
    ap.add_argument("--out", required=True, help="writes OUT.txt (the booster) and OUT.json (its card)")
    ap.add_argument("--threshold", type=float,
                    help="the \"doesn't say\" threshold for questions of no known kind (default: calibrated on the "
                         "validation products' generated questions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hand-written", nargs="*", default=[],
                    help="hand-written question fixtures to train on too: their dev half only "
                         "(rag.evaluate.tuning_part)")
    args = ap.parse_args(argv)
    try:
        exclude = {it["title"] for f in args.exclude for it in json.loads(Path(f).read_text(encoding="utf-8"))}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(f"--exclude: not a JSON list of {{\"title\": ...}} questions ({e})") from None
    docs = read_catalog(args.catalog, columns=["title", "content"])
    rows = [(t, c) for t, c in zip(docs["title"], docs["content"]) if c and t not in exclude]
    from rag.evaluate import tuning_part

    content = dict(zip(docs["title"], docs["content"]))
    extra = labelled([it for f in args.hand_written for it in json.loads(Path(f).read_text(encoding="utf-8"))
                      if tuning_part(it["title"]) == "dev"], content)
    r = train(rows, seed=args.seed, extra=extra)
    if args.threshold is not None:
        r.threshold, r.card["threshold_from"] = args.threshold, "--threshold"
    path = catalog_file(args.catalog)
    r.card["trained_on"] = {"catalog": str(args.catalog), "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                            "products": len(rows), "excluded_fixture_products": len(exclude),
                            "command": "python -m rag.evidence " + " ".join(argv if argv is not None else
                                                                            __import__("sys").argv[1:])}
    r.save(args.out)
    print(json.dumps({k: r.card[k] for k in ("training", "validation")} | {"threshold": r.threshold}, indent=1))


if __name__ == "__main__":
    import sys

    from indexing.errors import UserError

    try:
        main()
    except UserError as e:
        sys.exit(f"python -m rag.evidence: error: {e}")
