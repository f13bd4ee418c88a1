"""Argo's duration strings (``timeout``, ``retryStrategy.backoff.duration/cap/maxDuration``): the one parser.

Upstream (argo-workflows v4.1.2) ``pkg/apis/workflow/v1alpha1/utils.go`` ``ParseStringToDuration``: a string
that ``strconv.Atoi`` accepts is whole seconds (``"30"``, ``"+5"``), anything else must be Go's
``time.ParseDuration`` syntax: an optional sign, then one or more ``<number><unit>`` with units ``ns``, ``us``,
``µs``, ``μs``, ``ms``, ``s``, ``m``, ``h`` (``"1m30s"``, ``"1.5h"``, ``".5s"``); ``"0"`` needs no unit. So
``"1.5"`` (no unit) and ``"1d"`` are invalid, as they are on a cluster.

``durationpy`` (on PyPI, installed here through ``kubernetes``) was considered and not used: it also accepts
``d``, ``w``, ``mm`` and ``y``, so a local run would accept a workflow that Argo rejects.
"""

from __future__ import annotations

import re
from typing import Any

from .model import WorkflowError

__all__ = ["parse_duration"]

_ATOI = re.compile(r"[+-]?[0-9]+")
# One component of time.ParseDuration: digits, optional fraction, then a unit (letters up to the next digit or dot).
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, what: str = "duration") -> float:
    """Seconds from an Argo duration; ``value`` may also be a plain int (YAML ``timeout: 30``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise WorkflowError(f"{what}: invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not value.is_integer():
            raise WorkflowError(f"{what}: invalid duration {value!r} (use Go syntax like '1.5s')")
        return float(value)
    text = value
    if _ATOI.fullmatch(text):
        return float(int(text))
    seconds = _go_duration(text)
    if seconds is None:
        raise WorkflowError(f"{what}: invalid duration {value!r} (use seconds or Go syntax like '10s', '2m', '1h30m')")
    return seconds


def _go_duration(text: str) -> float | None:
    """Go's time.ParseDuration, in seconds; None where Go returns an error."""
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        return None
    total, pos = 0.0, 0
    while pos < len(text):
        m = _COMPONENT.match(text, pos)
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if (not whole and not frac) or unit not in _UNITS:
            return None
        total += float(f"{whole or '0'}.{frac or '0'}") * _UNITS[unit]
        pos = m.end()
    return sign * total
