"""Answering: retrieved catalog descriptions in the Alpaca prompt, a (fine-tuned) small Llama answers.

    import rag
    rag.load("data/index", adapter="data/adapter")     # once per process (models load here)
    a = rag.ask("What is 'Mog's Kittens'?")            # Answer(text, sources, abstained, ...)
    for piece in rag.stream("Qual é a descrição deste produto: mog's kittens?"):
        ...                                            # str pieces as generated, then the Answer

`rag.ask(question, index=..., adapter=...)` also loads on first use. The loaded models are shared by
every later call with the same index and adapter; `rag.answer.Answerer` is the class behind it.
Importing `rag` is cheap: torch and transformers load on the first `load`.
"""

from __future__ import annotations

_loaded: dict = {}  # (index, adapter, base_model) -> Answerer
_default = None  # the Answerer of the last `load`: what ask/stream use without index=


def load(index, adapter=None, base_model=None, **kwargs):
    """The Answerer for this index/adapter, loading the models only the first time."""
    from pathlib import Path

    from rag.answer import Answerer

    key = (str(Path(index).resolve()), str(Path(adapter).resolve()) if adapter else None,
           str(base_model) if base_model else None)
    global _default
    if key not in _loaded:
        _loaded[key] = Answerer(index, adapter=adapter, base_model=base_model, **kwargs)
    _default = _loaded[key]
    return _default


def _answerer(index, adapter):
    from indexing.errors import UserError

    if index is not None:
        return load(index, adapter)
    if _default is None:
        raise UserError("no index loaded: call rag.load(INDEX_DIR) or pass index=INDEX_DIR")
    return _default


def ask(question: str, index=None, adapter=None, **kwargs):
    """One grounded answer: `Answer(text, sources, abstained, ...)`; kwargs go to `Answerer.ask`."""
    return _answerer(index, adapter).ask(question, **kwargs)


def stream(question: str, index=None, adapter=None, **kwargs):
    """Text pieces as they are generated, then the final `Answer` (kwargs go to `Answerer.stream`)."""
    return _answerer(index, adapter).stream(question, **kwargs)
