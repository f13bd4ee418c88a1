"""The summary document: what ``summaries/<name>.json`` holds (README, "Summary JSON"), and its quality fields.

It is built from the accepted answer (or from none: a low-confidence document), with the grounding flags of
every value the transcript does not state, the highlights (sentences quoted verbatim from the transcript,
``highlights.py``; not the model's words, so never flagged), and how the answer was obtained: the answer format
the server accepted, whether a retry was needed, and why answers were rejected. Merging part summaries for map-reduce
(:func:`merge`) works on the structured parts: lists are interleaved part by part, so every part of a long
recording is represented, and duplicates are dropped.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

from itertools import chain as flatten
from itertools import zip_longest
from typing import Any

from steps.llm import grounding, highlights
from steps.llm.checks import detect_language, sentences
from steps.llm.schema import LIST_FIELDS, ActionItem, Limits, StructuredSummary

#: Version of the document's shape (README, "Summary JSON").
SCHEMA_VERSION = 1


def _interleave(lists: list[list[Any]], limit: int, key=lambda v: v) -> list[Any]:
    seen: set[str] = set()
    out = []
    for value in flatten.from_iterable(zip_longest(*lists)):
        if value is None:
            continue
        k = " ".join(str(key(value)).lower().split()).rstrip(".")
        if k not in seen:
            seen.add(k)
            out.append(value)
    return out[:limit]


def merge(parts: list[StructuredSummary], title: str, summary: str, limits: Limits) -> StructuredSummary:
    """One summary from part summaries: ``title``/``summary`` (from the reduce request) and the parts' lists,
    interleaved part by part, without duplicates, within ``limits``."""
    data: dict[str, Any] = {"title": title, "summary": summary}
    for name in LIST_FIELDS:
        data[name] = _interleave([getattr(p, name) for p in parts], getattr(limits, name))
    data["action_items"] = _interleave([p.action_items for p in parts], limits.action_items, key=lambda a: a.task)
    return StructuredSummary(**data)


def fallback_overview(parts: list[StructuredSummary], limits: Limits) -> tuple[str, str]:
    """Title and summary made without the model (the reduce answer was rejected): the first part's title, and
    the first sentence of each part's summary."""
    title = next((p.title for p in parts if p.title), "")
    firsts = [sentences(p.summary)[0] for p in parts if sentences(p.summary)]
    text = ""
    for s in firsts:
        if len(text) + len(s) + 1 > limits.summary:
            break
        text = f"{text} {s}".strip()
    return title, text


def build(summary: StructuredSummary | None, *, transcript: str, fmt: str, problems: list[str], retried: bool,
          language: str | None = None, truncated: bool = False) -> dict[str, Any]:
    """The document for one transcript. ``summary`` None: every answer was rejected (low confidence).
    ``truncated``: an answer it was made from was cut at the output-token limit (``finish_reason`` "length"),
    so it may be incomplete; the markdown says so."""
    language = language or detect_language(transcript)
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    base = summary or StructuredSummary(summary="")
    doc |= base.model_dump()
    doc["action_items"] = [ActionItem.model_validate(a).model_dump() for a in doc["action_items"]]
    flags: list[grounding.Flag] = []
    checked = 0
    if summary is not None:
        flags, checked = grounding.check(summary.texts(), grounding.Transcript(transcript, language))
    # Quoted, not generated, and chosen to add what the shown summary lacks. Also when every answer was rejected:
    # the model failed there, not the transcript, and its own sentences are still the safest summary of it.
    flagged = {f.field for f in flags}
    shown = " ".join(t for p, t in (summary.texts() if summary else []) if p not in flagged)
    doc["highlights"] = highlights.pick(transcript, shown)
    doc |= {
        "confidence": "high" if summary is not None else "low",
        "format": fmt,
        "language": language,
        "retried": retried,
        "problems": problems,
        "facts_checked": checked,
        "ungrounded": [f.to_dict() for f in flags],
        "truncated": truncated,
    }
    return doc


def quality(doc: dict[str, Any]) -> dict[str, Any]:
    """The per-file quality fields the report carries (``report.json`` ``files[].summary``)."""
    flags = doc.get("ungrounded") or []
    return {
        "format": doc.get("format"),
        "confidence": doc.get("confidence"),
        "retried": doc.get("retried", False),
        "problems": len(doc.get("problems") or []),
        "facts_checked": doc.get("facts_checked", 0),
        "ungrounded": sum(f["kind"] not in ("unsupported", "instruction") for f in flags),
        "unsupported": sum(f["kind"] == "unsupported" for f in flags),
        "instructions": sum(f["kind"] == "instruction" for f in flags),
        "truncated": bool(doc.get("truncated")),
    }


def not_summarized(transcript: str, reason: str) -> dict[str, Any]:
    """The low-confidence document of a transcript too unreliable to summarize (``reason``: why, e.g. the
    transcribe step's warning that an English-only model did not understand the speech); no model call."""
    # nothing of an unreliable transcript is quoted either: its sentences are the guesswork
    doc = build(None, transcript=transcript, fmt="none", problems=[f"transcript: {reason}"], retried=False)
    return doc | {"highlights": []}


def no_speech(text: str) -> dict[str, Any]:
    """The document of an empty transcript (no model call)."""
    doc = build(StructuredSummary(summary=text), transcript=text, fmt="none", problems=[], retried=False)
    return doc | {"facts_checked": 0, "ungrounded": []}
