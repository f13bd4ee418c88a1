"""The one key layout of an output store. Every step reads and writes through these names.

```
report.json                                  the run report (the output contract)
transcripts/<stem>.{txt,srt,vtt,json}        whisper's own writers
summaries/<stem>.md                          LLM summary
.kubescribe/runs/<run-id>/plan.json          the shard plan (too big for an Argo parameter at 10k files)
.kubescribe/runs/<run-id>/transcribe/<n>.json  per-shard results
.kubescribe/runs/<run-id>/summarize.json     summarize results
.kubescribe/cache/{transcripts,summaries}/<sha256>.json   work-avoidance markers, keyed by content + options
.kubescribe/processed/<input key>.json       inputs that finished (both outputs), for scheduled "only new" runs
```
A marker is written only after every output it names, so "marker present and outputs present" means done.
"""

from __future__ import annotations

TRANSCRIPT_FORMATS = ("txt", "srt", "vtt", "json")
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


def transcripts(stem: str) -> dict[str, str]:
    return {fmt: transcript(stem, fmt) for fmt in TRANSCRIPT_FORMATS}


def summary(stem: str) -> str:
    return f"summaries/{stem}.md"


def transcript_marker(cache_key: str) -> str:
    return f"{_META}/cache/transcripts/{cache_key}.json"


def summary_marker(cache_key: str) -> str:
    return f"{_META}/cache/summaries/{cache_key}.json"


def processed(input_key: str) -> str:
    return f"{_META}/processed/{input_key}.json"
