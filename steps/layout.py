"""The one key layout of an output store. Every step reads and writes through these names.

```
report.json                                  the run report (the output contract)
transcripts/<stem>.{txt,srt,vtt,json}        whisper's own writers (--output-format; tsv too)
summaries/<stem>.{json,md}                   LLM summary: structured (README "Summary JSON") and rendered
.kubescribe/runs/<run-id>/plan.json          the shard plan (too big for an Argo parameter at 10k files)
.kubescribe/runs/<run-id>/transcribe/<n>.json  per-shard results
.kubescribe/runs/<run-id>/summarize.json     summarize results
.kubescribe/cache/{transcripts,summaries}/<sha256>.json   work-avoidance markers, keyed by content + options
.kubescribe/processed/<input key>.json       inputs that finished (both outputs), for scheduled "only new" runs
```
A marker is written only after every output it names, so "marker present and outputs present" means done.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import PurePosixPath

TRANSCRIPT_FORMATS = ("txt", "srt", "vtt", "json")  # written by default; report.json always has these keys
#: Every transcript format whisper writes (``--output-format all``); tsv only when asked for.
WHISPER_FORMATS = ("txt", "srt", "vtt", "tsv", "json")
SUMMARY_FORMATS = ("md", "json")
# Longest name component we write: below NAME_MAX (255 bytes) with room for ".json" and the ".<name>.XXXX.tmp"
# of an atomic write.
_MAX_COMPONENT_BYTES = 180
REPORT = "report.json"
_META = ".kubescribe"


def run_prefix(run_id: str) -> str:
    return f"{_META}/runs/{run_id}"


def plan(run_id: str) -> str:
    return f"{run_prefix(run_id)}/plan.json"


def shard_result(run_id: str, shard: int) -> str:
    return f"{run_prefix(run_id)}/transcribe/{shard:05d}.json"


def summarize_result(run_id: str) -> str:
    return f"{run_prefix(run_id)}/summarize.json"


def run_report(run_id: str) -> str:
    return f"{run_prefix(run_id)}/report.json"


def transcript(stem: str, fmt: str) -> str:
    return f"transcripts/{stem}.{fmt}"


def transcripts(stem: str, formats: tuple[str, ...] = TRANSCRIPT_FORMATS) -> dict[str, str]:
    return {fmt: transcript(stem, fmt) for fmt in formats}


def summary(stem: str) -> str:
    return f"summaries/{stem}.md"


def summary_json(stem: str) -> str:
    return f"summaries/{stem}.json"


def transcript_marker(cache_key: str) -> str:
    return f"{_META}/cache/transcripts/{cache_key}.json"


def summary_marker(cache_key: str) -> str:
    return f"{_META}/cache/summaries/{cache_key}.json"


def processed(input_key: str) -> str:
    return f"{_META}/processed/{input_key}.json"


def _tag(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _shorten(name: str, key: str) -> str:
    parts = name.split("/")
    for i, part in enumerate(parts):
        if len(part.encode()) > _MAX_COMPONENT_BYTES:
            parts[i] = part.encode()[: _MAX_COMPONENT_BYTES - 9].decode("utf-8", "ignore") + "~" + _tag(key)
    return "/".join(parts)


def _clashes(names: list[str]) -> set[int]:
    """Indices whose output paths would collide with another input's, on case-insensitive stores too: the same
    name, or a name whose ``<name>.txt`` (etc.) is a folder another name's outputs live in."""
    folded = [n.casefold() for n in names]
    counts = Counter(folded)
    folders = {str(parent) for n in folded for parent in PurePosixPath(n).parents if str(parent) != "."}
    suffixes = [f".{ext}" for ext in (*WHISPER_FORMATS, *SUMMARY_FORMATS)]
    return {i for i, n in enumerate(folded) if counts[n] > 1 or any(n + s in folders for s in suffixes)}


def output_names(keys: list[str]) -> list[str]:
    """The output name (``transcripts/<name>.txt`` ...) of each input key; unique by construction.

    ``calls/a.wav`` → ``calls/a``. Inputs whose names would collide keep their extension (``a.wav``, ``a.mp3``),
    and any collision left after that (``a.mp3`` next to ``a.mp3.wav``; ``A.wav`` next to ``a.wav`` on a
    case-insensitive disk) gets a tag derived from the key. Over-long components are shortened the same way.
    """
    names = [_shorten(str(PurePosixPath(k).with_suffix("")) if PurePosixPath(k).suffix else k, k) for k in keys]
    kept_extension: set[int] = set()
    while clash := _clashes(names) - kept_extension:
        for i in clash:
            names[i] = _shorten(keys[i], keys[i])
            kept_extension.add(i)
    while clash := _clashes(names):
        for i in clash:
            names[i] = f"{names[i]}~{_tag(keys[i])}"
    return names
