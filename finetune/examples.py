"""Training examples built the way the model will be used: question + retrieved descriptions -> answer.

    from finetune.examples import ExampleConfig, build_examples
    train, val = build_examples(docs, index, ExampleConfig())

RAFT-style mix (Zhang et al., 2024): for each product, a question in one of the project's English or
Portuguese phrasings, and a context of k products retrieved by the real index for that question.
  * oracle examples: the product is in the context (usually first, as retrieval ranks it, but moved to
    a later slot in `p_not_first` of them) -> the answer is its description;
  * distractor-only examples (`p_distractor_only`): the product is removed, the context holds only its
    nearest neighbours -> the answer is "This product is not in the catalog."
Products are split 90/10 by uid (hash-based, so stable); a training prompt never shows a validation
product, not even as a distractor.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass


@dataclass
class ExampleConfig:
    k: int = 3  # products in each prompt's context (same as `productqa ask -k 3`)
    p_distractor_only: float = 0.2  # share of examples without the right product -> "not in the catalog"
    p_not_first: float = 0.3  # share of oracle examples where the right product is not ranked first
    questions_per_product: int = 1  # phrasings per product
    val_fraction: float = 0.1  # products held out for validation (and answer evaluation)
    seed: int = 3407  # phrasing / mixing seed


def is_validation(uid: str, val_fraction: float = 0.1) -> bool:
    """Stable 90/10 split by product: the same uid is always on the same side."""
    h = int.from_bytes(hashlib.blake2b(f"split:{uid}".encode(), digest_size=4).digest(), "little")
    return (h % 10_000) < val_fraction * 10_000


def build_examples(docs, index, cfg: ExampleConfig = ExampleConfig(), progress: bool = False):
    """(train, val) lists of {"prompt", "completion", "uid", "kind", "question"} for the products in `docs`."""
    from tqdm import tqdm

    from indexing.questions import make_question
    from rag.prompt import build_prompt, build_response

    rng = random.Random(cfg.seed)
    val_uids = {u for u in docs["uid"] if is_validation(u, cfg.val_fraction)}
    items = []
    for uid, title, content in zip(docs["uid"], docs["title"], docs["content"]):
        for j in range(cfg.questions_per_product):
            items.append((uid, title, content, make_question(title, uid, "any", salt=f"{cfg.seed}:{j}")))
    train, val = [], []
    batch = 128
    for s in tqdm(range(0, len(items), batch), desc="examples", unit="batch", disable=not progress):
        chunk = items[s: s + batch]
        # more candidates than k: the right product and validation products may be dropped below
        results = index.retrieve_many([q for *_, q in chunk], k=cfg.k + 8)
        for (uid, title, content, q), hits in zip(chunk, results):
            held_out = uid in val_uids
            others = [(h.title, h.content) for h in hits
                      if h.uid != uid and h.title.casefold() != title.casefold()
                      and (held_out or h.uid not in val_uids)]
            if rng.random() < cfg.p_distractor_only:
                ctx, completion, kind = others[: cfg.k], build_response(None), "distractor"
            else:
                ctx = others[: cfg.k - 1]
                pos = rng.randint(1, len(ctx)) if ctx and rng.random() < cfg.p_not_first else 0
                ctx.insert(pos, (title, content))
                completion, kind = build_response(content, title, pos + 1), "oracle" if pos == 0 else "oracle-not-first"
            ex = {"prompt": build_prompt(q, ctx), "completion": completion, "uid": uid, "kind": kind,
                  "question": q}
            (val if held_out else train).append(ex)
    return train, val


def examples_fingerprint(examples: list[dict]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for ex in examples:
        h.update(ex["prompt"].encode())
        h.update(b"\x1e")
        h.update(ex["completion"].encode())
        h.update(b"\x1f")
    return h.hexdigest()
