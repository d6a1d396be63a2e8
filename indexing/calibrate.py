"""Calibrate the "not in the catalog" threshold of an index, from measurements.

At build time, questions about catalog products (the retrieval evaluation's: five ways of naming a
product and, when descriptions are indexed, three ways of describing one) and about invented
products (made-up brands and product types, checked absent from the catalog) are searched exactly as
answering searches them; the threshold on the best `Hit.evidence` among the top hits (cosine plus
the share of the question's words in the matched title or passage: on the real records it separates
invented products from real ones far better than the cosine alone, most of all for questions that
describe a product) is the one that rejects the most invented products while wrongly rejecting at most
MAX_FALSE_ABSTAIN of the real ones. It is stored in the index's meta.json with the rates it achieved.

The same run calibrates when retrieval is sure enough to answer "what is X" with the catalog's
description without the model (rag/answer.py, auto mode): the smallest margin of the learned fusion's
score of the best hit over the second's at which at most MAX_CATALOG_WRONG of the naming questions
about the ranker's validation products (never trained on) have a wrong best hit.
"""

from __future__ import annotations

import random

MAX_FALSE_ABSTAIN = 0.03  # leave room under the 5% target for questions unlike the generated ones
# Questions that describe a product are closer to invented ones (a description is many products' words):
# up to the 5% target itself.
MAX_FALSE_ABSTAIN_DESCRIBED = 0.05
MAX_CATALOG_WRONG = 0.005  # wrong best hits allowed among the questions above the "sure" margin

_BRANDS = ["Zorvex", "Quillmark", "Brontide", "Velmora", "Krispa", "Oxlade", "Tarnwell", "Fennic", "Glimrik",
           "Ashcombe", "Pelloton", "Yarrowby", "Drumlin", "Cobaltia", "Hexwright", "Mirelle", "Sundrop", "Nuvolo"]
_ADJ = ["Quantum", "Heated", "Foldable", "Solar-Powered", "Titanium", "Inflatable", "Self-Stirring", "Holographic",
        "Magnetic", "Waterproof", "Levitating", "Pocket", "Smart", "Glow-in-the-Dark", "Voice-Controlled"]
_NOUNS = ["Hover Skates", "Umbrella Drone", "Snow Globe Projector", "Cat Translator Collar", "Tea Kettle Robot",
          "Garden Gnome Speaker", "Time Capsule Kit", "Sock Sorting Machine", "Cloud Humidifier Lamp",
          "Desk Volcano Model", "Weather Station Hat", "Bubble Typewriter", "Aquarium Backpack",
          "Pizza Oven Helmet", "Meteorite Jewelry Box", "Moon Rock Paperweight"]


def invented_titles(n: int, exclude: set[str], seed: int = 0) -> list[str]:
    """`n` product titles that are not in the catalog (casefolded `exclude`)."""
    rng = random.Random(seed)
    out, seen = [], set(exclude)
    while len(out) < n:
        t = (f"{rng.choice(_BRANDS)} {rng.choice(_ADJ)} {rng.choice(_NOUNS)} "
             f"{rng.choice(['', 'X', 'Pro', 'Mini', str(rng.randint(2, 9000))])}").strip()
        if t.casefold() not in seen:
            seen.add(t.casefold())
            out.append(t)
    return out


def invented_descriptions(n: int, seed: int = 0) -> list[str]:
    """`n` questions describing invented products ("I'm looking for something that is a foldable
    umbrella drone"), in English and Portuguese: the describing counterpart of `invented_titles`."""
    rng = random.Random(seed)
    frames = ["I'm looking for something that is a {p}", "Procuro um produto assim: {p}",
              "a {p} that works without batteries", "do you sell a {p}?", "the one with a {p} inside"]
    return [rng.choice(frames).format(p=f"{rng.choice(_ADJ)} {rng.choice(_NOUNS)}".lower()) for _ in range(n)]


def pick_threshold(real, fake, max_false: float) -> float:
    """The threshold rejecting the most `fake` scores while rejecting at most `max_false` of `real`."""
    import numpy as np

    real, fake = np.asarray(real), np.asarray(fake)
    best = (0.0, 0.0)  # (correct - false, threshold)
    for t in np.unique(np.concatenate([real, fake])):
        false = float((real < t).mean())
        if false > max_false:
            break
        correct = float((fake < t).mean())
        if correct - false > best[0]:
            best = (correct - false, float(t))
    return best[1]


def pick_margin(margins, right, max_wrong: float) -> float | None:
    """The smallest margin at or above which at most `max_wrong` of the best hits are wrong (None: none is)."""
    import numpy as np

    margins, right = np.asarray(margins, dtype=float), np.asarray(right, dtype=bool)
    for t in np.unique(margins):  # ascending: the first that holds is the smallest
        if (~right[margins >= t]).mean() <= max_wrong:
            return float(t)
    return None


def sure_margin(rows: list[dict], hits: list, naming) -> dict:
    """meta.json's "catalog_margin" and how it was found (see the module docstring)."""
    import numpy as np

    from indexing.questions import found
    from indexing.rank import validation_product

    margins, right = [], []
    for r, hs, named in zip(rows, hits, naming):
        if named and hs and hs[0].fused is not None and validation_product(r["uid"]):
            second = hs[1].fused if len(hs) > 1 and hs[1].fused is not None else hs[0].fused - 100.0
            margins.append(hs[0].fused - second)
            right.append(found(r, hs[0].uid, hs[0].title, hs[0].content)[0])
    m = pick_margin(margins, right, MAX_CATALOG_WRONG) if margins else None
    above = np.asarray(margins) >= m if m is not None else np.zeros(len(margins), dtype=bool)
    return {"catalog_margin": None if m is None else round(m, 4),
            "catalog_calibration": {"questions": len(margins),
                                    "share_sure": round(float(above.mean()), 4) if margins else 0.0,
                                    "wrong_when_sure": round(float((~np.asarray(right, dtype=bool))[above].mean()), 4)
                                    if above.any() else None, "max_wrong": MAX_CATALOG_WRONG,
                                    "top1_right_all": round(float(np.mean(right)), 4) if right else None}}


def calibrate_index(index, n: int = 300, seed: int = 0, k: int = 3) -> dict:
    """Thresholds for a loaded `indexing.search.Index`, on the best evidence of its top-`k` hybrid hits
    (what answering compares with them): one for questions the index answers by title (they name a
    product), one for questions it answers by description. Real questions (five ways of naming each
    product, three of describing it) and invented ones (named, and described) are split by how the
    index answered them, and each threshold rejects the most invented questions of its side while
    wrongly rejecting at most MAX_FALSE_ABSTAIN (by title) / MAX_FALSE_ABSTAIN_DESCRIBED (by
    description) of the real ones."""
    import numpy as np

    from indexing.questions import (
        TRAIN_FRAMES_EN,
        TRAIN_FRAMES_PT,
        VARIANTS,
        held_out_product,
        make_eval_questions,
        make_question,
    )
    from indexing.rank import training_questions
    from indexing.search import ABSTAIN_SCORE

    def search(questions):
        hits = index.retrieve_many(questions, k=k)
        best = np.asarray([max((h.evidence for h in hs), default=0.0) for hs in hits])
        by_desc = np.asarray([bool(hs) and hs[0].match == "description" for hs in hits])
        return best, by_desc, hits

    docs = index.docs
    rng = random.Random(seed)
    if index.passages is not None:  # the phrasings the learned fusion trains on, about the products it trains on
        # (the evaluation's held-out products and frames stay unseen); conversational ones name a product too
        trained = docs[[not held_out_product(u) for u in docs["uid"]]]
        trained = trained if len(trained) >= 50 else docs
        trained = trained.iloc[sorted(rng.sample(range(len(trained)), min(n, len(trained))))]
        rows = training_questions(trained, seed)
    else:
        rows = make_eval_questions(docs, n=min(n, len(docs)), seed=seed)
    real, real_desc, real_hits = search([r["question"] for r in rows])
    titles = invented_titles(n, {t.casefold() for t in docs["title"]}, seed)
    fake_q = [make_question(t, t, "any") if i % 2 else rng.choice(TRAIN_FRAMES_EN + TRAIN_FRAMES_PT).format(title=t)
              for i, t in enumerate(titles)]
    n_named = len(fake_q)
    if index.passages is not None:
        fake_q += invented_descriptions(n, seed)
    fake, fake_desc, _ = search(fake_q)
    # the title threshold is set by questions that name a product (as before descriptions were
    # indexed): a describing question that the titles happened to answer must not lower the bar
    # that invented product names are held to
    naming = np.asarray([r["variant"] in (*VARIANTS, "chat_trained") for r in rows])
    t_title = pick_threshold(real[~real_desc & naming], fake[~fake_desc], MAX_FALSE_ABSTAIN)
    t_desc = pick_threshold(real[real_desc], fake[fake_desc], MAX_FALSE_ABSTAIN_DESCRIBED) if real_desc.any() \
        else t_title
    out = {"abstain_score": ABSTAIN_SCORE, "abstain_threshold": round(t_title, 4)}
    if index.passages is not None:
        out["abstain_threshold_described"] = round(t_desc, 4)
    rejected_fake = fake < np.where(fake_desc, t_desc, t_title)
    rejected = real < np.where(real_desc, t_desc, t_title)
    out["calibration"] = {
        "real_questions": len(real), "invented_questions": len(fake),
        "answered_by_description": {"real": round(float(real_desc.mean()), 4),
                                    "invented": round(float(fake_desc.mean()), 4)},
        "correct_abstain_rate": round(float(rejected_fake[:n_named].mean()), 4),
        "correct_abstain_rate_described": (round(float(rejected_fake[n_named:].mean()), 4)
                                           if len(fake) > n_named else None),
        "false_abstain_rate": round(float(rejected.mean()), 4),
        "false_abstain_by_kind": {kind: round(float(rejected[[r["variant"] == kind for r in rows]].mean()), 4)
                                  for kind in sorted({r["variant"] for r in rows})},
        "max_false_abstain": MAX_FALSE_ABSTAIN, "max_false_abstain_described": MAX_FALSE_ABSTAIN_DESCRIBED}
    if index.ranker is not None and index.fusion == "learned":
        out.update(sure_margin(rows, real_hits, naming & ~rejected))
    return out
