"""One summary request done right: the answer-format chain, validation, the degeneracy check and one stricter retry.

**Formats, best first.** ``json_schema`` sends the summary's JSON schema as the OpenAI ``response_format``
(llama.cpp and vLLM turn it into a decoding grammar: the answer *is* a summary object, and no field can run past
its limit); ``json_object`` asks for plain JSON mode; ``prose`` asks for text. A server that refuses a format
(HTTP 400/422/501 on the request) is asked again in the next one; the refusal is remembered for the rest of the
client's life only once a later format was accepted, so one file's bad request cannot downgrade the others.
A server that ignores ``response_format`` and answers prose has its answer taken as prose.

**Every answer is checked.** It must validate against the schema (pydantic, ``schema.py``) and must not be
degenerate (``checks.py``: a loop, an echo of the transcript, the wrong language, nothing). A rejected answer
is asked for once more with a stricter request: temperature at most 0.1, higher repetition penalties, tighter
field limits, no worked example (a small model that copied it once would again) and a reminder naming the
language. If that answer is rejected too, the caller gets no summary but the
reasons, and marks the file low-confidence: garbage is never presented as a summary.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from steps.llm.checks import LANGUAGE_NAMES, copies_example, degeneracy, ngrams, sentences, words
from steps.llm.client import LLMClient
from steps.llm.prompts import EXAMPLE_JSON, EXAMPLE_PROSE, EXAMPLE_TRANSCRIPT, build_messages, strip_reasoning
from steps.llm.schema import LIST_FIELDS, Limits, SchemaError, StructuredSummary, limits_for, parse, response_format
from steps.llm.wire import ChatResult, LLMError
from steps.sanitize import strip_control

#: The answer formats, best first (``LLMSettings.summary_format`` picks where the chain starts).
FORMATS = ("json_schema", "json_object", "prose")
#: HTTP statuses with which a server refuses a request field it does not support.
_REFUSED = (400, 422, 501)
_STRICT_LIMITS = 0.7
_looks_json = re.compile(r"^\s*(```|\{|\[)")


@dataclass
class Answer:
    """What one request (with its fallbacks and retry) produced. ``summary`` is None when every answer was
    rejected; ``problems`` lists why answers were rejected, the accepted one's retry included."""

    summary: StructuredSummary | None
    fmt: str
    problems: list[str] = field(default_factory=list)
    retried: bool = False
    answers: int = 0  # answers received (not counting refused requests)
    schema_failures: int = 0  # answers in a JSON format that did not validate against the schema
    truncated: bool = False  # the accepted answer was cut at the output-token limit (finish_reason "length")


class Stats:
    """Thread-safe list of the chat results of one summary (``(start time, result)``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results: list[tuple[float, ChatResult]] = []

    def add(self, started: float, result: ChatResult) -> None:
        with self._lock:
            self.results.append((started, result))


_memory_lock = threading.Lock()


def _refused_formats(client: LLMClient) -> set[str]:
    with _memory_lock:
        if not hasattr(client, "refused_formats"):
            client.refused_formats = set()  # type: ignore[attr-defined]
        return client.refused_formats  # type: ignore[attr-defined]


def chain(client: LLMClient) -> list[str]:
    """The formats still to try for this client, best first."""
    first = client.settings.summary_format
    start = 0 if first == "auto" else FORMATS.index(first)
    refused = _refused_formats(client)
    return [f for f in FORMATS[start:] if f not in refused] or ["prose"]


def _extra(client: LLMClient, fmt: str, limits: Limits, reduce: bool, strict: bool) -> dict[str, Any]:
    s = client.settings
    fp, pp, temperature = s.frequency_penalty, s.presence_penalty, s.temperature
    if strict:
        fp, pp, temperature = min(fp + 0.4, 2.0), min(pp + 0.3, 2.0), min(temperature, 0.1)
    extra: dict[str, Any] = {"temperature": temperature}
    if fp:
        extra["frequency_penalty"] = fp
    if pp:
        extra["presence_penalty"] = pp
    rf = response_format(fmt, limits, reduce)
    if rf is not None:
        extra["response_format"] = rf
    return extra


def _prose(text: str, cut: bool) -> StructuredSummary:
    """A prose answer as a summary; an answer cut by the token limit loses its unfinished last sentence."""
    text = " ".join(text.split())
    if cut:
        parts = sentences(text)
        if len(parts) > 1 and not re.search(r"[.!?。！？]$", parts[-1]):
            text = " ".join(parts[:-1])
    return StructuredSummary(summary=text)


def interpret(raw: str, fmt: str, limits: Limits, reduce: bool, cut: bool) -> tuple[StructuredSummary | None, str,
                                                                                      list[str]]:
    """(summary, the format the answer really is in, problems) for one raw answer."""
    if not raw.strip():
        return None, fmt, ["empty: the model returned no text"]
    if fmt == "prose":
        return _prose(raw, cut), "prose", []
    try:
        return parse(raw, limits, reduce), fmt, []
    except SchemaError as exc:
        if not _looks_json.match(raw):  # the server ignored response_format and answered prose
            return _prose(raw, cut), "prose", []
        why = "answer cut at the output-token limit" if cut else str(exc)
        return None, fmt, [f"schema: {why}"]


def _key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _repeats(text: str, seen: list[set[str]]) -> bool:
    """Most (80%) of ``text``'s words are in one statement already kept (a cut or reworded copy of it)."""
    mine = set(words(text))
    return bool(mine) and any(len(mine & other) >= 0.8 * len(mine) for other in seen)


def _dedupe(s: StructuredSummary) -> StructuredSummary:
    """Each statement once: a list item that repeats the summary or an earlier item (in any list but the
    action items, which keep their owner) is dropped.
    (A fact repeated across fields is redundancy, not a loop; the loop check has already run.)"""
    seen = [set(words(t)) for t in sentences(s.summary)]

    def once(values: list[str]) -> list[str]:
        out = []
        for v in values:
            if not _repeats(v, seen):
                seen.append(set(words(v)))
                out.append(v)
        return out

    data = s.model_dump()
    data["key_points"] = once(data["key_points"])
    data["decisions"] = once(data["decisions"])
    data["open_questions"] = once(data["open_questions"])
    tasks: set[str] = set()  # an action item keeps its owner even when a decision says the same
    data["action_items"] = [a for a in data["action_items"] if _key(a["task"]) not in tasks
                            and not tasks.add(_key(a["task"]))]
    return StructuredSummary.model_validate(data)


_EXAMPLE = f"{EXAMPLE_TRANSCRIPT} {EXAMPLE_JSON} {EXAMPLE_PROSE}"


def _without_example_copies(s: StructuredSummary, transcript: str) -> StructuredSummary:
    """List items that repeat the prompt's worked example (small models copy its items) are dropped; an owner
    taken from the example is unset. A title or summary that copies it is a rejected answer (``checks.py``)."""
    theirs = set(ngrams(words(_EXAMPLE), 3)) - set(ngrams(words(transcript), 3))
    names = {w for w in words(_EXAMPLE) if w[:1].isalpha()} - set(words(transcript))

    def copied(text: str) -> bool:
        return bool(set(ngrams(words(text), 3)) & theirs)

    data = s.model_dump()
    for name in LIST_FIELDS:
        data[name] = [v for v in data[name] if not copied(v)]
    data["action_items"] = [a | {"owner": None if a["owner"] and set(words(a["owner"])) <= names else a["owner"]}
                            for a in data["action_items"] if not copied(a["task"])]
    return StructuredSummary.model_validate(data)


def ask(client: LLMClient, text: str, mode: str, stats: Stats, *, check_against: str, language: str | None,
        reduce: bool = False) -> Answer:
    """One summary of ``text`` (``mode``: full, map or reduce), checked against ``check_against`` (the text
    an echo would repeat). Raises :class:`LLMError` only when every format failed on the wire."""
    settings = client.settings
    limits = limits_for(settings.max_output_tokens)
    formats = chain(client)
    problems: list[str] = []
    refused: list[str] = []
    answers = failures = 0
    fmt = formats[0]
    for strict in (False, True):
        if strict:
            limits = limits.scaled(_STRICT_LIMITS)
        while True:
            messages = build_messages(text, mode, fmt, strict=strict,
                                      language=LANGUAGE_NAMES.get(language or "") if strict else None)
            started = time.monotonic()
            try:
                result = client.chat(messages, extra=_extra(client, fmt, limits, reduce, strict))
            except LLMError as exc:
                if exc.status in _REFUSED and not exc.context_overflow and fmt != formats[-1]:
                    refused.append(fmt)
                    fmt = formats[formats.index(fmt) + 1]
                    continue
                raise
            break
        if refused:  # a later format was accepted: the earlier ones were refused for what they are
            _refused_formats(client).update(refused)
            refused = []
        stats.add(started, result)
        raw = strip_reasoning(strip_control(result.text))  # model output is untrusted (terminal escapes)
        summary, used, found = interpret(raw, fmt, limits, reduce, result.finish_reason == "length")
        answers += 1
        failures += any(p.startswith("schema:") for p in found)
        if summary is not None:
            lists = [(name, getattr(summary, name)) for name in LIST_FIELDS]
            lists.append(("action_items", [a.task for a in summary.action_items]))
            found = degeneracy(summary.texts(), check_against, language, lists)
            overview = [(p, t) for p, t in summary.texts() if p in ("title", "summary")]
            found += [] if reduce or not check_against else copies_example(overview, check_against, _EXAMPLE)
            summary = _dedupe(_without_example_copies(summary, check_against or text))
        if not found:
            return Answer(summary, used, problems, retried=strict, answers=answers, schema_failures=failures,
                          truncated=result.finish_reason == "length")
        problems += found
    return Answer(None, fmt, problems, retried=True, answers=answers, schema_failures=failures)
