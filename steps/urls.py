"""Endpoint URLs: the one place that splits credentials out of them, redacts them, and completes an OpenAI base URL.

``http://user:secret@gateway/v1`` is convenient on a command line, but the URL ends up in process arguments,
workflow parameters, logs, ``summarize.json`` and ``report.json``. So every boundary that receives a URL from a
user calls :func:`split_credentials` and keeps only the credential-free URL; the credentials travel separately
(HTTP basic auth, through the environment). Anything that displays a URL that may still carry credentials goes
through :func:`redact_url`.

An OpenAI-compatible base URL ends in ``/v1`` (``http://gateway/v1``); users give it with or without.
:func:`openai_base_url` is the one rule that completes it, for the LLM client and for whatever probes the same
endpoint (``kubescribe doctor``).

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["BASIC_AUTH_ENV", "split_credentials", "redact_url", "parse_userinfo", "format_userinfo", "openai_base_url"]

#: Environment variable that carries ``user:password`` for the LLM endpoint (HTTP basic auth).
BASIC_AUTH_ENV = "LLM_BASIC_AUTH"

# scheme:// (optional) then the authority's userinfo, i.e. everything before the last "@" of the authority.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<userinfo>[^/?#]*)@(?=[^/?#@]*(?:[/?#]|$))")


def parse_userinfo(userinfo: str) -> tuple[str, str] | None:
    """``user:password`` (as found in a URL, percent-encoded or not) -> ``(user, password)``; empty -> None."""
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    return (user, password) if user or password else None


def format_userinfo(credentials: tuple[str, str]) -> str:
    """The inverse of :func:`parse_userinfo` for the environment (not percent-encoded)."""
    return f"{credentials[0]}:{credentials[1]}"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://u:p@host/v1`` -> ``("http://host/v1", ("u", "p"))``; a URL without userinfo is returned as is."""
    m = _USERINFO.match(url.strip())
    if not m:
        return url, None
    clean = (m.group("scheme") or "") + url.strip()[m.end():]
    return clean, parse_userinfo(m.group("userinfo"))


def redact_url(url: str) -> str:
    """The URL with any userinfo replaced by ``***`` (for display and storage)."""
    m = _USERINFO.match(url.strip())
    if not m:
        return url
    return (m.group("scheme") or "") + "***@" + url.strip()[m.end():]


def openai_base_url(url: str) -> str:
    """``http://gateway/`` or ``http://gateway/v1`` -> ``http://gateway/v1``: the base URL every OpenAI path
    (``/models``, ``/chat/completions``) is appended to."""
    base = url.strip().rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"
