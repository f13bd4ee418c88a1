"""Structured progress events: how a step tells whoever watches it what it is doing.

A step appends one JSON object per line to the file named by ``$KUBESCRIBE_EVENTS`` (nothing is written when
the variable is unset, as in a cluster pod, where Argo's own node status is the progress). The local runner gives
every task its own file and ``kubescribe run`` reads them to draw progress and to print ``-o json``; processes
never learn progress by parsing each other's human-readable lines.

Every event carries ``v`` (the format version), ``t`` (unix time) and ``step`` (plan, transcribe, summarize,
report). The kinds, and what each adds:

* ``planned``: ``files`` (to transcribe this run), ``cached`` (already done, skipped), ``ignored`` (not audio),
  ``shards``, ``audio_s`` (total seconds planned).
* ``file_started``: ``input``, ``shard``, ``duration_s`` (null when unknown).
* ``file_progress``: ``input``, ``done_s`` (seconds of audio done), ``duration_s``.
* ``file_done``: ``input``, ``status`` (succeeded, failed, cached), ``error`` (one line, failed only),
  ``warnings`` (e.g. an English-only model asked for another language); from transcribe also ``shard`` and
  ``duration_s`` (as decoded). The plan step emits a failed ``file_done`` for each input it rejects (a broken
  link, an unreadable name), which never reaches transcribe.
* ``summary_started`` / ``summary_done``: ``input``; ``summary_done`` adds ``status`` (cached: an earlier
  run's summary), ``error`` and ``warnings`` (a summary cut at the output-token limit).
* ``report``: ``succeeded``, ``failed``, ``path`` (where report.json was written).

Writes are best effort: an unwritable events file never fails a step (a line is logged once).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("kubescribe.events")

#: The environment variable naming the events file.
EVENTS_ENV = "KUBESCRIBE_EVENTS"
VERSION = 1

Kind = Literal["planned", "file_started", "file_progress", "file_done", "summary_started", "summary_done", "report"]
Step = Literal["plan", "transcribe", "summarize", "report"]
FileStatus = Literal["succeeded", "failed", "cached"]


class Event(BaseModel):
    """One line of an events file. Fields not used by a kind stay None."""

    model_config = ConfigDict(extra="ignore")

    v: int = VERSION
    t: float
    step: Step
    event: Kind
    input: str | None = None
    shard: int | None = None
    status: FileStatus | None = None
    error: str | None = None
    warnings: list[str] = []
    duration_s: float | None = None
    done_s: float | None = None
    files: int | None = None
    cached: int | None = None
    ignored: int | None = None
    shards: int | None = None
    audio_s: float | None = None
    succeeded: int | None = None
    failed: int | None = None
    path: str | None = None


_lock = threading.Lock()
_broken: set[str] = set()


def emit(step: Step, event: Kind, **fields: Any) -> None:
    """Append one event to ``$KUBESCRIBE_EVENTS`` (no-op when unset). Thread-safe; one ``write`` per line, so
    lines from concurrent writers never interleave."""
    target = os.environ.get(EVENTS_ENV)
    if not target:
        return
    with _lock:
        try:
            # ASCII JSON: an input name that is not valid UTF-8 (kept as surrogate escapes) round-trips exactly
            line = json.dumps(Event(t=time.time(), step=step, event=event, **fields).model_dump(exclude_none=True),
                              ensure_ascii=True) + "\n"
            with open(target, "a", encoding="ascii") as f:
                f.write(line)
        except (OSError, ValueError) as e:
            if target not in _broken:
                _broken.add(target)
                log.warning("cannot write progress events to %s: %s", target, e)


def read_events(path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events appended to ``path`` since byte ``offset``, and the offset to read from next. A trailing partial
    line (a writer mid-write) is left for the next call; a line that is not a valid event is skipped."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        try:
            events.append(Event.model_validate(json.loads(raw)))
        except (ValueError, TypeError):
            continue
    return events, offset + end


def iter_events(path: Path) -> Iterator[Event]:
    """Every complete event in ``path``."""
    yield from read_events(path)[0]
