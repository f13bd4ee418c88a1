"""One transcript to one structured summary: a single request when it fits one map piece, else map-reduce.

Each request goes through ``structured.py`` (answer-format chain, schema validation, degeneracy check, one
stricter retry). A transcript longer than a map piece (``LLMSettings.piece_tokens``, a quarter of the context
window by default: smaller pieces keep more facts) is split on sentence/whitespace boundaries, the chunks are
summarized concurrently (the client caps requests in flight) into structured part summaries, and the parts are
merged as structures (``document.merge``): their lists interleaved, their titles and summaries combined by a
reduce request (recursively when they do not fit one request), or without the model when that answer is
rejected. If the server still reports a context overflow, the offending piece is halved and retried: the token
estimate (``prompts.py``) is a guess, the server's answer is not.

The result carries the summary document (``document.py``: the JSON written to ``summaries/<name>.json``, with
grounding flags and quality fields) and its markdown (``render.py``).

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from steps.llm import document
from steps.llm.checks import detect_language
from steps.llm.client import LLMClient
from steps.llm.prompts import CHARS_PER_TOKEN, NO_SPEECH_TEXT, overhead_tokens
from steps.llm.render import to_markdown
from steps.llm.schema import StructuredSummary, limits_for
from steps.llm.settings import LLMSettings
from steps.llm.structured import Answer, Stats, ask
from steps.llm.wire import LLMError

log = logging.getLogger(__name__)

#: Smallest transcript budget (tokens) we accept per request.
_MIN_INPUT_TOKENS = 64
_MAX_REDUCE_DEPTH = 8
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\s*\n\s*")

T = TypeVar("T")


@dataclass
class Summary:
    """Result of :func:`summarize`.

    ``text`` is the summary's markdown and ``document`` its JSON document (``document.py``). For a single
    request the timings are that request's. With map-reduce, ``ttft_s``/``first_chunk_s`` are those of the
    first request issued (the first map call) and ``total_s`` is the wall time of the whole summarization;
    token counts are summed over all requests (``None`` when the server reported none). ``requests`` counts
    chat completions (not retries); ``chunks`` is the number of transcript pieces summarized (1 = no
    map-reduce, 0 = nothing to summarize). The quality fields repeat the document's: the answer ``format`` the
    server accepted, ``confidence`` (``low``: every answer was rejected), ``retried``, ``problems`` (rejected
    answers), ``facts_checked``, ``ungrounded`` (numbers, dates, names, links not in the transcript) and
    ``unsupported`` (statements mostly not in it), and ``schema_failures`` (answers that did not validate).
    """

    text: str
    ttft_s: float
    first_chunk_s: float
    total_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    requests: int
    chunks: int
    busy_wait_s: float = 0.0  # total time this summary's requests waited on a saturated gateway (429/503)
    document: dict[str, Any] = dataclasses.field(default_factory=dict)
    format: str | None = None
    confidence: str | None = None
    retried: bool = False
    problems: int = 0
    facts_checked: int = 0
    ungrounded: int = 0
    unsupported: int = 0
    instructions: int = 0  # statements repeating instructions the recording addressed to an AI (left out)
    schema_failures: int = 0
    truncated: bool = False  # an accepted answer was cut at the output-token limit: the summary may be incomplete

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_text(text: str, max_chars: int) -> list[str]:
    """Split on sentence ends, then whitespace, into pieces of <= max_chars.

    Only a single "word" longer than ``max_chars`` is cut mid-word.
    """
    max_chars = max(1, max_chars)
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= max_chars:
            units.append(sentence)
            continue
        for word in sentence.split():
            while len(word) > max_chars:
                units.append(word[:max_chars])
                word = word[max_chars:]
            if word:
                units.append(word)
    chunks: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current} {unit}" if current else unit
        if len(candidate) <= max_chars:
            current = candidate
        else:
            chunks.append(current)
            current = unit
    if current:
        chunks.append(current)
    return chunks


def _input_budget_tokens(settings: LLMSettings) -> int:
    """Tokens left for the variable text in one request."""
    overhead = overhead_tokens()
    budget = settings.context_tokens - overhead - settings.max_output_tokens
    if budget < _MIN_INPUT_TOKENS:
        raise LLMError(
            f"context_tokens={settings.context_tokens} is too small: the prompt needs ~{overhead} "
            f"tokens plus max_output_tokens={settings.max_output_tokens} plus at least "
            f"{_MIN_INPUT_TOKENS} tokens of transcript",
            url=settings.url,
        )
    return budget


def _parallel(client: LLMClient, fn: Callable[[str], T], items: list[str]) -> list[T]:
    """Run ``fn`` over ``items`` concurrently (the client caps in-flight calls)."""
    if len(items) == 1:
        return [fn(items[0])]
    workers = min(client.settings.concurrency, len(items))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-map") as pool:
        return list(pool.map(fn, items))


class _Run:
    """One transcript's summarization: its client, stats, language, and the answers' bookkeeping."""

    def __init__(self, client: LLMClient, transcript: str):
        self.client = client
        self.transcript = transcript
        self.language = detect_language(transcript)
        self.stats = Stats()
        self.answers: list[Answer] = []

    def ask(self, text: str, mode: str, reduce: bool = False) -> Answer:
        answer = ask(self.client, text, mode, self.stats, check_against="" if reduce else text,
                     language=self.language, reduce=reduce)
        self.answers.append(answer)
        return answer


def _map_piece(run: _Run, text: str, max_chars: int, depth: int = 0) -> list[StructuredSummary | None]:
    """Summarize one excerpt (None: its answers were rejected); halve it if the server says it is too long."""
    try:
        return [run.ask(text, "map").summary]
    except LLMError as exc:
        if not exc.context_overflow or depth >= 4 or max_chars < 2 * _MIN_INPUT_TOKENS * CHARS_PER_TOKEN:
            raise
        half = max(len(text) // 2, 1)
        log.info("context overflow on a %d-char excerpt; splitting it", len(text))
        return [s for piece in split_text(text, half) for s in _map_piece(run, piece, half, depth + 1)]


def _overview_input(parts: list[StructuredSummary]) -> str:
    return "\n".join(json.dumps({"part": i + 1, "title": p.title, "summary": p.summary}, ensure_ascii=False)
                     for i, p in enumerate(parts))


def _reduce(run: _Run, parts: list[StructuredSummary], max_chars: int, depth: int = 0) -> StructuredSummary:
    """Merge structured part summaries; groups that do not fit one request are merged first, recursively."""
    settings = run.client.settings
    if depth > _MAX_REDUCE_DEPTH:
        raise LLMError(
            f"map-reduce did not converge after {depth} rounds; raise context_tokens or lower max_output_tokens",
            url=settings.url,
        )
    limits = limits_for(settings.max_output_tokens)
    joined = _overview_input(parts)
    if len(joined) <= max_chars:
        try:
            answer = run.ask(joined, "reduce", reduce=True)
        except LLMError as exc:
            if not exc.context_overflow:
                raise
            max_chars = max(len(joined) // 2, 1)  # estimate was off; regroup smaller
        else:
            if answer.summary is not None:
                title, summary = answer.summary.title, answer.summary.summary
            else:
                title, summary = document.fallback_overview(parts, limits)
            return document.merge(parts, title, summary, limits.scaled(2.0))
    groups: list[list[StructuredSummary]] = [[]]
    for part in parts:
        if groups[-1] and len(_overview_input([*groups[-1], part])) > max_chars:
            groups.append([])
        groups[-1].append(part)
    if len(groups) == len(parts) and len(parts) > 1 and len(groups[0]) == 1:
        groups = [parts[i:i + 2] for i in range(0, len(parts), 2)]  # always make progress
    merged = _parallel(run.client, lambda g: _reduce(run, g, max_chars, depth + 1) if len(g) > 1 else g[0], groups)
    return _reduce(run, merged, max_chars, depth + 1) if len(merged) > 1 else merged[0]


def not_summarized(transcript: str, reason: str) -> Summary:
    """A low-confidence result for a transcript that must not be summarized (``reason`` says why), with no
    model call: a summary of speech the recognizer did not understand would present noise as facts."""
    doc = document.not_summarized(transcript, reason)
    return Summary(to_markdown(doc).strip(), 0.0, 0.0, 0.0, None, None, None, requests=0, chunks=0, document=doc,
                   **document.quality(doc))


def summarize(client: LLMClient, transcript: str) -> Summary:
    """Summarize one transcript, with map-reduce if it exceeds the context.

    An empty (or whitespace-only) transcript makes no LLM call and returns
    :data:`NO_SPEECH_TEXT` with ``requests=0``.
    """
    t0 = time.monotonic()
    # Collapse runs of spaces but keep line breaks (speaker turns help the model).
    lines = (" ".join(line.split()) for line in transcript.splitlines())
    text = "\n".join(line for line in lines if line)
    if not text:
        doc = document.no_speech(NO_SPEECH_TEXT)
        return Summary(NO_SPEECH_TEXT, 0.0, 0.0, 0.0, None, None, None, requests=0, chunks=0, document=doc,
                       format="none", confidence="high")
    settings = client.settings
    budget = _input_budget_tokens(settings)
    # Pieces are smaller than what fits (settings.piece_tokens): a small model keeps a few facts per request.
    # The reduce requests may use the whole budget.
    max_chars = int(min(budget, max(settings.piece_tokens, _MIN_INPUT_TOKENS)) * CHARS_PER_TOKEN)
    reduce_chars = int(budget * CHARS_PER_TOKEN)
    run = _Run(client, text)
    chunks = split_text(text, max_chars)
    final: StructuredSummary | None = None
    single = False
    if len(chunks) == 1:
        try:
            final = run.ask(text, "full").summary
            single = True
        except LLMError as exc:
            if not exc.context_overflow:
                raise
            max_chars = max(len(text) // 2, 1)
            chunks = split_text(text, max_chars)
            log.info("context overflow; falling back to map-reduce over %d chunks", len(chunks))
    n_chunks = 1
    if not single:
        per_chunk = _parallel(client, lambda c: _map_piece(run, c, max_chars), chunks)
        parts = [p for group in per_chunk for p in group if p is not None]
        n_chunks = sum(max(len(g), 1) for g in per_chunk)
        final = _reduce(run, parts, reduce_chars) if parts else None
    if not run.stats.results:
        raise LLMError(
            f"LLM endpoint {client.base_url}: model {settings.model!r} returned no summary", url=settings.url)
    fmt = run.answers[0].fmt if run.answers else "prose"
    problems = [p for a in run.answers for p in a.problems]
    doc = document.build(final, transcript=text, fmt=fmt, problems=problems,
                         retried=any(a.retried for a in run.answers), language=run.language,
                         truncated=final is not None and any(a.truncated for a in run.answers if a.summary))
    return _make_summary(doc, run, time.monotonic() - t0, n_chunks)


def _sum_opt(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _make_summary(doc: dict[str, Any], run: _Run, total_s: float, chunks: int) -> Summary:
    results = [r for _, r in sorted(run.stats.results, key=lambda sr: sr[0])]
    first = results[0]
    first_chunk = first.first_chunk_s if first.first_chunk_s is not None else first.total_s
    ttft = first.ttft_s if first.ttft_s is not None else first.total_s
    return Summary(
        text=to_markdown(doc).strip(),
        ttft_s=ttft,
        first_chunk_s=first_chunk,
        total_s=total_s,
        prompt_tokens=_sum_opt(r.prompt_tokens for r in results),
        completion_tokens=_sum_opt(r.completion_tokens for r in results),
        cached_tokens=_sum_opt(r.cached_tokens for r in results),
        requests=len(results),
        chunks=chunks,
        busy_wait_s=round(sum(r.busy_wait_s for r in results), 3),
        document=doc,
        schema_failures=sum(a.schema_failures for a in run.answers),
        **document.quality(doc),
    )
