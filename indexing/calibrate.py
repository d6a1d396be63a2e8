"""Calibrate the "not in the catalog" threshold of an index, from measurements.

At build time, questions about catalog products (the five phrasings of the retrieval evaluation)
and about invented products (made-up brands and product types, checked absent from the catalog)
are embedded; the threshold on the best dense cosine is the one that rejects the most invented
products while wrongly rejecting at most MAX_FALSE_ABSTAIN of the real ones. It is stored in the
index's meta.json with the rates it achieved.
"""

from __future__ import annotations

import random

MAX_FALSE_ABSTAIN = 0.03  # leave room under the 5% target for questions unlike the generated ones

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
        t = f"{rng.choice(_BRANDS)} {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(['', 'X', 'Pro', 'Mini', str(rng.randint(2, 9000))])}".strip()
        if t.casefold() not in seen:
            seen.add(t.casefold())
            out.append(t)
    return out


def calibrate_threshold(best_cosine, docs, n: int = 300, seed: int = 0) -> dict:
    """`best_cosine(questions) -> list[float]` scores questions; returns the threshold and its rates."""
    import numpy as np

    from indexing.evaluate import make_eval_questions
    from indexing.questions import make_question

    real_q = [q["question"] for q in make_eval_questions(docs, n=min(n, len(docs)), seed=seed)]
    fake_t = invented_titles(n, {t.casefold() for t in docs["title"]}, seed)
    fake_q = [make_question(t, t, "any") for t in fake_t]
    real = np.asarray(best_cosine(real_q))
    fake = np.asarray(best_cosine(fake_q))
    best = (0.0, 0.0, 0.0)  # (score, threshold, correct abstain rate)
    for t in np.unique(np.concatenate([real, fake])):
        false_abstain = float((real < t).mean())
        if false_abstain > MAX_FALSE_ABSTAIN:
            break
        correct = float((fake < t).mean())
        if correct - false_abstain > best[0]:
            best = (correct - false_abstain, float(t), correct)
    t = best[1]
    return {"abstain_threshold": round(t, 4),
            "calibration": {"real_questions": len(real), "invented_questions": len(fake),
                            "false_abstain_rate": round(float((real < t).mean()), 4),
                            "correct_abstain_rate": round(float((fake < t).mean()), 4),
                            "max_false_abstain": MAX_FALSE_ABSTAIN}}
