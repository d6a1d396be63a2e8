"""Grounded answers: retrieve the products a question is about, then let the (fine-tuned) model answer
from their descriptions, or abstain.

    productqa ask "What is 'Girls Ballet Tutu Neon Pink'?" --index data/index --adapter data/adapter
    productqa ask "Qual é a descrição deste produto: mog's kittens?" --index data/index --json

    from rag.answer import Answerer
    qa = Answerer("data/index", adapter="data/adapter")     # models load once (AnswerConfig's fields)
    a = qa.ask("What is 'Mog's Kittens'?")                   # Answer(text, sources, abstained, ...)
    for piece in qa.stream("..."): ...                       # text pieces, then the Answer

What the answer is (`mode`, measured in docs/results.md "Answer modes and engines"):
  verbatim   the model reads the question and the retrieved entries and picks one: it writes only the
             citation ("[2]"), and the answer is that entry's catalog description, word for word
  generate   the model writes the answer (citation line, then the description as it copies it); the
             answer ends at EOS, "###" or the start of the next entry, and an answer that is empty,
             only a citation, or loops falls back to the cited entry's catalog description
  quote      no model: the sentence of the best retrieved entry's description that states the detail
             asked ("what age is it for?" -> "Ages 0-3", and the sentence, word for word, with its
             span; rag/detail.py), or "the catalog's description doesn't say ..." (origin "not_stated")
  read       the fine-tuned model reads the retrieved entries and quotes the sentence stating the
             detail (trained on rag/detail.py's questions: finetune/examples.py), or says the entry
             does not say; the quote must be word for word the cited entry's text (check_quote), else
             the answer falls back to quote mode's sentence, origin "fallback" with the reason
  auto       (default) verbatim for questions that ask what a product is, and when retrieval is sure
             of the product (the learned fusion's margin over the second hit, calibrated at index build:
             Index.sure) the catalog description at once, no model call (picked_by "retrieval"); quote for
             questions about one detail of it (age, author, pages, ... or any other: then its most similar
             sentence); quote, not read: it scored higher on the detail fixture (docs/results.md "Detail questions")

A product the catalog holds without a description (title-only, ~38% of AmazonTitles) is answered for
what it is: when the best retrieved product (or the entry the model cites) has no description, the
answer says the product is in the catalog and its description is empty (origin "no_description", that
product cited; a detail question: the catalog holds nothing to answer it from), with no model call. With
`draft_missing` (`--draft-missing`, the chat's checkbox), a question asking what such a product is gets a
description the model drafts from the title alone, streamed after a lead sentence that says so (origin
"drafted"; `draft` holds the model's text alone, `drafted_by` which model wrote it): the model's words,
never shown or cited as the catalog's.

A question naming two products ("Mog's Kittens or Mog in the Dark: which is for younger children?", "X vs Y",
"difference between X and Y"; rag/compare.py: the catalog decides where the names split) is answered side by
side, in any mode and with no model: each product's sentence stating what is asked, word for word from its
own description, or that its description doesn't say (origin "compare", both products the sources, each
one's evidence in `compared`).

Abstention happens twice: before generating, when the best retrieved product is not close enough
(cosine below the threshold calibrated at index build time and stored in meta.json), and when the
fine-tuned model itself answers that the product is not in the catalog. An answer always carries
the products it was drawn from; with no sources there is no answer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexing.errors import UserError
from indexing.follow import RELOAD_SECONDS
from indexing.questions import sanitize_question
from rag.batching import drain
from rag.local import REPETITION_PENALTY

DEFAULT_MAX_NEW_TOKENS = 320  # ~1,200 characters: the longest answer the prompt can support
MODES = ("auto", "verbatim", "generate", "quote", "read")
ENGINES = ("transformers", "vllm")  # who produces the tokens: this process, or a vLLM server
DEFAULT_MODE = "auto"
# verbatim: the model writes "[2]" (3 tokens) or starts "This product is not in the catalog." (its
# first 4 tokens are REFUSAL_START); it stops at "]" or the end of the line
PICK_TOKENS = 6
REFUSAL_START = "This product is not"
PICK_STOP = ["]", "\n", "###"]
READ_TOKENS = 128  # read mode: a citation line and one sentence (quotes are cut to ~40 words)
DRAFT_TOKENS = 160  # a drafted description in an answer: ~600 characters, what drafts are trained to
DESCRIBING_MODES = ("verbatim", "generate")  # answer modes of questions asking what a product is: drafts answer them


@dataclass
class Answer:
    question: str
    text: str
    sources: list = field(default_factory=list)  # indexing.search.Hit, best first
    abstained: bool = False
    notice: str | None = None  # e.g. "question truncated to 2,000 characters"
    latency_ms: float = 0.0
    retrieval_ms: float = 0.0
    first_token_ms: float | None = None
    cited: int | None = None  # the source (1-based rank) the answer's citation line names, if any
    # where the text comes from: "generated" (the model's words), "catalog" (the cited entry's
    # description: verbatim mode, or auto mode when retrieval is sure, see picked_by), "fallback" (the
    # model's answer was unusable, see fallback_reason: the cited entry's description instead), "refused"
    # (not in the catalog)
    origin: str = "generated"
    fallback_reason: str | None = None  # "empty", "citation only", "looping"; read mode: "no citation",
    # "quote not in the cited entry", "quote from another entry"
    # detail answers (origin "quote" / "not_stated"): the detail asked, and the cited entry's sentence
    # stating it, word for word, with its [start, end) in that entry's description
    kind: str | None = None
    quote: str | None = None
    quote_span: tuple[int, int] | None = None
    mode: str | None = None  # the answer mode that answered (auto resolved: verbatim, generate, quote, read)
    # origin "catalog": who picked the entry, "model" (verbatim) or "retrieval" (auto mode, the best hit
    # ahead of the second by the calibrated margin: Index.sure; no model call)
    picked_by: str | None = None
    index_version: int | None = None  # the index version its sources come from (indexing/store.py)
    # origin "drafted": the model's draft alone (`text` is a lead saying so, then the draft), and who wrote it:
    # {"model": base name, "base_hash", "adapter": folder name or None, "adapter_hash"}
    draft: str | None = None
    drafted_by: dict | None = None
    # origin "compare": the question names two products (rag/compare.py); each one's evidence, its own
    # description's words (rag.compare.Side), in the order of `sources`
    compared: list | None = None
    # a yes/no question: "yes" or "no" where the quoted evidence settles it (rag.detail.yes_no), else None
    verdict: str | None = None
    # a detail answer's short form where the quote has one ("Ages 0-3", "by Judith Kerr", "1951"), and its
    # [start, end) in the cited entry's description
    short: str | None = None
    short_span: tuple[int, int] | None = None

    @property
    def cited_source(self):
        return self.sources[self.cited - 1] if self.cited and self.cited <= len(self.sources) else None

    def to_dict(self) -> dict:
        cited = self.cited_source
        return {"question": self.question, "answer": self.text, "abstained": self.abstained,
                "cited_uid": cited.uid if cited else None, "origin": self.origin,
                "fallback_reason": self.fallback_reason, "kind": self.kind, "quote": self.quote,
                "quote_span": list(self.quote_span) if self.quote_span else None, "mode": self.mode,
                "picked_by": self.picked_by, "index_version": self.index_version,
                "draft": self.draft, "drafted_by": self.drafted_by,
                "compared": [side.to_dict() for side in self.compared] if self.compared else None,
                "verdict": self.verdict, "short": self.short,
                "short_span": list(self.short_span) if self.short_span else None,
                "sources": [{"uid": h.uid, "title": h.title, "score": round(h.dense_score or 0.0, 4),
                             "match": h.match, **({"passage": h.passage} if h.match == "description" else {})}
                            for h in self.sources],
                "notice": self.notice, "latency_ms": round(self.latency_ms, 1),
                "retrieval_ms": round(self.retrieval_ms, 1),
                "first_token_ms": None if self.first_token_ms is None else round(self.first_token_ms, 1)}


def clean_generation(text: str) -> str:
    """The answer part of a generation: cut at the next "###" section or the next "[n] Title" entry."""
    from rag.prompt import cut_answer

    return cut_answer(text)[0]


_TOKEN = re.compile(r"\w+", re.UNICODE)
_WORD = re.compile(r"[^\W_]", re.UNICODE)  # an answer without a letter or digit ("", "[", "...") is empty


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def loops(text: str, n: int = 3, times: int = 3) -> bool:
    """Does some word n-gram occur `times` or more (a generation stuck in a loop)?"""
    t = tokens(text)
    grams = Counter(tuple(t[i: i + n]) for i in range(len(t) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def limits(max_new_tokens: int, temperature: float, mode: str) -> tuple[int, float, list[str]]:
    """(new tokens, temperature, stop strings) for an answer mode, whichever engine generates: a verbatim
    pick is greedy, at most PICK_TOKENS, and stops at "]"; a generated answer stops at the next
    section or entry (rag.prompt.STOP_STRINGS)."""
    from rag.prompt import STOP_STRINGS

    if mode == "verbatim":
        return min(max_new_tokens, PICK_TOKENS), 0.0, PICK_STOP
    if mode == "read":
        return min(max_new_tokens, READ_TOKENS), max(temperature or 0.0, 0.0), STOP_STRINGS
    if mode == "draft":
        from rag.prompt import DRAFT_STOP

        return max_new_tokens, max(temperature or 0.0, 0.0), DRAFT_STOP
    return max_new_tokens, max(temperature or 0.0, 0.0), STOP_STRINGS


def answer_mode(mode: str, question: str, title: str | None = None) -> str:
    """"verbatim", "quote" or "generate" for this question; "auto" decides by what the question asks:
    what a product is -> verbatim; one detail (of a kind rag.detail.KINDS knows, or any other) -> quote."""
    from indexing.questions import asks_for_description
    from rag.detail import detail_kind, is_yes_no, without_title

    if mode != "auto":
        return mode
    if _ASKS_DESCRIPTION.search(question):
        return "verbatim"
    if is_yes_no(without_title(question, title)):  # "é para bebês?": the evidence, not the whole description
        return "quote"
    if not asks_for_description(question):  # "how long is it?", "who wrote ...?": any detail
        return "quote"
    # "what is the age range of X?" asks a detail; "What is 'The Age of Innocence'?" does not
    return "quote" if detail_kind(question, title) and not _ASKS_WHAT_IS.search(question) else "verbatim"


# words that ask for the whole description, whatever else the question holds
_ASKS_DESCRIPTION = re.compile(r"\b(?:describe|description|tell\s+me\s+about|what\s+can\s+you\s+tell|descri[çc][ãa]o|"
                               r"descreva|fale\s+(?:sobre|do|da)|me\s+fale)\b", re.I)
# "what is X" / "tell me about X" asks for the description even when X holds a detail word ("The Age
# of Innocence"); "what is the age range of X" does not
_ASKS_WHAT_IS = re.compile(r"^\W*(?:what\s+is|what's|whats|tell\s+me\s+about|describe|o\s+que\s+[ée]|"
                           r"qual\s+[ée]\s+a\s+descri[çc][ãa]o|descreva|fale\s+sobre)\s+['\"‘“]", re.I)


def answer_sure(ans: Answer) -> Answer:
    """Auto mode, a "what is X" question, retrieval sure of the product (Index.sure): its catalog
    description, word for word, without asking the model (docs/results.md: right product unchanged)."""
    ans.text, ans.origin, ans.cited, ans.picked_by = ans.sources[0].content, "catalog", 1, "retrieval"
    return ans


def shortcut(requested: str, mode: str, hits, index) -> bool:
    """Whether auto mode answers from the catalog without the model: a verbatim question whose best hit
    the index is sure of."""
    return requested == "auto" and mode == "verbatim" and bool(hits) and index is not None and index.sure(hits)


def answer_compare(ans: Answer, pair) -> Answer:
    """Two products named in one question (rag.compare.pick_pair): both are the sources, and the answer puts
    what each one's description says side by side, no model (origin "compare")."""
    from rag.compare import compare_sides, compare_text
    from rag.detail import is_portuguese, without_title

    a, b = pair.hits[0][0], pair.hits[1][0]
    sides = compare_sides(ans.question, pair)
    ans.sources, ans.compared, ans.cited, ans.origin, ans.mode = [a, b], sides, 1, "compare", "compare"
    ans.kind = next((side.kind for side in sides if side.kind), None)
    ans.text = compare_text(sides, is_portuguese(without_title(without_title(ans.question, a.title), b.title)))
    return ans


def named_rank(question: str, hits) -> int:
    """The 1-based rank of the hit whose whole title the question holds word for word (case and spacing
    aside), the longest such title; 1 when none does. "Is Piano Lullabies for Babies, Vol. 1 suitable for a
    newborn?" names Vol. 1 even where search ranks Vol. 2 first (its description mentions "Vol. 1")."""
    q = " " + " ".join(re.findall(r"[^\W_]+", question.lower())) + " "
    named = [(len(h.title), -r, r) for r, h in enumerate(hits, 1)
             if (t := " ".join(re.findall(r"[^\W_]+", h.title.lower()))) and f" {t} " in q]
    return max(named)[2] if named else 1


def answer_detail(ans: Answer, rank: int | None = None) -> Answer:
    """Quote mode: entry `rank`'s (default: the one the question names, `named_rank`, else the best
    retrieved one's) sentence stating what the question asks, checked to be word for word that entry's text
    (rag.detail.check_quote), or "the description doesn't say", in the question's language."""
    from rag.detail import (
        check_quote,
        detail_text,
        is_portuguese,
        is_yes_no,
        read_detail,
        without_title,
        yes_no,
        yes_no_text,
    )

    rank = rank or named_rank(ans.question, ans.sources)
    src = ans.sources[rank - 1]
    content = src.content or ""
    if not content:  # the product named is in the catalog without a description
        return no_description(ans, rank, detail_kind_of(ans), detail=True)
    d = read_detail(ans.question, src.title, content)
    ans.cited, ans.kind = rank, d.kind
    span = check_quote(d.quote, content) if d.stated else None
    if span is not None:
        ans.text, ans.quote, ans.quote_span, ans.origin = detail_text(d), d.quote, span, "quote"
        at = d.quote.find(d.short) if d.short and d.short != d.quote else -1
        if at >= 0:
            ans.short, ans.short_span = d.short, (span[0] + at, span[0] + at + len(d.short))
        if is_yes_no(without_title(ans.question, src.title)):  # the evidence first; yes or no where yes_no settles it
            ans.verdict = yes_no(ans.question, src.title, d.quote)
            ans.text = yes_no_text(ans.verdict, d, is_portuguese(without_title(ans.question, src.title)))
    else:
        _not_stated(ans, src, d.kind)
    return ans


def _not_stated(ans: Answer, src, kind: str | None) -> None:
    from rag.detail import is_portuguese, not_stated_text, without_title

    portuguese = is_portuguese(without_title(ans.question, src.title))
    ans.text, ans.origin = not_stated_text(src.title, kind, portuguese), "not_stated"


def no_description(ans: Answer, rank: int = 1, kind: str | None = None, detail: bool = False) -> Answer:
    """Source `rank` is in the catalog without a description: say so, in the question's language, citing
    it (origin "no_description"; `detail`: the question asks one detail, `kind` which)."""
    from rag.detail import is_portuguese, no_description_text, without_title

    src = ans.sources[rank - 1]
    portuguese = is_portuguese(without_title(ans.question, src.title))
    ans.text, ans.origin, ans.cited, ans.kind = no_description_text(src.title, detail, portuguese), \
        "no_description", rank, kind
    return ans


def detail_kind_of(ans: Answer) -> str | None:
    """The detail a question asks about its best source (rag.detail.detail_kind)."""
    from rag.detail import detail_kind

    return detail_kind(ans.question, ans.sources[0].title) if ans.sources else None


def lacks_description(hits) -> bool:
    """The best hit is a product the catalog holds without a description."""
    return bool(hits) and not hits[0].content


def drafting(draft_missing: bool, mode: str) -> bool:
    """Whether a question about a title-only product gets a draft: asked for, and the question asks what the
    product is (a detail question is never answered from a draft: nothing would back it)."""
    return draft_missing and mode in DESCRIBING_MODES


def draft_lead(ans: Answer) -> str:
    """The first words of a drafted answer (the question's language): no description; a draft follows."""
    from rag.detail import draft_lead as lead
    from rag.detail import is_portuguese, without_title

    title = ans.sources[0].title
    return lead(title, is_portuguese(without_title(ans.question, title)))


def trim_loops(text: str) -> str:
    """A draft up to where it starts repeating itself: its sentences until one repeats an earlier one or
    loops (a word 3-gram three times)."""
    from rag.detail import sentences

    kept, seen = [], set()
    for s, e in sentences(text):
        sentence = text[s:e]
        key = " ".join(tokens(sentence))
        if not key or key in seen or loops(sentence):
            break
        seen.add(key)
        kept.append((s, e))
    return text[kept[0][0]: kept[-1][1]] if kept else ""


def clean_draft(generated: str) -> tuple[str, str | None]:
    """(the draft in a generation: cut where it ends or starts to loop, why it is unusable or None)."""
    from rag.prompt import cut_answer

    raw = cut_answer(generated)[0].strip()
    draft = trim_loops(raw)
    if not _WORD.search(draft):
        return "", "draft empty" if not _WORD.search(raw) else "draft looping"
    return draft, None


def stream_cut(pieces, ans: Answer, t0: float):
    """Yield what is surely answer of an engine's streamed pieces (up to an end marker, holding back a
    possible partial one); return the whole generated text (the engine's, where it gives it). Sets
    ans.first_token_ms at the first piece if not set."""
    from rag.prompt import cut_answer

    raw, shown, whole = "", 0, None
    while True:
        try:
            piece = next(pieces)
        except StopIteration as done:  # the whole generated text, where the engine gives it
            whole = done.value
            break
        if not piece:
            continue
        if ans.first_token_ms is None:
            ans.first_token_ms = (time.perf_counter() - t0) * 1000
        raw += piece
        visible, ended = cut_answer(raw, final=False)
        if len(visible) > shown:
            yield visible[shown:]
            shown = len(visible)
        if ended:
            break  # the rest is another entry or section: never shown (generation stops right after)
    pieces.close()
    return raw if whole is None else whole


def drafter(drafted_by: dict) -> str:
    """Who wrote a draft, as labels print it: "SmolLM2-135M-Instruct + adapter drafter" or "... (base model)"."""
    adapter = drafted_by.get("adapter")
    return drafted_by["model"] + (f" + adapter {adapter}" if adapter else " (base model)")


def finish_draft(ans: Answer, generated: str, lead: str, drafted_by: dict) -> Answer:
    """A drafted answer from the model's output (`clean_draft`) after `lead`; a draft with no words left
    falls back to saying there is no description (origin "no_description", `fallback_reason` why)."""
    draft, unusable = clean_draft(generated)
    if unusable:
        no_description(ans)
        ans.fallback_reason = unusable
        return ans
    ans.text, ans.draft, ans.drafted_by = lead + draft, draft, drafted_by
    ans.origin, ans.cited = "drafted", 1
    return ans


def finish_read(ans: Answer, body: str) -> Answer:
    """Read mode: the model's answer to a detail question (its citation line already parsed into
    `ans.cited`). NOT_STATED -> "the description doesn't say"; a quote that is word for word the
    cited entry's text (case and whitespace aside) -> origin "quote" with its span; anything else
    (no citation, an empty line, a sentence not in the cited entry, another entry's sentence) falls
    back to quote mode's sentence of the cited (else best) entry, origin "fallback" and the reason."""
    from rag.detail import check_quote, detail_kind, detail_text, quoted
    from rag.prompt import NOT_STATED

    rank = ans.cited or 1
    src = ans.sources[rank - 1]
    content = src.content or ""
    kind = detail_kind(ans.question, src.title)
    if ans.cited and not content:  # the model cited a product without a description
        return no_description(ans, rank, kind, detail=True)
    quote = body.strip()
    if ans.cited and quote.casefold() == NOT_STATED.casefold():
        ans.kind = kind
        _not_stated(ans, src, kind)
        return ans
    span = check_quote(quote, content) if ans.cited and quote else None
    if span is not None:
        d = quoted(kind, content, span)  # the catalog's own characters, not the model's
        ans.text, ans.kind, ans.quote, ans.quote_span, ans.origin = detail_text(d), kind, d.quote, span, "quote"
        return ans
    elsewhere = (any(check_quote(quote, h.content or "") for i, h in enumerate(ans.sources, 1) if i != rank)
                 if quote else False)
    reason = ("no citation" if not ans.cited else "empty" if not _WORD.search(quote)
              else "quote from another entry" if elsewhere else "quote not in the cited entry")
    answer_detail(ans, rank)
    ans.origin, ans.fallback_reason = "fallback", reason
    return ans


def finish(ans: Answer, generated: str, mode: str = "generate") -> Answer:
    """The final answer from the model's output. The citation line ("[2] Title") goes into
    `ans.cited`; "not in the catalog" is an abstention. Verbatim mode answers with the cited entry's
    description. In generate mode the text is cut at the next "###" section or entry, and an answer
    that is empty, only a citation, or loops (a word 3-gram three times, where the source does not)
    is replaced by the cited entry's description (the top source when none is cited), marked
    origin="fallback" with the reason: never a bare title, never another entry's text."""
    from rag.prompt import NOT_IN_CATALOG, split_citation

    text = clean_generation(generated)
    if text.startswith(REFUSAL_START):
        ans.text, ans.abstained, ans.cited, ans.origin = NOT_IN_CATALOG, True, None, "refused"
        return ans
    rank, _, body = split_citation(text + "\n")  # "+ \n": a citation line cut short still counts
    ans.cited = rank if rank and rank <= len(ans.sources) else None
    if mode == "read" and ans.sources:
        return finish_read(ans, body)
    # the entry the answer is about: the cited one, else the best retrieved one
    source = ans.cited_source or (ans.sources[0] if ans.sources else None)
    if source is not None and not source.content:  # a product without a description: nothing to show of it
        return no_description(ans, ans.sources.index(source) + 1)
    if mode == "verbatim" and source is not None:
        ans.text, ans.origin, ans.cited, ans.picked_by = source.content, "catalog", ans.cited or 1, "model"
        return ans
    reason = ("empty" if not _WORD.search(text) else "citation only" if rank and not body
              else "looping" if loops(body) and not (source and loops(source.content)) else None)
    if reason and source is not None:
        ans.text, ans.origin, ans.fallback_reason, ans.cited = source.content, "fallback", reason, ans.cited or 1
    else:  # no sources to fall back on (answers without retrieval): the model's words, as they are
        ans.text, ans.origin = body if rank else text, "generated"
    if not ans.text:
        ans.text, ans.abstained, ans.origin = NOT_IN_CATALOG, True, "refused"
    return ans


@dataclass
class AnswerConfig:
    """What answers the questions: the one configuration of `ask`, `batch`, `chat`, `eval answers` and
    the demo (their shared flags: add_answer_arguments; from parsed flags: answer_config)."""

    index: str | Path | object  # index folder (productqa index build), or an index already loaded
    adapter: str | Path | None = None  # LoRA adapter folder (productqa finetune); None: the base model
    base_model: str | Path | None = None  # base model folder; None: the adapter's, else SmolLM2
    device: str | None = None  # "cpu" / "cuda"; None: cuda when there is one
    mode: str = DEFAULT_MODE  # answer mode (MODES); a call's `mode` overrides it
    engine: str = "transformers"  # who produces the tokens (ENGINES)
    llm_url: str | None = None  # answer through this running OpenAI-compatible server (implies vllm)
    api_key: str | None = None  # that server's key
    reload_seconds: float = RELOAD_SECONDS  # look for a new index version this often (0: keep the first)
    serve_base: bool = False  # vllm engine: also serve the base model, for answers with the adapter off
    draft_missing: bool = False  # a product without a description: the model drafts one (a call's `draft` overrides)
    # transformers engine only:
    four_bit: bool | None = None  # NF4 weights; None: on GPUs only (on CPUs unquantized is faster)
    dtype: str = "auto"  # weights' dtype (indexing.runtime.DTYPES); auto: rag.local.inference_dtype
    merge: bool = True  # merge the LoRA weights into the base (no extra matmuls per layer)
    repetition_penalty: float = REPETITION_PENALTY  # > 1 punishes repeats, the prompt's words too

    def check(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"answer mode {self.mode!r}: choose from {', '.join(MODES)}")
        if self.engine not in ENGINES:
            raise UserError(f"engine {self.engine!r} (--engine or $PRODUCTQA_ENGINE): "
                            f"choose from {', '.join(ENGINES)}")


class Answerer:
    """Index + a generator (rag/local.py's model in this process, or rag/remote.py's server client:
    the same `complete` / `stream`), loaded once, shared by ask / batch / chat / eval / the demo.

        Answerer("data/index", adapter="data/adapter")       # AnswerConfig's fields as keywords
        Answerer(answer_config(args), progress=True)         # or a whole AnswerConfig
        Answerer(index, llm=my_llm)                          # any object with complete() and stream()
    """

    def __init__(self, config: AnswerConfig | str | Path | object, llm=None, progress: bool = False, **settings):
        from indexing.follow import Follower
        from rag.model import read_adapter, resolve_base_for

        # a config and keywords: the keywords win (Answerer(cfg, mode="generate"))
        cfg = (replace(config, **settings) if isinstance(config, AnswerConfig)
               else AnswerConfig(index=config, **settings))
        cfg.check()
        self.cfg, self.mode = cfg, cfg.mode
        # "vllm" or --llm-url: tokens come from an OpenAI-compatible server (rag/remote.py); everything
        # else (retrieval, prompts, abstention, stops, citations, fallbacks) stays here, unchanged
        self.engine = "vllm" if cfg.llm_url else cfg.engine
        self.server = None
        self.adapter = Path(cfg.adapter) if cfg.adapter else None
        self.adapter_meta = read_adapter(self.adapter) if self.adapter else None
        base = None
        if llm is None:  # the base model's identity is checked before anything heavy loads
            base, self.base_identity = resolve_base_for(self.adapter_meta, cfg.base_model, progress)
        else:
            self.base_identity = {"name": type(llm).__name__, "path": None, "hash": None}
        # the index (and its encoder) loads after the cheap checks above, so a wrong --adapter fails fast;
        # a folder is followed: each version an `index add/remove/build` commits is picked up within
        # `reload_seconds` (0 = never), while questions keep being answered
        self.index = (Follower(cfg.index, cfg.reload_seconds) if isinstance(cfg.index, (str, Path))
                      else cfg.index)
        # self.merged: whether the adapter's weights are merged into the model that answers
        if llm is not None:
            self.llm, self.merged = llm, False
        elif self.engine == "vllm":
            self.llm = self._remote(base, progress)
            self.merged = bool(self.adapter) and (self.server is None or self.server.cfg.lora is None)
        else:
            from rag.local import LocalLLM

            self.llm = LocalLLM(base, self.adapter, device=cfg.device, four_bit=cfg.four_bit, dtype=cfg.dtype,
                                merge=cfg.merge, repetition_penalty=cfg.repetition_penalty)
            self.merged = self.llm.merged

    def _remote(self, base, progress):
        """The vLLM engine: a running server (`llm_url`), or one started here for this process's
        lifetime on a free localhost port, with a random key (rag/serve.py): the merged model, or with
        `serve_base` the base model plus the adapter as a LoRA module (answers with the adapter off too)."""
        import atexit
        import secrets

        from rag.remote import RemoteLLM

        cfg, url, api_key = self.cfg, self.cfg.llm_url, self.cfg.api_key
        if url is None:
            from rag.serve import Server, serve_config

            scfg = serve_config(self.adapter, base_model=base, with_base=cfg.serve_base and self.adapter is not None,
                                progress=progress)
            api_key = scfg.api_key = secrets.token_urlsafe(16)
            scfg.port = 0
            self.server = Server(scfg, progress=progress).start()
            atexit.register(self.close)
            url = self.server.url
        return RemoteLLM(url, api_key)

    def close(self) -> None:
        """Stop following the index, and the vLLM server this Answerer started (if any)."""
        getattr(self.index, "close", lambda: None)()
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------------ steps

    @property
    def serving(self):
        """The index version answering now: take it once per question (or batch), so that retrieval and
        abstention see the same version while a new one is swapped in."""
        return getattr(self.index, "current", self.index)

    def retrieve(self, questions: list[str], k: int, index=None):
        return (index or self.serving).retrieve_many(questions, k=k)

    def should_abstain(self, hits, index=None) -> bool:
        """The serving index's (or `index`'s) decision for these hits (indexing.search.Index.abstains)."""
        return (index or self.serving).abstains(hits)

    def _one(self, prompt: str, max_new_tokens: int, temperature: float, use_adapter: bool, mode: str):
        """One prompt's generated text, yielded piece by piece as it is produced; returns the whole text
        (None where only the pieces are known). A verbatim pick (6 tokens) is one request, nothing to stream."""
        tokens, temp, stop = limits(max_new_tokens, temperature, mode)
        kw = dict(max_tokens=tokens, temperature=temp, stop=stop, use_adapter=use_adapter)
        if mode == "verbatim":
            return self.llm.complete([prompt], **kw)[0]
        return (yield from self.llm.stream(prompt, **kw))

    def _prepare(self, question: str, k: int, use_retrieval: bool, hits: list | None, t0: float,
                 index=None, compare: bool = True, pair=None) -> Answer:
        """Sanitise, retrieve (unless `hits` are given, from `index`), answer a question naming two products
        side by side (`compare`: look for them; rag/compare.py; `pair`: the two to compare when the question
        does not name two itself, the chat's follow-up), else abstain below the threshold."""
        from rag.compare import compare_splits, pick_pair
        from rag.prompt import NOT_IN_CATALOG

        index = index or self.serving
        q, notice = sanitize_question(question)
        if hits is None:
            hits = self.retrieve([q], k, index)[0] if use_retrieval else []
        ans = Answer(question=q, text="", sources=hits, notice=notice, retrieval_ms=(time.perf_counter() - t0) * 1000,
                     index_version=getattr(index, "version", None) if use_retrieval else None)
        named = pick_pair(q, compare_splits(q), index, hits, k) if use_retrieval and compare else None
        pair = named or pair  # two products the question names itself come first
        if pair is not None:
            answer_compare(ans, pair)
            ans.retrieval_ms = (time.perf_counter() - t0) * 1000
        elif use_retrieval and self.should_abstain(hits, index):
            ans.text, ans.abstained, ans.origin = NOT_IN_CATALOG, True, "refused"
        return ans

    # ------------------------------------------------------------------ API

    def _generate(self, prompts: list[str], max_new_tokens: int, temperature: float, use_adapter: bool,
                  mode: str) -> list[str]:
        """The generated text of each prompt (one batch)."""
        tokens, temp, stop = limits(max_new_tokens, temperature, mode)
        return self.llm.complete(prompts, max_tokens=tokens, temperature=temp, stop=stop, use_adapter=use_adapter)

    def drafted_by(self, use_adapter: bool = True) -> dict:
        """Who writes drafts: the base model's name and hash, and the adapter (None with it off)."""
        from rag.merge import adapter_fingerprint

        adapter = self.adapter if use_adapter else None
        if adapter is not None and getattr(self, "_adapter_hash", None) is None:  # read once: it does not change
            self._adapter_hash = adapter_fingerprint(adapter)
        return {"model": self.base_identity["name"], "base_hash": self.base_identity["hash"],
                "adapter": adapter.name if adapter else None,
                "adapter_hash": self._adapter_hash if adapter else None}

    def stream(self, question: str, k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
               temperature: float = 0.0, use_retrieval: bool = True, hits: list | None = None,
               use_adapter: bool = True, mode: str | None = None, index=None, draft: bool | None = None,
               compare: bool | None = None, pair=None):
        """Yield the answer's text pieces as they are generated; the generator's return value (and a
        final `Answer` yielded last) carries the sources and flags. `hits` replaces retrieval (the chat
        passes the last product for follow-ups; `index`: the version they came from, see `serving`);
        `use_adapter=False` answers with the base model; `draft` (default: the config's draft_missing):
        a product without a description gets a drafted one; `compare` (default: when it retrieves, not given
        `hits`): a question naming two products is answered side by side (rag/compare.py); `pair` (a
        rag.compare.Pair): compare these two (the chat's follow-up about the last product and another).
        Verbatim answers arrive as one piece (the description) once the model has picked the entry.
        The pieces stop where the answer ends (never into the next entry); a generated answer that
        falls back shows its catalog description only in the final `Answer`."""
        from rag.prompt import build_prompt

        t0 = time.perf_counter()
        index = index or (self.serving if use_retrieval else None)
        ans = self._prepare(question, k, use_retrieval, hits, t0, index, compare=hits is None if compare is None
                            else compare, pair=pair)
        requested = mode or self.mode
        mode = answer_mode(requested, ans.question, ans.sources[0].title) if ans.sources else "generate"
        ans.mode = ans.mode or mode
        if ans.abstained or ans.origin == "compare":  # no model
            ans.latency_ms = ans.first_token_ms = (time.perf_counter() - t0) * 1000
            yield ans.text
            yield ans
            return ans
        if lacks_description(ans.sources):  # the product is in the catalog without a description
            if drafting(self.cfg.draft_missing if draft is None else draft, mode):
                return (yield from self._stream_draft(ans, max_new_tokens, temperature, use_adapter, t0))
            detail = mode not in DESCRIBING_MODES
            no_description(ans, 1, detail_kind_of(ans) if detail else None, detail=detail)
            ans.latency_ms = ans.first_token_ms = (time.perf_counter() - t0) * 1000
            yield ans.text
            yield ans
            return ans
        if mode == "quote" or shortcut(requested, mode, ans.sources, index):  # no model
            answer_detail(ans) if mode == "quote" else answer_sure(ans)
            ans.latency_ms = ans.first_token_ms = (time.perf_counter() - t0) * 1000
            yield ans.text
            yield ans
            return ans
        prompt = build_prompt(ans.question, [(h.title, h.content) for h in ans.sources])
        if mode in ("verbatim", "read"):  # a pick, or one checked sentence: shown whole, once known
            finish(ans, drain(self._one(prompt, max_new_tokens, temperature, use_adapter, mode)), mode)
            ans.latency_ms = ans.first_token_ms = (time.perf_counter() - t0) * 1000
            yield ans.text
            yield ans
            return ans
        generated = yield from stream_cut(self._one(prompt, max_new_tokens, temperature, use_adapter, mode), ans, t0)
        finish(ans, generated, mode)
        ans.latency_ms = (time.perf_counter() - t0) * 1000
        yield ans
        return ans

    def _stream_draft(self, ans: Answer, max_new_tokens: int, temperature: float, use_adapter: bool, t0: float):
        """A drafted answer, streamed: the lead sentence at once, then the model's draft as it is written."""
        from rag.prompt import build_draft_prompt

        lead = draft_lead(ans)
        ans.mode = "draft"
        yield lead
        ans.first_token_ms = (time.perf_counter() - t0) * 1000
        prompt = build_draft_prompt(ans.question, ans.sources[0].title)
        pieces = self._one(prompt, min(max_new_tokens, DRAFT_TOKENS), temperature, use_adapter, "draft")
        generated = yield from stream_cut(pieces, ans, t0)
        finish_draft(ans, generated, lead, self.drafted_by(use_adapter))
        ans.latency_ms = (time.perf_counter() - t0) * 1000
        yield ans
        return ans

    def ask(self, question: str, k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            temperature: float = 0.0, use_retrieval: bool = True, hits: list | None = None,
            use_adapter: bool = True, mode: str | None = None, draft: bool | None = None) -> Answer:
        *_, ans = self.stream(question, k, max_new_tokens, temperature, use_retrieval, hits, use_adapter, mode,
                              draft=draft)
        return ans

    def draft_many(self, titles: list[str], questions: list[str], max_new_tokens: int = DRAFT_TOKENS,
                   temperature: float = 0.0, use_adapter: bool = True) -> list[tuple[str, str | None]]:
        """(the model's draft description of each title, asked `questions[i]`; why it is unusable or None), in
        one batch, cut as answers cut drafts (`clean_draft`): `productqa describe` and `eval describe`."""
        from rag.prompt import build_draft_prompt

        prompts = [build_draft_prompt(q, t) for q, t in zip(questions, titles)]
        texts = self._generate(prompts, max_new_tokens, temperature, use_adapter, "draft")
        return [clean_draft(text) for text in texts]

    def iter_answers(self, questions: list[str], k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                     temperature: float = 0.0, use_retrieval: bool = True, use_adapter: bool = True,
                     batch_size: int | None = None, mode: str | None = None, draft: bool | None = None):
        """Yield (i, Answer) for questions[i] as each becomes known: one retrieval call, then every
        refusal and every answer needing no model, then each batched generate's answers (left-padded
        prompts, `batch_size` per generate, default all at once; drafts batch together)."""
        from rag.prompt import build_draft_prompt, build_prompt

        draft = self.cfg.draft_missing if draft is None else draft

        t0 = time.perf_counter()
        qs = [sanitize_question(q)[0] for q in questions]
        index = self.serving
        all_hits = self.retrieve(qs, k, index) if use_retrieval else [[] for _ in qs]
        t_ret = (time.perf_counter() - t0) * 1000 / max(len(qs), 1)
        todo = []
        for i, (q, hits) in enumerate(zip(questions, all_hits)):
            t1 = time.perf_counter()
            a = self._prepare(q, k, use_retrieval, hits, t0, index)
            a.retrieval_ms = t_ret
            m = answer_mode(mode or self.mode, a.question, a.sources[0].title) if a.sources else "generate"
            a.mode = a.mode or m
            if a.abstained or a.origin == "compare":  # no model
                a.latency_ms = t_ret + (time.perf_counter() - t1) * 1000
                yield i, a
            elif lacks_description(a.sources) and drafting(draft, m):
                a.mode = "draft"
                todo.append((i, a, "draft"))
            elif lacks_description(a.sources):
                t1 = time.perf_counter()
                detail = m not in DESCRIBING_MODES
                no_description(a, 1, detail_kind_of(a) if detail else None, detail=detail)
                a.latency_ms = t_ret + (time.perf_counter() - t1) * 1000
                yield i, a
            elif m == "quote" or shortcut(mode or self.mode, m, a.sources, index if use_retrieval else None):
                t1 = time.perf_counter()  # no model
                answer_detail(a) if m == "quote" else answer_sure(a)
                a.latency_ms = t_ret + (time.perf_counter() - t1) * 1000
                yield i, a
            else:
                todo.append((i, a, m))
        # A batch generates until its longest answer ends, and pads to its longest prompt. Verbatim picks
        # are a few tokens each, so they batch together; a generated answer copies the top source's
        # description, so sorting by that length groups similar prompt and answer lengths
        # (benchmarks/answer.py: sorted vs arrival order).
        todo.sort(key=lambda t: (t[2] != "verbatim", t[2] == "draft",
                                 len(t[1].sources[0].content) if t[1].sources else 0))
        bs = batch_size or max(len(todo), 1)
        s = 0
        while s < len(todo):
            m = todo[s][2]
            chunk = [t for t in todo[s: s + bs] if t[2] == m]
            s += len(chunk)
            t1 = time.perf_counter()
            if m == "draft":
                prompts = [build_draft_prompt(a.question, a.sources[0].title) for _, a, _ in chunk]
            else:
                prompts = [build_prompt(a.question, [(h.title, h.content) for h in a.sources]) for _, a, _ in chunk]
            n_new = min(max_new_tokens, DRAFT_TOKENS) if m == "draft" else max_new_tokens
            texts = self._generate(prompts, n_new, temperature, use_adapter, m)
            per = (time.perf_counter() - t1) * 1000 / len(chunk)
            for (i, a, _), t in zip(chunk, texts):
                if m == "draft":
                    finish_draft(a, t, draft_lead(a), self.drafted_by(use_adapter))
                else:
                    finish(a, t, m)
                a.latency_ms = t_ret + per  # this answer's share of its batch
                yield i, a

    def ask_many(self, questions: list[str], k: int = 3, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 temperature: float = 0.0, use_retrieval: bool = True, use_adapter: bool = True,
                 batch_size: int | None = None, mode: str | None = None, draft: bool | None = None) -> list[Answer]:
        """`iter_answers`, collected: the answers in the questions' order."""
        out: list = [None] * len(questions)
        for i, a in self.iter_answers(questions, k, max_new_tokens, temperature, use_retrieval, use_adapter,
                                      batch_size, mode, draft):
            out[i] = a
        return out


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the question, e.g. \"What is 'Mog's Kittens'?\"")
    add_answer_arguments(p, reload=False)
    p.add_argument("-k", type=int, default=3, help="retrieved products in the prompt (default 3)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--no-retrieval", action="store_true", help="answer without catalog context (for comparison)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")


def add_answer_arguments(p: argparse.ArgumentParser, mode: bool = True, reload: bool = True,
                         draft: bool = True, llm_key: str = "--api-key") -> None:
    """The flags of an AnswerConfig, declared once for ask, batch, chat, api and eval answers: the index, the
    model (--adapter, --base-model, --device), --answer-mode (unless the command has its own), the
    engine (--engine, --llm-url, and the model server's key: `llm_key`, --api-key except in `productqa api`,
    whose --api-key is its own clients' key), --draft-missing and, for long-running commands,
    --reload-seconds."""
    import os

    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="index folder (productqa index build)")
    p.add_argument("--adapter", metavar="ADAPTER_DIR",
                   help="LoRA adapter (productqa finetune); default: the base model")
    p.add_argument("--base-model", metavar="PATH", help="base model folder (default: the adapter's, or SmolLM2)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where the model runs (default: cuda if available)")
    if mode:
        p.add_argument("--answer-mode", choices=MODES, default=DEFAULT_MODE,
                       help="verbatim: the model picks the entry, the answer is its catalog description; generate: "
                            "the model writes the answer; quote: the description's sentence stating the detail "
                            "asked (no model); read: the fine-tuned model quotes that sentence, checked against "
                            "the entry; auto (default): verbatim for 'what is X' questions, quote for questions "
                            "about one detail")
    p.add_argument("--engine", choices=ENGINES, default=os.environ.get("PRODUCTQA_ENGINE", "transformers"),
                   help="who generates: transformers (in this process, default) or vllm (a vLLM server started "
                        "for this command; `make vllm` installs it); default $PRODUCTQA_ENGINE")
    p.add_argument("--llm-url", metavar="URL", default=os.environ.get("PRODUCTQA_LLM_URL"),
                   help="answer through a running server instead (`productqa serve`), e.g. http://127.0.0.1:8000/v1")
    env = "PRODUCTQA_API_KEY" if llm_key == "--api-key" else "PRODUCTQA_LLM_API_KEY"
    p.add_argument(llm_key, dest="llm_api_key", metavar="KEY", default=os.environ.get(env),
                   help=f"the model server's API key (default ${env})")
    if draft:
        p.add_argument("--draft-missing", action="store_true",
                       help="a product the catalog holds without a description: the model drafts one from its title "
                            "(labelled as the model's writing, origin 'drafted'; the base model without --adapter); "
                            "default: say the catalog has no description of it")
    if reload:  # how fast a running process sees index updates
        p.add_argument("--reload-seconds", type=float, default=RELOAD_SECONDS, metavar="S",
                       help=f"look for a new index version (from `productqa index add/remove/build`) every S "
                            f"seconds and answer from it once loaded (default {RELOAD_SECONDS:g}; 0 = keep the "
                            f"version loaded at start)")


def answer_config(args: argparse.Namespace, **overrides) -> AnswerConfig:
    """The AnswerConfig that add_answer_arguments' flags describe (a command without --reload-seconds
    answers from the version it loaded; one with its own --answer-mode list passes `mode`)."""
    cfg = AnswerConfig(index=args.index, adapter=args.adapter, base_model=args.base_model, device=args.device,
                       mode=getattr(args, "answer_mode", DEFAULT_MODE), engine=args.engine, llm_url=args.llm_url,
                       api_key=args.llm_api_key, reload_seconds=getattr(args, "reload_seconds", 0),
                       draft_missing=getattr(args, "draft_missing", False))
    cfg = replace(cfg, **overrides)
    cfg.check()
    return cfg


def uses_server(cfg: AnswerConfig) -> bool:
    """Whether answers come from a server (which batches them itself): defaults differ (batch size, concurrency)."""
    return cfg.engine == "vllm" or bool(cfg.llm_url)


def main(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError("-k must be >= 1")
    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be >= 1")
    q, notice = sanitize_question(args.question)
    qa = Answerer(answer_config(args), progress=True)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    ans = None
    for piece in qa.stream(q, k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           use_retrieval=not args.no_retrieval):
        if isinstance(piece, Answer):
            ans = piece
        elif not args.json:
            print(piece, end="", flush=True)
    if args.json:
        print(json.dumps(ans.to_dict(), ensure_ascii=False))
        return 0
    print()
    if ans.origin == "fallback" and ans.mode == "read":  # what was shown is already the rule reader's
        print(f"\n(the model's quote was unusable: {ans.fallback_reason}; this answer was read without it)")
    elif ans.origin == "fallback":  # what streamed was unusable: say so, then show the catalog's text
        print(f"\n(the model's answer was {ans.fallback_reason}; the catalog's description of the "
              f"{'cited' if ans.cited else 'closest'} product instead:)\n{ans.text}")
    if ans.quote_span:
        print(f"\n(quoted from source {ans.cited}, its description's characters "
              f"{ans.quote_span[0]}-{ans.quote_span[1]})")
    if ans.origin == "drafted":
        print(f"\n(drafted by {drafter(ans.drafted_by)} from the title alone: not the catalog's words)")
    elif ans.origin == "no_description" and ans.fallback_reason:
        print(f"\n(the model's draft was unusable: {ans.fallback_reason})")
    label = "closest products (not in the catalog)" if ans.abstained else "sources"
    if ans.sources:
        print(f"\n{label}:")
        for rank, h in enumerate(ans.sources, 1):
            mark = ("" if rank != ans.cited else "  <- cited" if ans.origin in ("generated", "quote", "not_stated")
                    else "  <- the product (no description in the catalog)" if ans.origin in ("no_description",
                                                                                           "drafted")
                    else "  <- answer (its catalog description)")
            print(f"{rank:>2}. {h.uid}  {h.title}  (cosine {h.dense_score or 0:.3f}){mark}")
            if h.match == "description":
                print(f"    matched its description: \"{h.passage}\"")
    print(f"\n{ans.latency_ms:.0f} ms (retrieval {ans.retrieval_ms:.0f} ms"
          + (f", first token {ans.first_token_ms:.0f} ms" if ans.first_token_ms else "") + ")")
    return 0
