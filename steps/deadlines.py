"""Deadlines for every wait on the LLM endpoint, and their defaults (defined here once, imported elsewhere).

A request has three limits:

* **first token**: the first non-empty content delta must arrive within ``first_token_timeout_s`` of the
  attempt's start. Keep-alive comments (``: ping``), role-only chunks and empty deltas do not count.
* **idle read**: once the first token has arrived, the stream may not go silent (no bytes at all, keep-alives
  included) for longer than ``read_timeout_s``.
* **request deadline**: the whole chat call, retries and their back-off included, ends within
  ``request_timeout_s``; the summarize step's **budget** caps every request of the step the same way.

:class:`StreamGuard` enforces the first two and the overall limit on every line read and, once the response is
open, with a watchdog thread that shuts the socket down at the deadline, so a read that would block forever (a
server that sent headers and then nothing) ends on time as well. Before the response headers arrive the
attempt is bounded by httpx's read timeout, set to the time left until the first-token deadline.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = [
    "DEFAULT_BUSY_WAIT_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_FIRST_TOKEN_TIMEOUT_S",
    "DEFAULT_IDLE_READ_TIMEOUT_S",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DEFAULT_SUMMARIZE_BUDGET_S",
    "S3_ATTEMPTS",
    "S3_CONNECT_TIMEOUT_S",
    "S3_READ_TIMEOUT_S",
    "Deadline",
    "earliest",
    "StreamGuard",
]

#: TCP connect timeout per attempt.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Time to the first non-empty content delta, per attempt (covers queueing and prefill on a busy gateway).
DEFAULT_FIRST_TOKEN_TIMEOUT_S = 120.0
#: Longest silence (no bytes at all) tolerated after the first token.
DEFAULT_IDLE_READ_TIMEOUT_S = 60.0
#: One chat call, retries and back-off included.
DEFAULT_REQUEST_TIMEOUT_S = 600.0
#: The whole summarize step (every file); files not summarized by then fail alone.
DEFAULT_SUMMARIZE_BUDGET_S = 4 * 3600.0
#: How long one call may keep waiting while the gateway answers 429/503 ("pool saturated, come back later").
#: A saturated llm-d pool sheds or queues batch work for minutes, not seconds; this wait extends the request
#: deadline (not the step budget) and honours Retry-After.
DEFAULT_BUSY_WAIT_S = 900.0

# S3 (steps/store.py): every call is bounded by attempts x (connect + longest silence), plus a few seconds of
# back-off. An unreachable endpoint fails in seconds; one that accepts and never answers within about 6 minutes,
# then the step exits 2 and the workflow's retry takes over. 120 s of silence covers a large GET on a slow MinIO.
#: TCP connect timeout per S3 attempt.
S3_CONNECT_TIMEOUT_S = 5.0
#: Longest silence (no bytes) tolerated from S3 within one attempt.
S3_READ_TIMEOUT_S = 120.0
#: Attempts per S3 call (connection errors, timeouts and 5xx answers are tried again).
S3_ATTEMPTS = 3

# Kinds of expiry reported by StreamGuard.
FIRST_TOKEN, IDLE, LIMIT = "first-token", "idle", "limit"


class Deadline:
    """A point on the monotonic clock and its name in messages (``request deadline of 600 s``)."""

    def __init__(self, seconds: float, label: str, *, budget: bool = False) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.label = label
        self.is_budget = budget  # the summarize step's budget rather than one request's deadline

    def extend(self, seconds: float) -> None:
        """Move the deadline later (time spent waiting on a busy server is not the request's own time)."""
        self.at += seconds
        self.seconds += seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def left(self) -> str:
        """``request deadline of 600 s: 512.3 s left`` (for log lines)."""
        return f"{self.label}: {max(self.remaining(), 0.0):.1f} s left"

    def __repr__(self) -> str:
        return f"Deadline({self.label!r}, {self.remaining():.3f} s left)"


def earliest(*deadlines: Deadline | None) -> Deadline:
    """The deadline that binds first (at least one must be given)."""
    return min((d for d in deadlines if d is not None), key=lambda d: d.at)


class StreamGuard:
    """The deadlines of one streamed attempt (see the module docstring)."""

    def __init__(self, limit: Deadline, first_token_s: float, idle_s: float) -> None:
        self.started = time.monotonic()
        self.limit = limit
        self.first_token_s = first_token_s
        self.idle_s = idle_s
        self.first_token_at: float | None = None
        self.last_data = self.started
        self.keepalives = 0
        self.reads = 0
        self.responded = False  # response headers arrived
        self.fired: str | None = None  # set by the watchdog when it cut the connection
        self._wake = threading.Event()
        self._stopped = False

    # what the reader reports ---------------------------------------------------
    def data(self, line: str = "") -> None:
        """Bytes arrived (they keep the stream alive after the first token, never before it)."""
        self.last_data = time.monotonic()
        if line:
            self.reads += 1
            self.keepalives += line.startswith(":")

    def seen(self) -> str:
        """What arrived before the first token, for error messages."""
        if not self.responded:
            return "no response at all"
        if self.keepalives:
            return f"only {self.keepalives} keep-alive comment(s)" + (
                f" and {self.reads - self.keepalives} other line(s)" if self.reads > self.keepalives else "")
        return f"{self.reads} line(s) without content" if self.reads else "response headers, then nothing"

    def token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            self._wake.set()  # the watchdog now waits for the idle/limit deadline instead

    # deadlines -------------------------------------------------------------------
    def next_deadline(self) -> tuple[float, str]:
        """(monotonic time, kind) of the deadline that binds now."""
        if self.first_token_at is None:
            at, kind = self.started + self.first_token_s, FIRST_TOKEN
        else:
            at, kind = self.last_data + self.idle_s, IDLE
        return (at, kind) if at < self.limit.at else (self.limit.at, LIMIT)

    def expired(self) -> str | None:
        """The kind of deadline that has passed, if any."""
        if self.fired:
            return self.fired
        at, kind = self.next_deadline()
        return kind if time.monotonic() >= at else None

    def read_timeout(self) -> float:
        """httpx read timeout for the attempt: the time left until the first-token deadline."""
        at = min(self.started + self.first_token_s, self.limit.at)
        return max(at - time.monotonic(), 0.001)

    # watchdog ------------------------------------------------------------------------
    def watch(self, response: Any) -> None:
        """Start the watchdog on the response's socket (no-op when the transport exposes none)."""
        self.responded = True
        stream = getattr(response, "extensions", {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            threading.Thread(target=self._watch, args=(sock,), name="llm-deadline", daemon=True).start()

    def _watch(self, sock: socket.socket) -> None:
        while not self._stopped:
            at, kind = self.next_deadline()
            left = at - time.monotonic()
            if left <= 0:
                self.fired = kind
                try:  # wakes the blocked reader; the base-class call also works for TLS sockets
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._wake.wait(left)
            self._wake.clear()

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
