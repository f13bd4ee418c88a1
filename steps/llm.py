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
* **Deadlines.** Every wait is bounded (``steps/deadlines.py``): time to the
  first token and idle silence per attempt, a deadline for the whole call
  (retries included), and the summarize step's budget over all calls. No
  retry sleeps past what is left; keep-alive comments never extend a wait.
  The wire format (errors, SSE and plain responses) is ``steps/llm_wire.py``.
* **Untrusted output.** Model text is stripped of terminal escapes and
  control characters (``steps/sanitize.py``) before anything stores or
  prints it; credentials in the URL become basic auth (``steps/urls.py``).
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
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from steps.deadlines import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FIRST_TOKEN_TIMEOUT_S,
    DEFAULT_IDLE_READ_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SUMMARIZE_BUDGET_S,
    DEFAULT_BUSY_WAIT_S,
    FIRST_TOKEN,
    LIMIT,
    Deadline,
    StreamGuard,
    earliest,
)
from steps.llm_wire import (
    BudgetExhausted,
    ChatResult,
    LLMError,
    _Expired,
    _parse_retry_after,
    _Retryable,
    _snippet,
    budget_message,
    read_plain,
    read_stream,
)
from steps.sanitize import strip_control
from steps.urls import split_credentials

__all__ = [
    "PROMPT_VERSION",
    "NO_SPEECH_TEXT",
    "LLMError",
    "BudgetExhausted",
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
_MAX_BACKOFF_S = 60.0
# "Saturated, come back later": the llm-d scheduler sheds with 429, a model server or gateway without capacity
# answers 503. Waited out for minutes (busy_wait_s), unlike real failures.
_BUSY = (429, 503)

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


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the model and how hard to push it.

    ``url`` may be given with or without the trailing ``/v1``; credentials in it
    (``http://user:pass@host/v1``) are moved to ``basic_auth`` so the URL is
    safe to log and store. ``api_key`` (a bearer token) wins over ``basic_auth``.
    ``context_tokens`` is the model's context window *per request* (for
    llama-server: the per-slot context) and drives map-reduce.
    Deadlines (``steps/deadlines.py``): ``first_token_timeout_s`` per attempt,
    ``read_timeout_s`` the idle silence tolerated after the first token,
    ``request_timeout_s`` one call with its retries, ``budget_s`` all of
    :func:`summarize_all` (``None``: no budget). ``busy_wait_s`` is how long one call
    keeps waiting (honouring Retry-After) while the gateway answers 429/503; those
    waits extend the call's deadline and do not count against ``max_retries``.
    """

    url: str
    model: str
    objective: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)  # never printed
    concurrency: int = 4
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_IDLE_READ_TIMEOUT_S
    first_token_timeout_s: float = DEFAULT_FIRST_TOKEN_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    budget_s: float | None = DEFAULT_SUMMARIZE_BUDGET_S
    busy_wait_s: float = DEFAULT_BUSY_WAIT_S
    max_retries: int = 4
    backoff_s: float = 1.0
    context_tokens: int = 4096
    max_output_tokens: int = 512
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("LLMSettings.url is empty")
        url, credentials = split_credentials(self.url)
        if credentials is not None:
            object.__setattr__(self, "url", url)
            object.__setattr__(self, "basic_auth", self.basic_auth or credentials)
        if not self.model:
            raise ValueError("LLMSettings.model is empty")
        if self.concurrency < 1:
            raise ValueError("LLMSettings.concurrency must be >= 1")
        if self.max_retries < 0:
            raise ValueError("LLMSettings.max_retries must be >= 0")
        if self.max_output_tokens < 1:
            raise ValueError("LLMSettings.max_output_tokens must be >= 1")
        if self.busy_wait_s < 0:
            raise ValueError("LLMSettings.busy_wait_s must be >= 0")
        for name in ("connect_timeout_s", "read_timeout_s", "first_token_timeout_s", "request_timeout_s", "budget_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"LLMSettings.{name} must be > 0")


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
    busy_wait_s: float = 0.0  # total time this summary's requests waited on a saturated gateway (429/503)

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


# --- client ----------------------------------------------------------------


class LLMClient:
    """Thin OpenAI-compatible client (httpx, sync, thread-safe).

    At most ``settings.concurrency`` requests are in flight at once across all
    threads using this client, so nested map-reduce inside
    :func:`summarize_all` still respects the cap. ``budget`` (the summarize
    step's :class:`Deadline`) caps every call made through this client.
    """

    def __init__(
        self, settings: LLMSettings, transport: httpx.BaseTransport | None = None, budget: Deadline | None = None
    ) -> None:
        self.settings = settings
        self.budget = budget
        self.base_url = _normalize_base_url(settings.url)
        headers = {"User-Agent": f"kubescribe-summarize/{PROMPT_VERSION}"}
        if settings.objective:
            headers["x-gateway-inference-objective"] = settings.objective
        auth = None
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        elif settings.basic_auth:
            auth = httpx.BasicAuth(*settings.basic_auth)
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=None,
        )
        try:
            self._http = httpx.Client(
                headers=headers,
                auth=auth,
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
        limit = self._limit()

        def once() -> list[str]:
            read_s = min(self.settings.first_token_timeout_s, max(limit.remaining(), 0.001))
            try:
                resp = self._http.get(url, timeout=self._timeout(read_s, limit))
            except httpx.ReadTimeout:
                raise _Retryable(f"no answer within {read_s:.3g} s") from None
            if resp.status_code >= 400:
                self._raise_for_status(resp, url)
            try:
                data = resp.json()
                return [str(m["id"]) for m in data.get("data", [])]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise LLMError(
                    f"LLM endpoint {url}: unexpected /models response: {_snippet(resp.text)}", url=url
                ) from None

        return self._with_retries(url, "GET /models", lambda: self._guard(url, once), limit)

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
        limit = self._limit()

        def once() -> ChatResult:
            nonlocal attempts
            attempts += 1
            if not self._slots.acquire(timeout=max(limit.remaining(), 0.0)):
                raise self._out_of_time(url, "chat completion", limit, attempts - 1,
                                        f"still waiting for one of {s.concurrency} request slot(s)")
            try:
                return self._guard(url, lambda: self._stream_once(url, body, attempts, limit))
            finally:
                self._slots.release()

        waited: list[float] = []
        result = self._with_retries(url, "chat completion", once, limit, waited)
        return dataclasses.replace(result, busy_wait_s=sum(waited))

    # internals ---------------------------------------------------------------
    def _limit(self) -> Deadline:
        """The deadline of one call: its own, or the step's budget if that ends first."""
        own = Deadline(self.settings.request_timeout_s, f"request deadline of {self.settings.request_timeout_s:g} s")
        return earliest(own, self.budget)

    def _timeout(self, read_s: float, limit: Deadline) -> httpx.Timeout:
        left = max(limit.remaining(), 0.001)
        return httpx.Timeout(connect=min(self.settings.connect_timeout_s, left), read=read_s, write=read_s, pool=None)

    def _out_of_time(self, url: str, what: str, limit: Deadline, attempts: int, reason: str) -> LLMError:
        """The error when ``limit`` ends the call (a budget error when it is the step's budget)."""
        if limit.is_budget:
            return BudgetExhausted(budget_message(limit, f"LLM endpoint {url}: {reason}"), url=url)
        return LLMError(
            f"LLM endpoint {url}: {what} failed: {limit.label} reached after {attempts} attempt(s); last: {reason}",
            url=url,
        )

    def _with_retries(
        self, url: str, what: str, fn: Callable[[], T], limit: Deadline, waited: list[float] | None = None
    ) -> T:
        s = self.settings
        total = s.max_retries + 1
        waited = [] if waited is None else waited
        attempt = 1
        while attempt <= total:
            if limit.expired():
                raise self._out_of_time(url, what, limit, attempt - 1, "no time left to start")
            try:
                return fn()
            except _Retryable as exc:
                if exc.status in _BUSY and sum(waited) < s.busy_wait_s:
                    self._wait_while_busy(url, what, exc, limit, waited)
                    continue  # a busy answer is not a failed attempt
                if attempt >= total:
                    raise LLMError(
                        f"LLM endpoint {url}: {what} failed after {attempt} attempt(s): {exc.reason}",
                        url=url,
                        status=exc.status,
                    ) from None
                delay = exc.retry_after
                if delay is None:
                    delay = min(s.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
                if delay >= limit.remaining():  # never sleep past the deadline
                    raise self._out_of_time(url, what, limit, attempt, exc.reason) from None
                budget = f"; {self.budget.left()}" if self.budget is not None and self.budget is not limit else ""
                log.warning(
                    "LLM %s to %s: %s; retry %d/%d in %.2f s (%s%s)",
                    what, url, exc.reason, attempt, s.max_retries, delay, limit.left(), budget,
                )
                time.sleep(delay)
                attempt += 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_while_busy(self, url: str, what: str, exc: _Retryable, limit: Deadline, waited: list[float]) -> None:
        """Sleep before asking a saturated gateway again: its Retry-After, else a back-off growing to a minute,
        never past the busy-wait allowance or the step's budget. The wait extends the call's own deadline."""
        s = self.settings
        left = s.busy_wait_s - sum(waited)
        delay = exc.retry_after
        if delay is None:
            delay = min(s.backoff_s * 2 ** len(waited), _MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
        delay = min(delay, left)
        if not limit.is_budget:
            limit.extend(delay)
        elif delay >= limit.remaining():
            raise self._out_of_time(url, what, limit, len(waited) + 1, exc.reason) from None
        log.warning("LLM %s to %s: %s (busy); asking again in %.1f s (%.0f s of %.0f s busy wait used)",
                    what, url, exc.reason, delay, sum(waited), s.busy_wait_s)
        time.sleep(delay)
        waited.append(delay)

    def _guard(self, url: str, fn: Callable[[], T]) -> T:
        """Map httpx transport errors to retryable / fatal errors."""
        s = self.settings
        try:
            return fn()
        except httpx.ConnectTimeout:
            raise _Retryable(f"connect timeout after {s.connect_timeout_s:g} s") from None
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise _Retryable("no data from server within the read timeout") from None
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
            msg = f"authentication failed (HTTP {status}); check the API key or the credentials"
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

    def _stream_once(self, url: str, body: dict[str, Any], attempts: int, limit: Deadline) -> ChatResult:
        s = self.settings
        guard = StreamGuard(limit, s.first_token_timeout_s, s.read_timeout_s)
        try:
            timeout = self._timeout(guard.read_timeout(), limit)
            with self._http.stream("POST", url, json=body, headers={"Accept": "text/event-stream"},
                                   timeout=timeout) as resp:
                guard.watch(resp)
                if resp.status_code >= 400:
                    resp.read()
                    self._raise_for_status(resp, url)
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    # Server ignored "stream": parse a plain completion instead.
                    return read_plain(url, resp, guard, attempts)
                return read_stream(url, resp, guard, attempts)
        except (httpx.TransportError, _Retryable, _Expired) as exc:
            kind = guard.expired()
            if kind is None and isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
                kind = guard.next_deadline()[1]  # the read timeout stood for this deadline
            if kind is None:
                raise
            if kind == LIMIT:
                waited = time.monotonic() - guard.started
                state = (f"no first token after {waited:.1f} s" if guard.first_token_at is None
                         else f"streaming for {waited:.1f} s")
                raise self._out_of_time(url, "chat completion", limit, attempts, state) from None
            if kind == FIRST_TOKEN:
                raise _Retryable(f"no first token within {s.first_token_timeout_s:g} s "
                                 f"(first-token deadline; {guard.seen()})") from None
            raise _Retryable(f"no data for {s.read_timeout_s:g} s after the first token (idle read timeout)") from None
        finally:
            guard.close()


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
    return _strip_reasoning(strip_control(result.text))  # model output is untrusted (terminal escapes)


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
        busy_wait_s=round(sum(r.busy_wait_s for r in results), 3),
    )


def step_budget(settings: LLMSettings) -> Deadline | None:
    """The summarize step's budget, starting now (``None`` when ``settings.budget_s`` is ``None``)."""
    if settings.budget_s is None:
        return None
    return Deadline(settings.budget_s, f"summarize budget of {settings.budget_s:g} s", budget=True)


def summarize_all(
    settings: LLMSettings,
    items: Mapping[str, str],
    on_result: Callable[[str, Summary | LLMError], None] | None = None,
    budget: Deadline | None = None,
) -> dict[str, Summary | LLMError]:
    """Summarize many transcripts; at most ``settings.concurrency`` transcripts in flight.

    Returns one entry per key, in input order. A failing item maps to its
    :class:`LLMError` (unexpected exceptions are wrapped) and does not stop
    the others. ``on_result`` is called on the calling thread as each item
    finishes, so callers can persist results as they come (a step killed
    half-way then keeps what it finished). ``budget`` (default: a fresh
    :func:`step_budget`) bounds the whole batch: items still running when it
    ends, and items not started yet, map to :class:`BudgetExhausted`.
    """
    keys = list(items)
    results: dict[str, Summary | LLMError] = {}
    if not keys:
        return results
    budget = budget or step_budget(settings)
    with LLMClient(settings, budget=budget) as client:

        def one(key: str) -> Summary | LLMError:
            if budget is not None and budget.expired():
                log.error("summary of %s not started: %s", key, budget.label + " exhausted")
                return BudgetExhausted(budget_message(budget), url=client.base_url)
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
