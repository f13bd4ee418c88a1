"""How the cluster commands report problems: a :class:`ClusterError` (commands), a :class:`Check` (doctor), and a
failed connection in words (:func:`network_reason`); plus the one HTTP timeout of their API calls."""

from __future__ import annotations

import re
from dataclasses import dataclass

HTTP_TIMEOUT_S = 30.0


class ClusterError(Exception):
    """An expected failure: the message is one line that says what happened and what to do."""


@dataclass
class Check:
    """One ``kubescribe doctor`` result."""

    name: str
    state: str  # "pass" | "warn" (works now, may break; not a failure) | "fail" | "skip"
    detail: str
    fix: str | None = None


def network_reason(exc: Exception) -> str:
    """Why a connection failed, from the transport error's text (requests, urllib3, httpx and steps.llm alike)."""
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if re.search(r"Name or service not known|nodename nor servname|Failed to resolve|getaddrinfo", text):
        return "the host name does not resolve"
    if re.search(r"timed out|timeout", text, re.I):
        return "the connection timed out"
    return "the connection failed"
