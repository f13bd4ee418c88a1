"""The OpenAI wire format as kubescribe reads it: errors, HTTP statuses, SSE parsing, plain and streamed completions.

Everything a server sends is untrusted here:
deadlines are checked on every line (``steps/deadlines.py``), error text is stripped of control characters
before it reaches a message, and answers that are not OpenAI chat completions (HTML, non-SSE bytes,
non-JSON ``data:`` lines, oversized bodies) give a one-line error instead of a hang or a traceback.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from steps.deadlines import Deadline, StreamGuard
from steps.sanitize import strip_control

_MAX_RETRY_AFTER_S = 120.0
#: A non-streamed answer larger than this is not a chat completion.
_MAX_PLAIN_BODY = 8 << 20
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _]length|context[ _]size|exceed_context|maximum context|too many tokens|"
    r"prompt is too long|context window",
    re.IGNORECASE,
)


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


class EndpointUnreachable(LLMError):
    """The endpoint gave no HTTP answer at all (refused, reset, DNS, timeout): an outage, worth retrying later."""


class BudgetExhausted(LLMError):
    """The summarize step's budget ran out before this item was summarized."""


def budget_message(budget: Deadline, detail: str = "") -> str:
    return f"summarize budget of {budget.seconds:g} s exhausted before this file was summarized" + (
        f" ({detail})" if detail else "")


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
    busy_wait_s: float = 0.0  # time spent waiting on 429/503 answers before this result


def snippet(text: str, limit: int = 200) -> str:
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
    text = " ".join(strip_control(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None) -> float | None:
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


class Retryable(Exception):
    """Internal: a failure worth retrying, with an optional server-given delay."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def raise_for_status(resp: httpx.Response, url: str, model: str) -> None:
    """An error answer as the exception that says what to do: :class:`Retryable` for 429 and 5xx, else a
    one-line :class:`LLMError` (flagged when the server says the prompt is too long)."""
    status = resp.status_code
    try:
        raw = resp.text
    except httpx.ResponseNotRead:
        raw = resp.read().decode("utf-8", "replace")
    detail = snippet(raw)
    if status == 429 or status >= 500:
        raise Retryable(
            f"HTTP {status}" + (f": {detail}" if detail else ""),
            status=status,
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
        )
    if status in (401, 403):
        msg = f"authentication failed (HTTP {status}); check the API key or the credentials"
    elif status == 404 and re.search(r"model", raw, re.IGNORECASE):
        msg = f"model {model!r} not found (HTTP 404): {detail}"
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


def read_plain(url: str, resp: httpx.Response, guard: StreamGuard, attempts: int) -> ChatResult:
    """A non-streamed completion (the server ignored ``stream``); the whole body counts as the first token."""
    raw = bytearray()
    for piece in resp.iter_bytes():
        _check(guard)
        guard.data()
        raw += piece
        if len(raw) > _MAX_PLAIN_BODY:
            raise LLMError(f"LLM endpoint {url}: response larger than {_MAX_PLAIN_BODY >> 20} MiB, "
                           "not a chat completion", url=url)
    _check(guard)
    total = time.monotonic() - guard.started
    text_body = raw.decode(resp.encoding or "utf-8", errors="replace")
    try:
        data = json.loads(text_body)
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError(type(text))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ctype = resp.headers.get("content-type") or "no Content-Type"
        raise LLMError(
            f"LLM endpoint {url}: unexpected response (HTTP {resp.status_code}, {ctype}), not an OpenAI chat "
            f"completion: {snippet(text_body)}",
            url=url,
        ) from None
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


def read_stream(url: str, resp: httpx.Response, guard: StreamGuard, attempts: int) -> ChatResult:
    """An OpenAI SSE chat stream, checking the attempt's deadlines on every line."""
    t0 = guard.started
    parts: list[str] = []
    ttft = first_chunk = None
    usage: dict[str, Any] = {}
    cached: int | None = None
    finish_reason = model = None
    done = False
    odd: list[str] = []  # the first line that is not SSE, for the error message
    events = 0
    for payload in _sse_data(_guarded_lines(resp.iter_lines(), guard, odd)):
        events += 1
        if payload == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise Retryable(f"malformed stream chunk: {snippet(payload)}") from None
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            raise LLMError(f"LLM endpoint {url}: error in stream: {snippet(json.dumps(chunk))}", url=url)
        model = chunk.get("model") or model
        choices = chunk.get("choices") or []
        if choices and first_chunk is None:
            first_chunk = time.monotonic() - t0
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if content and isinstance(content, str):
                if ttft is None:
                    ttft = time.monotonic() - t0
                    guard.token()
                parts.append(content)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
        if isinstance(chunk.get("usage"), dict) and chunk["usage"]:
            usage = chunk["usage"]
            cached = _cached_tokens(usage, chunk)
    if not done and finish_reason is None:
        if not events:
            raise Retryable("stream ended without any event; not an OpenAI event stream"
                             + (f": {snippet(odd[0])}" if odd else ""))
        raise Retryable("stream ended before completion")
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


class Expired(Exception):
    """Internal: a deadline of the attempt passed while reading (the guard knows which)."""


def _check(guard: StreamGuard) -> None:
    if guard.expired():
        raise Expired()


_SSE_FIELDS = (":", "data", "event", "id", "retry")


def _guarded_lines(lines: Iterable[str], guard: StreamGuard, odd: list[str]) -> Iterator[str]:
    """Lines of the stream, checking the deadlines before each (so keep-alives cannot extend them)."""
    for line in lines:
        _check(guard)
        guard.data(line)
        if line and not odd and not line.startswith(_SSE_FIELDS):
            odd.append(line)
        yield line


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
