"""What each product is embedded and BM25-indexed as: its title, and its description cut into passages.

    from indexing.texts import Splitter, dense_texts, lexical_texts
    sp = Splitter(max_tokens=128)                    # counts tokens with the embedding model's tokenizer
    sp.spans("A long description. With sentences.")  # [(start, end), ...] character offsets

A passage holds at most `max_tokens` of the embedding model's tokens (all-MiniLM-L6-v2 reads 256 at
most and was trained on 128), cut at sentence boundaries where possible and at word boundaries
otherwise. `unit="chars"` counts characters instead, max_tokens * CHARS_PER_TOKEN of them: the same
cuts without tokenizing, ~50x faster to split (what a full-catalog build needs; docs/results.md
"Full catalog on this CPU").
The splitting is semantic-text-splitter's (Rust, Unicode sentence segmentation, exact token counts
with the model's own `tokenizers` tokenizer). A passage is stored as (product id, start, end) into
its product's description, so the index holds the description once and a hit can show the passage
that matched.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PASSAGE_TOKENS = 128  # per passage (benchmarks/retrieval_choices.py compares sizes)
SPLIT_UNITS = ("tokens", "chars")  # what a passage's size is counted in
# characters per MiniLM token in the real descriptions: 1 / 0.219 (benchmarks/prepare.py measures it)
CHARS_PER_TOKEN = 4.5


def dense_texts(titles, contents, embed: str = "title") -> list[str]:
    """The text each product's title vector encodes ("title+content" is kept for comparisons)."""
    if embed == "title":
        return list(titles)
    if embed == "title+content":
        return [f"{t}. {c}" for t, c in zip(titles, contents)]
    raise ValueError(f"unknown embed field {embed!r}")


LEXICAL_FIELDS = {  # what the title BM25 indexes; benchmarks/retrieval_choices.py compares them
    "title": lambda t, c: t,
    "title+content": lambda t, c: f"{t} {c}",
    "2title+content": lambda t, c: f"{t} {t} {c}",  # title twice: it is what questions quote
}


def lexical_texts(titles, contents, lexical: str = "title") -> list[str]:
    """The text the title BM25 indexes for each product."""
    f = LEXICAL_FIELDS[lexical]
    return [f(t, c) for t, c in zip(titles, contents)]


def passage_texts(contents_by_id, passages) -> list[str]:
    """The text of each passage row (id, start, end) of a passages table."""
    return [contents_by_id[i][s:e] for i, s, e in zip(passages["id"], passages["start"], passages["end"])]


class Splitter:
    """Description -> passage spans, token-counted with the embedding model's tokenizer."""

    def __init__(self, max_tokens: int = DEFAULT_PASSAGE_TOKENS, model_path: str | Path | None = None,
                 unit: str = "tokens"):
        from semantic_text_splitter import TextSplitter
        from tokenizers import Tokenizer

        from indexing.embed import default_model_path

        path = Path(model_path) if model_path else default_model_path()
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.no_truncation()  # count the whole text, not the model's 256-token window
        tok.no_padding()
        if unit not in SPLIT_UNITS:
            raise ValueError(f"unknown split unit {unit!r}")
        self.max_tokens, self.unit = max_tokens, unit
        self._tok = tok if unit == "tokens" else None
        self._splitter = (TextSplitter.from_huggingface_tokenizer(tok, max_tokens) if unit == "tokens"
                          else TextSplitter(int(max_tokens * CHARS_PER_TOKEN)))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """[(start, end)] character offsets of the passages of `text` (none for an empty text)."""
        return [(start, start + len(chunk)) for start, chunk in self._splitter.chunk_indices(text)]

    def split_many(self, ids, contents, first_pid: int = 0, progress: bool = False):
        """A passages table (pid, id, start, end) for many products, in input order; pids count from
        `first_pid`."""
        import numpy as np
        import pandas as pd
        from tqdm import tqdm

        ids, contents = list(ids), list(contents)
        pid, starts, ends = [], [], []
        step = 8192  # texts per call: tokenizer and splitter work through a batch on every core (Rust)
        with tqdm(total=len(ids), unit="product", desc="split descriptions", disable=not progress,
                  mininterval=1.0) as bar:
            for a in range(0, len(ids), step):
                batch_ids, batch = ids[a: a + step], contents[a: a + step]
                # Most descriptions fit one passage: counted in one batched tokenizer call (special tokens
                # included: a bound above the splitter's own count), they are that passage, whitespace
                # trimmed as the splitter trims it; only longer ones go through the splitter.
                if self._tok is not None:
                    n_tokens = [len(e.ids) for e in self._tok.encode_batch(batch, add_special_tokens=True)]
                    long = [i for i, n in enumerate(n_tokens) if n > self.max_tokens]
                else:  # characters: the splitter is fast enough for every text
                    long = range(len(batch))
                chunks = dict(zip(long, self._splitter.chunk_all_indices([batch[i] for i in long])))
                long = set(long)
                for i, (pid_of, text) in enumerate(zip(batch_ids, batch)):
                    if i in long:
                        spans = [(start, start + len(chunk)) for start, chunk in chunks[i]]
                    else:
                        lead = len(text) - len(text.lstrip())
                        spans = [(lead, len(text.rstrip()))] if text.strip() else []
                    for start, end in spans:
                        pid.append(pid_of)
                        starts.append(start)
                        ends.append(end)
                bar.update(len(batch))
        return pd.DataFrame({"pid": np.arange(first_pid, first_pid + len(pid), dtype=np.int64),
                             "id": np.asarray(pid, dtype=np.int64), "start": np.asarray(starts, dtype=np.int32),
                             "end": np.asarray(ends, dtype=np.int32)})
