"""A thin OpenAI-compatible HTTP client (httpx, sync, thread-safe) whose every wait has a deadline.

Only the plain OpenAI HTTP API is used (``GET /v1/models``, streamed ``POST /v1/chat/completions``), so any
compatible server works: the llm-d inference gateway in a cluster, a llama.cpp ``llama-server`` locally.

* **Streaming.** Streaming keeps long generations under the gateway's 300 s route timeout and gives TTFT. TTFT
  is the first *non-empty content* delta (inference-perf convention); the first SSE chunk carrying ``choices``
  (vLLM bench convention) is reported separately as ``first_chunk_s``. Both use a monotonic clock started right
  before the request is sent. What the server sends is parsed by ``wire.py``.
* **Deadlines.** Every wait is bounded (``steps/deadlines.py``): time to the first token and idle silence per
  attempt, a deadline for the whole call (retries included), and the summarize step's budget over all calls.
  No retry sleeps past what is left; keep-alive comments never extend a wait.
* **Retries.** 429, 5xx, connect errors, timeouts and ``RemoteProtocolError`` are retried with exponential
  backoff and jitter, honouring ``Retry-After``; a saturated gateway (429/503) is waited out for up to
  ``busy_wait_s``. Other 4xx fail at once with a one-line :class:`LLMError`.
* **No keep-alive.** llama-server sometimes drops a pooled connection reused right after a stream ("Server
  disconnected without sending a response"); a fresh TCP connection per LLM call costs nothing next to the
  generation itself.
* **Secrets.** Credentials in the URL became basic auth in :class:`LLMSettings` (``steps/urls.py``); the API key
  is a header and is never logged.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from steps.deadlines import FIRST_TOKEN, LIMIT, Deadline, StreamGuard, earliest
from steps.llm.prompts import PROMPT_VERSION
from steps.llm.settings import LLMSettings
from steps.llm.wire import (
    BudgetExhausted,
    ChatResult,
    Expired,
    LLMError,
    Retryable,
    budget_message,
    raise_for_status,
    read_plain,
    read_stream,
    snippet,
)
from steps.urls import openai_base_url

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 60.0
# "Saturated, come back later": the llm-d scheduler sheds with 429, a model server or gateway without capacity
# answers 503. Waited out for minutes (busy_wait_s), unlike real failures.
_BUSY = (429, 503)

T = TypeVar("T")


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
        self.base_url = openai_base_url(settings.url)
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
                raise Retryable(f"no answer within {read_s:.3g} s") from None
            if resp.status_code >= 400:
                raise_for_status(resp, url, self.settings.model)
            try:
                data = resp.json()
                return [str(m["id"]) for m in data.get("data", [])]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise LLMError(
                    f"LLM endpoint {url}: unexpected /models response: {snippet(resp.text)}", url=url
                ) from None

        return self._with_retries(url, "GET /models", lambda: self._guard(url, once), limit)

    def chat(self, messages: list[dict], *, max_tokens: int | None = None,
             extra: dict[str, Any] | None = None) -> ChatResult:
        """Streamed chat completion with retries; see :class:`ChatResult`. ``extra``: more request fields
        (``response_format``, penalties, a lower ``temperature``), which win over the defaults."""
        url = f"{self.base_url}/chat/completions"
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens or s.max_output_tokens,
            "temperature": s.temperature,
            **(extra or {}),
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
            except Retryable as exc:
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

    def _wait_while_busy(self, url: str, what: str, exc: Retryable, limit: Deadline, waited: list[float]) -> None:
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
            raise Retryable(f"connect timeout after {s.connect_timeout_s:g} s") from None
        except (httpx.ReadTimeout, httpx.WriteTimeout):
            raise Retryable("no data from server within the read timeout") from None
        except httpx.PoolTimeout:  # pragma: no cover - pool is unbounded here
            raise Retryable("connection pool timeout") from None
        except httpx.ConnectError as exc:
            raise Retryable(f"unreachable ({snippet(str(exc)) or 'connect error'})") from None
        except httpx.UnsupportedProtocol as exc:
            raise LLMError(f"LLM endpoint {url}: unsupported URL ({exc})", url=url) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            raise Retryable(f"connection dropped ({type(exc).__name__}: {snippet(str(exc))})") from None
        except httpx.TransportError as exc:
            raise Retryable(f"{type(exc).__name__}: {snippet(str(exc))}") from None

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
                    raise_for_status(resp, url, self.settings.model)
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    # Server ignored "stream": parse a plain completion instead.
                    return read_plain(url, resp, guard, attempts)
                return read_stream(url, resp, guard, attempts)
        except (httpx.TransportError, Retryable, Expired) as exc:
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
                raise Retryable(f"no first token within {s.first_token_timeout_s:g} s "
                                 f"(first-token deadline; {guard.seen()})") from None
            raise Retryable(f"no data for {s.read_timeout_s:g} s after the first token (idle read timeout)") from None
        finally:
            guard.close()
