"""LLM summarization of transcripts through an OpenAI-compatible endpoint.

In the cluster the endpoint is the llm-d inference gateway; locally it is a
llama.cpp ``llama-server`` (see ``workflows/local/llm_server.py``). Only the
plain OpenAI HTTP API is used (``GET /v1/models``, streamed
``POST /v1/chat/completions``) so any compatible server works.

Design notes (why things are the way they are):

* **Prefix-cache friendly prompts.** The gateway's endpoint picker hashes the
  JSON-serialised ``messages`` in 64-char blocks seeded with the model name,
  and model servers reuse KV cache for a shared prompt prefix. So every request
  starts with the same system message and the same instruction block, the
  variable text comes last, the model string never changes, nothing
  per-request (file names, timestamps, ``cache_salt``) appears early.
  Bump :data:`PROMPT_VERSION` whenever any prompt text changes.
* **Streaming.** Streaming keeps long generations under the gateway's 300 s
  route timeout and gives TTFT. TTFT is the first *non-empty content* delta
  (inference-perf convention); the first SSE chunk carrying ``choices`` (vLLM
  bench convention) is reported separately as ``first_chunk_s``. Both use a
  monotonic clock started right before the request is sent.
* **Retries.** 429, 5xx, connect errors, timeouts and
  ``RemoteProtocolError`` are retried with exponential backoff and jitter,
  honouring ``Retry-After``. Other 4xx fail at once with a one-line
  :class:`LLMError`. Keep-alive is disabled because llama-server sometimes
  drops a pooled connection reused right after a stream ("Server disconnected
  without sending a response"); a fresh TCP connection per LLM call costs
  nothing next to the generation itself.
* **Map-reduce.** Token counts are estimated from characters (no tokenizer
  endpoint is assumed). A transcript that does not fit the context window is
  split on sentence/whitespace boundaries, the chunks are summarized
  concurrently, and the partial summaries are reduced, recursively if needed.
  If the server still reports a context overflow the offending piece is
  halved and retried.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

__all__ = [
    "PROMPT_VERSION",
    "NO_SPEECH_TEXT",
    "LLMError",
    "LLMSettings",
    "ChatResult",
    "Summary",
    "LLMClient",
    "build_messages",
    "summarize",
    "summarize_all",
]

log = logging.getLogger(__name__)

#: Version of the prompt texts below; the lead uses it in cache keys.
PROMPT_VERSION = "2026-11-27.2"

#: Summary returned for an empty transcript (no LLM call is made).
NO_SPEECH_TEXT = "No speech detected."

# --- prompts ---------------------------------------------------------------
# Everything up to the variable text is byte-identical for all requests of all
# modes (system message + instruction block), so prefix caches and the
# gateway's prefix-aware routing can reuse it. Only the short mode line and the
# text differ, and they come last.

# Prose instructions rather than a bullet list of rules: small models (SmolLM2)
# tend to echo bullet lists back instead of summarizing.
SYSTEM_PROMPT = (
    "You are a helpful assistant that writes short, factual summaries of meeting "
    "and speech transcripts."
)

INSTRUCTIONS = (
    "Summarize the following text in three to five sentences, in the language of the text. "
    "Mention the main topics, decisions, and who will do what. The text comes from automatic "
    "speech recognition and may contain errors. Do not add facts that are not in the text. "
    "Reply with the summary only."
)

_MODE_HEADERS = {
    "full": "Transcript:\n",
    "map": "The text is one part of a longer transcript.\n\nTranscript part:\n",
    "reduce": (
        "The text consists of summaries of consecutive parts of one transcript; "
        "combine them into one summary.\n\nPart summaries:\n"
    ),
}

# --- token estimation ------------------------------------------------------
#: Characters per token used for estimates. English BPE averages ~4; 3.5 errs
#: on the safe side (ASR text has many short words and numbers).
CHARS_PER_TOKEN = 3.5
#: Chat-template tokens per message (role markers etc.), generous.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
#: Smallest transcript budget (tokens) we accept per request.
_MIN_INPUT_TOKENS = 64
_MAX_REDUCE_DEPTH = 8
_MAX_RETRY_AFTER_S = 120.0
_MAX_BACKOFF_S = 60.0

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>.*\Z", re.DOTALL | re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\s*\n\s*")
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _]length|context[ _]size|exceed_context|maximum context|too many tokens|"
    r"prompt is too long|context window",
    re.IGNORECASE,
)

T = TypeVar("T")


def estimate_tokens(text: str) -> int:
    """Rough token count (chars / :data:`CHARS_PER_TOKEN`), server-agnostic."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# --- public types ----------------------------------------------------------


class LLMError(RuntimeError):
    """Expected failure talking to the LLM endpoint (one-line message).

    ``url`` is the endpoint, ``status`` the HTTP status if there was one,
    ``context_overflow`` is true when the server said the prompt is too long.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        context_overflow: bool = False,
    ) -> None:
        super().__init__(" ".join(message.split()))
        self.url = url
        self.status = status
        self.context_overflow = context_overflow


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the model and how hard to push it.

    ``url`` may be given with or without the trailing ``/v1``.
    ``context_tokens`` is the model's context window *per request* (for
    llama-server: the per-slot context) and drives map-reduce.
    """

    url: str
    model: str
    objective: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    concurrency: int = 4
    connect_timeout_s: float = 10
    read_timeout_s: float = 300
    max_retries: int = 4
    backoff_s: float = 1.0
    context_tokens: int = 4096
    max_output_tokens: int = 512
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("LLMSettings.url is empty")
        if not self.model:
            raise ValueError("LLMSettings.model is empty")
        if self.concurrency < 1:
            raise ValueError("LLMSettings.concurrency must be >= 1")
        if self.max_retries < 0:
            raise ValueError("LLMSettings.max_retries must be >= 0")
        if self.max_output_tokens < 1:
            raise ValueError("LLMSettings.max_output_tokens must be >= 1")


@dataclass(frozen=True)
class ChatResult:
    """One successful chat completion.

    ``ttft_s``: first non-empty content delta; ``first_chunk_s``: first SSE
    chunk with ``choices``; both ``None`` if never seen. Times are measured from
    just before the successful attempt was sent. ``attempts`` counts HTTP
    attempts including retries.
    """

    text: str
    ttft_s: float | None
    first_chunk_s: float | None
    total_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    finish_reason: str | None
    model: str | None
    attempts: int


@dataclass
class Summary:
    """Result of :func:`summarize`.

    For a single request the timings are that request's. With map-reduce,
    ``ttft_s``/``first_chunk_s`` are those of the first request issued (the
    first map call) and ``total_s`` is the wall time of the whole
    summarization; token counts are summed over all requests (``None`` when
    the server reported none). ``requests`` counts chat completions (not
    retries); ``chunks`` is the number of transcript pieces summarized
    (1 = no map-reduce, 0 = nothing to summarize).
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- helpers ---------------------------------------------------------------


def build_messages(text: str, mode: str = "full") -> list[dict[str, str]]:
    """Chat messages for one request: stable prefix first, ``text`` last."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{INSTRUCTIONS}\n\n{_MODE_HEADERS[mode]}{text}"},
    ]


def _strip_reasoning(text: str) -> str:
    """Drop ``<think>…</think>`` blocks (and an unterminated trailing one).

    Also handles templates that open ``<think>`` in the prompt, so the output
    only contains the closing tag: everything before the last ``</think>``
    is reasoning.
    """
    text = _THINK_BLOCK.sub("", text)
    text = _THINK_OPEN.sub("", text)
    if "</think>" in text.lower():
        text = re.split(r"</think>", text, flags=re.IGNORECASE)[-1]
    return text.strip()


def _snippet(text: str, limit: int = 200) -> str:
    """Error body on one line, short; prefers the OpenAI ``error.message``."""
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str):
            text = err
    except (ValueError, AttributeError):
        pass
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _split_text(text: str, max_chars: int) -> list[str]:
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


def _normalize_base_url(url: str) -> str:
    base = url.strip().rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base


class _Retryable(Exception):
    """Internal: a failure worth retrying, with an optional server-given delay."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


# --- client ----------------------------------------------------------------


class LLMClient:
    """Thin OpenAI-compatible client (httpx, sync, thread-safe).

    At most ``settings.concurrency`` requests are in flight at once across all
    threads using this client, so nested map-reduce inside
    :func:`summarize_all` still respects the cap.
    """

    def __init__(self, settings: LLMSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.base_url = _normalize_base_url(settings.url)
        headers = {"User-Agent": f"kubescribe-summarize/{PROMPT_VERSION}"}
        if settings.objective:
            headers["x-gateway-inference-objective"] = settings.objective
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=None,
        )
        try:
            self._http = httpx.Client(
                headers=headers,
                timeout=timeout,
                transport=transport,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        except httpx.InvalidURL as exc:  # pragma: no cover - defensive
            raise LLMError(f"LLM endpoint {settings.url}: invalid URL ({exc})", url=settings.url) from None
        self._slots = threading.BoundedSemaphore(settings.concurrency)

    # context manager -------------------------------------------------------
    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # public API --------------------------------------------------------------
    def check(self) -> list[str]:
        """``GET /v1/models`` and return the served model ids.

        Raises :class:`LLMError` if the endpoint is unreachable or answers
        with an error (after the usual retries).
        """
        url = f"{self.base_url}/models"

        def once() -> list[str]:
            resp = self._http.get(url)
            if resp.status_code >= 400:
                self._raise_for_status(resp, url)
            try:
                data = resp.json()
                return [str(m["id"]) for m in data.get("data", [])]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise LLMError(
                    f"LLM endpoint {url}: unexpected /models response: {_snippet(resp.text)}", url=url
                ) from None

        return self._with_retries(url, "GET /models", lambda: self._guard(url, once))

    def chat(self, messages: list[dict], *, max_tokens: int | None = None) -> ChatResult:
        """Streamed chat completion with retries; see :class:`ChatResult`."""
        url = f"{self.base_url}/chat/completions"
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens or s.max_output_tokens,
            "temperature": s.temperature,
        }
        attempts = 0

        def once() -> ChatResult:
            nonlocal attempts
            attempts += 1
            with self._slots:
                return self._guard(url, lambda: self._stream_once(url, body, attempts))

        return self._with_retries(url, "chat completion", once)

    # internals ---------------------------------------------------------------
    def _with_retries(self, url: str, what: str, fn: Callable[[], T]) -> T:
        s = self.settings
        total = s.max_retries + 1
        for attempt in range(1, total + 1):
            try:
                return fn()
            except _Retryable as exc:
                if attempt >= total:
                    raise LLMError(
                        f"LLM endpoint {url}: {what} failed after {attempt} attempt(s): {exc.reason}",
                        url=url,
                        status=exc.status,
                    ) from None
                delay = exc.retry_after
                if delay is None:
                    delay = min(s.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
                log.warning(
                    "LLM %s to %s: %s; retry %d/%d in %.2fs",
                    what, url, exc.reason, attempt, s.max_retries, delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _guard(self, url: str, fn: Callable[[], T]) -> T:
        """Map httpx transport errors to retryable / fatal errors."""
        s = self.settings
        try:
            return fn()
        except httpx.ConnectTimeout:
            raise _Retryable(f"connect timeout after {s.connect_timeout_s:g}s") from None
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise _Retryable(f"no data from server for {s.read_timeout_s:g}s (read timeout)") from None
        except httpx.PoolTimeout:  # pragma: no cover - pool is unbounded here
            raise _Retryable("connection pool timeout") from None
        except httpx.ConnectError as exc:
            raise _Retryable(f"unreachable ({_snippet(str(exc)) or 'connect error'})") from None
        except httpx.UnsupportedProtocol as exc:
            raise LLMError(f"LLM endpoint {url}: unsupported URL ({exc})", url=url) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            raise _Retryable(f"connection dropped ({type(exc).__name__}: {_snippet(str(exc))})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {_snippet(str(exc))}") from None

    def _raise_for_status(self, resp: httpx.Response, url: str) -> None:
        status = resp.status_code
        try:
            raw = resp.text
        except httpx.ResponseNotRead:
            raw = resp.read().decode("utf-8", "replace")
        detail = _snippet(raw)
        if status == 429 or status >= 500:
            raise _Retryable(
                f"HTTP {status}" + (f": {detail}" if detail else ""),
                status=status,
                retry_after=_parse_retry_after(resp.headers.get("retry-after")),
            )
        if status in (401, 403):
            msg = f"authentication failed (HTTP {status}); check the API key"
        elif status == 404 and re.search(r"model", raw, re.IGNORECASE):
            msg = f"model {self.settings.model!r} not found (HTTP 404): {detail}"
        elif status == 404:
            msg = f"endpoint not found (HTTP 404), expected an OpenAI-compatible base URL such as http://host/v1: {detail}"
        else:
            msg = f"request rejected (HTTP {status}): {detail}"
        raise LLMError(
            f"LLM endpoint {url}: {msg}",
            url=url,
            status=status,
            context_overflow=bool(_CONTEXT_OVERFLOW.search(raw)),
        )

    def _stream_once(self, url: str, body: dict[str, Any], attempts: int) -> ChatResult:
        t0 = time.monotonic()
        with self._http.stream("POST", url, json=body, headers={"Accept": "text/event-stream"}) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._raise_for_status(resp, url)
            ctype = resp.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                # Server ignored "stream": parse a plain completion instead.
                resp.read()
                return self._from_plain(url, resp, t0, attempts)
            return self._from_stream(url, resp, t0, attempts)

    def _from_plain(self, url: str, resp: httpx.Response, t0: float, attempts: int) -> ChatResult:
        total = time.monotonic() - t0
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"LLM endpoint {url}: unexpected response: {_snippet(resp.text)}", url=url) from None
        usage = data.get("usage") or {}
        return ChatResult(
            text=text,
            ttft_s=total if text else None,
            first_chunk_s=total,
            total_s=total,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cached_tokens=_cached_tokens(usage, data),
            finish_reason=choice.get("finish_reason"),
            model=data.get("model"),
            attempts=attempts,
        )

    def _from_stream(self, url: str, resp: httpx.Response, t0: float, attempts: int) -> ChatResult:
        parts: list[str] = []
        ttft = first_chunk = None
        usage: dict[str, Any] = {}
        cached: int | None = None
        finish_reason = model = None
        done = False
        for payload in _sse_data(resp.iter_lines()):
            if payload == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise _Retryable(f"malformed stream chunk: {_snippet(payload)}") from None
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                raise LLMError(f"LLM endpoint {url}: error in stream: {_snippet(json.dumps(chunk))}", url=url)
            model = chunk.get("model") or model
            choices = chunk.get("choices") or []
            if choices and first_chunk is None:
                first_chunk = time.monotonic() - t0
            for choice in choices:
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    if ttft is None:
                        ttft = time.monotonic() - t0
                    parts.append(content)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if chunk.get("usage"):
                usage = chunk["usage"]
                cached = _cached_tokens(usage, chunk)
        if not done and finish_reason is None:
            raise _Retryable("stream ended before completion")
        return ChatResult(
            text="".join(parts),
            ttft_s=ttft,
            first_chunk_s=first_chunk,
            total_s=time.monotonic() - t0,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cached_tokens=cached,
            finish_reason=finish_reason,
            model=model,
            attempts=attempts,
        )


def _cached_tokens(usage: Mapping[str, Any], chunk: Mapping[str, Any]) -> int | None:
    """OpenAI ``prompt_tokens_details.cached_tokens``, else llama.cpp ``timings.cache_n``."""
    details = usage.get("prompt_tokens_details") or {}
    if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
        return int(details["cached_tokens"])
    timings = chunk.get("timings") or {}
    if isinstance(timings, Mapping) and timings.get("cache_n") is not None:
        return int(timings["cache_n"])
    return None


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield the ``data`` payload of each SSE event.

    Comment lines (``:``) and other fields (``event:``, ``id:``, ``retry:``)
    are ignored; multi-line data is joined with newlines per the SSE spec.
    """
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name != "data":
            continue
        buf.append(value[1:] if value.startswith(" ") else value)
        # OpenAI-style servers send one data line per event; don't wait for
        # the blank line if the payload is already complete JSON or [DONE].
        joined = "\n".join(buf)
        if joined == "[DONE]" or _is_json(joined):
            yield joined
            buf = []
    if buf:
        yield "\n".join(buf)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --- summarization -----------------------------------------------------------


class _Stats:
    """Thread-safe accumulator of chat results for one summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: list[tuple[float, ChatResult]] = []

    def add(self, started: float, result: ChatResult) -> None:
        with self._lock:
            self.results.append((started, result))


def _input_budget_tokens(settings: LLMSettings) -> int:
    """Tokens left for the variable text in one request."""
    overhead = (
        estimate_tokens(SYSTEM_PROMPT)
        + estimate_tokens(INSTRUCTIONS)
        + max(estimate_tokens(h) for h in _MODE_HEADERS.values())
        + 2 * _TEMPLATE_TOKENS_PER_MESSAGE
        + 8  # generation prompt / BOS
    )
    budget = settings.context_tokens - overhead - settings.max_output_tokens
    if budget < _MIN_INPUT_TOKENS:
        raise LLMError(
            f"context_tokens={settings.context_tokens} is too small: the prompt needs ~{overhead} "
            f"tokens plus max_output_tokens={settings.max_output_tokens} plus at least "
            f"{_MIN_INPUT_TOKENS} tokens of transcript",
            url=settings.url,
        )
    return budget


def _call(client: LLMClient, text: str, mode: str, stats: _Stats) -> str:
    started = time.monotonic()
    result = client.chat(build_messages(text, mode))
    stats.add(started, result)
    return _strip_reasoning(result.text)


def _map_piece(client: LLMClient, text: str, max_chars: int, stats: _Stats, depth: int = 0) -> list[str]:
    """Summarize one excerpt; halve it if the server says it is too long."""
    try:
        out = _call(client, text, "map", stats)
        return [out] if out else []
    except LLMError as exc:
        if not exc.context_overflow or depth >= 4 or max_chars < 2 * _MIN_INPUT_TOKENS * CHARS_PER_TOKEN:
            raise
        half = max(len(text) // 2, 1)
        log.info("context overflow on a %d-char excerpt; splitting it", len(text))
        return [s for piece in _split_text(text, half) for s in _map_piece(client, piece, half, stats, depth + 1)]


def _parallel(client: LLMClient, fn: Callable[[str], T], items: list[str]) -> list[T]:
    """Run ``fn`` over ``items`` concurrently (the client caps in-flight calls)."""
    if len(items) == 1:
        return [fn(items[0])]
    workers = min(client.settings.concurrency, len(items))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-map") as pool:
        return list(pool.map(fn, items))


def _reduce(client: LLMClient, partials: list[str], max_chars: int, stats: _Stats, depth: int = 0) -> str:
    """Merge partial summaries, regrouping recursively until they fit."""
    if depth > _MAX_REDUCE_DEPTH:
        raise LLMError(
            f"map-reduce did not converge after {depth} rounds; raise context_tokens or lower max_output_tokens",
            url=client.settings.url,
        )
    joined = "\n\n".join(partials)
    if len(joined) <= max_chars:
        try:
            return _call(client, joined, "reduce", stats)
        except LLMError as exc:
            if not exc.context_overflow:
                raise
            max_chars = max(len(joined) // 2, 1)  # estimate was off; regroup smaller
    groups = _split_text(joined, max_chars)
    merged = _parallel(client, lambda g: _call(client, g, "reduce", stats), groups)
    return _reduce(client, [m for m in merged if m], max_chars, stats, depth + 1)


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
        return Summary(NO_SPEECH_TEXT, 0.0, 0.0, 0.0, None, None, None, requests=0, chunks=0)
    settings = client.settings
    max_chars = int(_input_budget_tokens(settings) * CHARS_PER_TOKEN)
    stats = _Stats()
    chunks = _split_text(text, max_chars)
    final: str | None = None
    if len(chunks) == 1:
        try:
            final = _call(client, text, "full", stats)
        except LLMError as exc:
            if not exc.context_overflow:
                raise
            max_chars = max(len(text) // 2, 1)
            chunks = _split_text(text, max_chars)
            log.info("context overflow; falling back to map-reduce over %d chunks", len(chunks))
    n_chunks = 1
    if final is None:
        per_chunk = _parallel(client, lambda c: _map_piece(client, c, max_chars, stats), chunks)
        partials = [p for group in per_chunk for p in group]
        n_chunks = sum(max(len(g), 1) for g in per_chunk)
        if not partials:
            raise LLMError("model returned empty summaries for every excerpt", url=settings.url)
        final = _reduce(client, partials, max_chars, stats)
    if not final:
        raise LLMError(
            f"LLM endpoint {client.base_url}: model {settings.model!r} returned an empty summary",
            url=settings.url,
        )
    return _make_summary(final, stats, time.monotonic() - t0, n_chunks)


def _sum_opt(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _make_summary(text: str, stats: _Stats, total_s: float, chunks: int) -> Summary:
    results = [r for _, r in sorted(stats.results, key=lambda sr: sr[0])]
    first = results[0]
    first_chunk = first.first_chunk_s if first.first_chunk_s is not None else first.total_s
    ttft = first.ttft_s if first.ttft_s is not None else first.total_s
    return Summary(
        text=text,
        ttft_s=ttft,
        first_chunk_s=first_chunk,
        total_s=total_s,
        prompt_tokens=_sum_opt(r.prompt_tokens for r in results),
        completion_tokens=_sum_opt(r.completion_tokens for r in results),
        cached_tokens=_sum_opt(r.cached_tokens for r in results),
        requests=len(results),
        chunks=chunks,
    )


def summarize_all(
    settings: LLMSettings,
    items: Mapping[str, str],
    on_result: Callable[[str, Summary | LLMError], None] | None = None,
) -> dict[str, Summary | LLMError]:
    """Summarize many transcripts; at most ``settings.concurrency`` transcripts in flight.

    Returns one entry per key, in input order. A failing item maps to its
    :class:`LLMError` (unexpected exceptions are wrapped) and does not stop
    the others. ``on_result`` is called on the calling thread as each item
    finishes, so callers can persist results as they come (a step killed
    half-way then keeps what it finished).
    """
    keys = list(items)
    results: dict[str, Summary | LLMError] = {}
    if not keys:
        return results
    with LLMClient(settings) as client:

        def one(key: str) -> Summary | LLMError:
            try:
                return summarize(client, items[key])
            except LLMError as exc:
                log.error("summary of %s failed: %s", key, exc)
                return exc
            except Exception as exc:  # keep the batch going; surface as LLMError
                log.exception("summary of %s failed unexpectedly", key)
                err = LLMError(f"unexpected {type(exc).__name__}: {exc}", url=settings.url)
                err.__cause__ = exc
                return err

        workers = min(settings.concurrency, len(keys))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-item") as pool:
            futures = {pool.submit(one, key): key for key in keys}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                if on_result is not None:
                    on_result(futures[future], results[futures[future]])
    return {key: results[key] for key in keys}
