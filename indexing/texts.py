"""What each product is embedded and BM25-indexed as: its title, and its description cut into passages.

    from indexing.texts import Splitter, dense_texts, lexical_texts
    sp = Splitter(max_tokens=128)                    # counts tokens with the embedding model's tokenizer
    sp.spans("A long description. With sentences.")  # [(start, end), ...] character offsets

A passage holds at most `max_tokens` of the embedding model's tokens (all-MiniLM-L6-v2 reads 256 at
most and was trained on 128), cut at sentence boundaries where possible and at word boundaries
otherwise. The splitting is semantic-text-splitter's (Rust, Unicode sentence segmentation, exact token
counts with the model's own `tokenizers` tokenizer). A passage is stored as (product id, start, end)
into its product's description, so the index holds the description once and a hit can show the
passage that matched.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PASSAGE_TOKENS = 128  # per passage (benchmarks/retrieval_choices.py compares sizes)


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

    def __init__(self, max_tokens: int = DEFAULT_PASSAGE_TOKENS, model_path: str | Path | None = None):
        from semantic_text_splitter import TextSplitter
        from tokenizers import Tokenizer

        from indexing.embed import default_model_path

        path = Path(model_path) if model_path else default_model_path()
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.no_truncation()  # count the whole text, not the model's 256-token window
        tok.no_padding()
        self.max_tokens = max_tokens
        self._splitter = TextSplitter.from_huggingface_tokenizer(tok, max_tokens)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """[(start, end)] character offsets of the passages of `text` (none for an empty text)."""
        return [(start, start + len(chunk)) for start, chunk in self._splitter.chunk_indices(text)]

    def split_many(self, ids, contents, first_pid: int = 0, progress: bool = False):
        """A passages table (pid, id, start, end) for many products, in input order; pids count from
        `first_pid`."""
        import numpy as np
        import pandas as pd
        from tqdm import tqdm

        pid, starts, ends = [], [], []
        for i, text in tqdm(zip(ids, contents), total=len(ids), unit="product", desc="split descriptions",
                            disable=not progress, mininterval=1.0):
            for s, e in self.spans(text):
                pid.append(i)
                starts.append(s)
                ends.append(e)
        return pd.DataFrame({"pid": np.arange(first_pid, first_pid + len(pid), dtype=np.int64),
                             "id": np.asarray(pid, dtype=np.int64), "start": np.asarray(starts, dtype=np.int32),
                             "end": np.asarray(ends, dtype=np.int32)})
