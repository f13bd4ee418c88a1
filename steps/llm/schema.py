"""The structured summary: its fields, their limits, the JSON schema sent to the server, and validation.

A summary is one JSON object (README, "Summary JSON"): ``title``, ``summary``, ``key_points``, ``decisions``,
``action_items`` (``owner`` when one is named, ``task``) and ``open_questions``. The same limits are used twice:

* in the JSON schema sent as ``response_format`` (llama.cpp and vLLM compile ``maxLength``/``maxItems`` into the
  decoding grammar, so a field cannot run on: the per-field output limit), and
* in :func:`parse`, which validates every answer with pydantic, whatever mode produced it: a server in plain JSON
  mode, or one that ignored ``response_format``, is held to the same shape. Over-long strings and lists from such
  a server are cut to the limits rather than failing a usable answer; a wrong shape fails.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The fields of a summary, in the order they are asked for and rendered.
LIST_FIELDS = ("key_points", "decisions", "open_questions")
FIELDS = ("title", "summary", "key_points", "decisions", "action_items", "open_questions")


@dataclass(frozen=True)
class Limits:
    """Characters per string and items per list: the per-field output limits."""

    title: int
    summary: int
    item: int
    owner: int
    key_points: int
    decisions: int
    action_items: int
    open_questions: int

    def scaled(self, factor: float) -> Limits:
        """Tighter limits for the stricter retry (never below a usable minimum)."""
        return Limits(
            title=max(30, int(self.title * factor)), summary=max(120, int(self.summary * factor)),
            item=max(60, int(self.item * factor)), owner=self.owner,
            key_points=max(2, int(self.key_points * factor)), decisions=max(1, int(self.decisions * factor)),
            action_items=max(1, int(self.action_items * factor)),
            open_questions=max(1, int(self.open_questions * factor)),
        )


#: The limits of a request allowed 512 output tokens (most answers of this size fit; an answer cut by the token
#: limit is invalid JSON and is retried with tighter limits).
BASE_LIMITS = Limits(title=70, summary=320, item=110, owner=30, key_points=4, decisions=3, action_items=3,
                     open_questions=2)


def limits_for(max_output_tokens: int) -> Limits:
    """The per-field limits for a request allowed ``max_output_tokens``: :data:`BASE_LIMITS` scaled."""
    return BASE_LIMITS.scaled(max(0.5, min(2.0, max_output_tokens / 512)))


class ActionItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    owner: str | None = None
    task: str


class StructuredSummary(BaseModel):
    """One summary as the model returns it (validated), before grounding flags are added."""

    model_config = ConfigDict(extra="ignore")

    title: str = ""
    summary: str
    key_points: list[str] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)

    def texts(self) -> list[tuple[str, str]]:
        """Every text with its field path (``key_points[1]``, ``action_items[0].owner``...), in order."""
        out = [("title", self.title), ("summary", self.summary)]
        for name in ("key_points", "decisions"):
            out += [(f"{name}[{i}]", t) for i, t in enumerate(getattr(self, name))]
        for i, item in enumerate(self.action_items):
            if item.owner:
                out.append((f"action_items[{i}].owner", item.owner))
            out.append((f"action_items[{i}].task", item.task))
        out += [(f"open_questions[{i}]", t) for i, t in enumerate(self.open_questions)]
        return [(path, text) for path, text in out if text]

    def is_empty(self) -> bool:
        return not any(text.strip() for _, text in self.texts())


class PartialSummary(BaseModel):
    """What a reduce request asks for: the overall title and summary of the merged parts."""

    model_config = ConfigDict(extra="ignore")

    title: str = ""
    summary: str


def _string(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _list(items: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": max_items}


def json_schema(limits: Limits, reduce: bool = False) -> dict[str, Any]:
    """The JSON schema of a summary (``reduce``: only title and summary), with the per-field limits."""
    props: dict[str, Any] = {"title": _string(limits.title), "summary": _string(limits.summary)}
    if not reduce:
        action = {"type": "object", "properties": {"owner": {"anyOf": [_string(limits.owner), {"type": "null"}]},
                                                   "task": _string(limits.item)},
                  "required": ["owner", "task"], "additionalProperties": False}
        props |= {
            "key_points": _list(_string(limits.item), limits.key_points),
            "decisions": _list(_string(limits.item), limits.decisions),
            "action_items": _list(action, limits.action_items),
            "open_questions": _list(_string(limits.item), limits.open_questions),
        }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def response_format(mode: str, limits: Limits, reduce: bool = False) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` of a request mode: ``json_schema``, ``json_object`` or ``prose`` (none)."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "partial_summary" if reduce else "summary",
                                                       "strict": True, "schema": json_schema(limits, reduce)}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


class SchemaError(ValueError):
    """The answer is not a summary object (not JSON, or the wrong shape)."""


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


_ENUMERATION = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•]|[a-z][.)])\s+")
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)")


def _clip(text: str, n: int) -> str:
    """``text`` on one line within ``n`` characters. Text that reached the limit (the grammar cut it, or the
    server ignored the limit) ends at its last full sentence when that keeps most of it, else with "…"."""
    text = " ".join(text.split())
    if len(text) < n - 3:
        return text
    text = text[: n - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= n // 2:
        return text[: ends[-1]]
    if " " in text[n // 2:]:
        text = text.rsplit(" ", 1)[0]  # no half word
    return text.rstrip(" ,;:-") + "…"


def _wordy(text: str | None) -> bool:
    """Holds a word (not empty, not a copied "..." placeholder, not "null"/"none")."""
    return bool(text and re.search(r"\w", text) and text.strip().lower() not in ("null", "none", "n/a"))


def _item(text: str, n: int) -> str:
    return _clip(_ENUMERATION.sub("", text), n)


def parse(text: str, limits: Limits, reduce: bool = False) -> StructuredSummary:
    """Validate one answer against the schema; raises :class:`SchemaError` with the reason.

    Code fences around the object are tolerated (plain JSON mode often adds them); anything else that is not
    exactly one JSON object of the right shape is not a summary."""
    body = _FENCE.sub("", text.strip())
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise SchemaError(f"not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise SchemaError(f"not a JSON object but {type(data).__name__}")
    try:
        if reduce:
            part = PartialSummary.model_validate(data)
            result = StructuredSummary(title=part.title, summary=part.summary)
        else:
            result = StructuredSummary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "object"
        raise SchemaError(f"schema violation at {where}: {first['msg']}") from None
    return clip(result, limits)


def clip(s: StructuredSummary, limits: Limits) -> StructuredSummary:
    """``s`` within ``limits``: strings cut, lists shortened, empty entries dropped."""
    def items(values: list[str], n: int) -> list[str]:
        return [_item(v, limits.item) for v in values if _wordy(v)][:n]

    actions = [ActionItem(owner=_clip(a.owner, limits.owner) if _wordy(a.owner) else None,
                          task=_item(a.task, limits.item)) for a in s.action_items if _wordy(a.task)]
    return StructuredSummary(
        title=_clip(s.title, limits.title) if _wordy(s.title) else "",
        summary=_clip(s.summary, limits.summary) if _wordy(s.summary) else "",
        key_points=items(s.key_points, limits.key_points), decisions=items(s.decisions, limits.decisions),
        action_items=actions[: limits.action_items], open_questions=items(s.open_questions, limits.open_questions),
    )
