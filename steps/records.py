"""The records that cross step boundaries, and their JSON form: the ground every step stands on.

```
plan       ──► Plan (PlannedFile per input)                      read by transcribe, summarize, report
transcribe ──► ShardResult (FileResult per input)                read by summarize, report
summarize  ──► SummarizeResult (SummaryRecord per input)         read by report
report     ──► RunReport (ReportEntry per input)                 report.json: the output contract
```
The steps never import one another: each reads what an earlier step wrote through these classes (stored by
``steps/runstate.py``). :func:`transcripts_by_input` is the one rule that turns shard results into a result per
input, whatever happened to the shards; summarize and report both read transcripts through it.

No I/O here, and nothing heavier than the standard library: the CPU steps image imports it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

# Used only to estimate the duration of a file ffmpeg could not probe (it will most likely fail alone later).
_ASSUMED_BYTES_PER_SECOND = 16_000  # 128 kbit/s


class Status(str, Enum):
    """The outcome of one input in one step. A ``str``, so the JSON form is the plain word."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # summarize: there was no transcript to summarize

    def __str__(self) -> str:
        return self.value


# --- plan ---------------------------------------------------------------------------------------------------------


@dataclass
class PlannedFile:
    index: int
    input: str  # key relative to the input prefix (the report's "input")
    stem: str  # output name without extension, unique in the run
    size: int
    duration_s: float | None
    fingerprint: str = ""
    content: str = ""  # same value for inputs with the same bytes (they share a shard and one decode)

    @property
    def weight(self) -> float:
        return self.duration_s if self.duration_s is not None else self.size / _ASSUMED_BYTES_PER_SECOND


@dataclass
class Plan:
    run_id: str
    input: str
    output: str
    files: list[PlannedFile]
    shards: list[list[int]]
    # Listed entries that are not inputs, with why: {"input": key, "reason": ...}. Nothing is skipped silently.
    ignored: list[dict[str, str]] = field(default_factory=list)
    # Entries with an audio name that cannot be read (broken link, pipe, vanished...): failed inputs.
    rejected: list[dict[str, str]] = field(default_factory=list)
    already_processed: int = 0
    created: float = field(default_factory=time.time)
    version: int = 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        d["files"] = [PlannedFile(**f) for f in d["files"]]
        return cls(**d)

    def shard_files(self, shard: int) -> list[PlannedFile]:
        if not 0 <= shard < len(self.shards):
            raise ValueError(f"shard {shard} does not exist: the plan has {len(self.shards)} shard(s)")
        return [self.files[i] for i in self.shards[shard]]


# --- transcribe ---------------------------------------------------------------------------------------------------


@dataclass
class FileResult:
    input: str
    stem: str
    status: Status  # succeeded | failed
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    duration_s: float | None = None
    speech_s: float | None = None
    # Seconds of the recording its speech segmenter handed to the model (None: not segmented, or an older
    # marker). With an empty transcript it tells "silence" from "sound the model heard no words in".
    sound_s: float | None = None
    language: str | None = None
    seconds: float | None = None  # wall time spent decoding + transcribing
    rtf: float | None = None  # seconds / duration_s
    cached: bool = False
    bad_input: bool = False  # the file itself is not usable audio: retrying the same bytes cannot help
    digests: dict[str, str] = field(default_factory=dict)  # sha256 of each output as written: proof of ownership
    # What the user should know about this transcript (an English-only model asked for another language, speech
    # it did not understand...): carried to the report and the file_done event.
    warnings: list[str] = field(default_factory=list)
    # Set (to the warning that says why) when the transcript is not to be trusted as speech understood: an
    # English-only model on another language. The summarize step reads this field, never the warning's wording.
    unreliable: str | None = None

    def __post_init__(self) -> None:
        self.status = Status(self.status)


@dataclass
class ShardResult:
    run_id: str
    shard: int
    model: str
    model_id: str
    device: str
    files: list[FileResult]
    model_load_s: float | None = None
    seconds: float = 0.0
    complete: bool = True  # False while the shard runs: ``files`` holds those finished so far
    current: str | None = None  # the input being transcribed when this was written

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        d = json.loads(text)
        d["files"] = [FileResult(**f) for f in d["files"]]
        return cls(**d)


def transcripts_by_input(plan: Plan, shard_results: dict[int, ShardResult | None]) -> dict[str, FileResult]:
    """Each planned input's transcription result; inputs of shards that never reported, or stopped before
    finishing them, are failed with a message that says which of the two happened."""
    out: dict[str, FileResult] = {}
    for shard, result in shard_results.items():
        if result is not None:
            out.update({r.input: r for r in result.files})
        if result is not None and result.complete:
            continue
        for f in plan.shard_files(shard):
            if f.input in out:
                continue
            if result is None:
                why = f"shard {shard} did not start or never reported (see the transcribe step's logs)"
            elif result.current == f.input:
                why = f"shard {shard} stopped while transcribing this file (its pod was killed or crashed: out of memory?)"
            else:
                why = f"shard {shard} stopped before reaching this file (while on {result.current})"
            out[f.input] = FileResult(input=f.input, stem=f.stem, status=Status.FAILED, duration_s=f.duration_s,
                                      error=f"{f.input}: {why}")
    return out


# --- summarize ----------------------------------------------------------------------------------------------------

#: The warning of a summary whose answer was cut at the output-token limit (``finish_reason`` "length"): in the
#: summary_done event and the file's ``warnings`` in report.json (its JSON has ``truncated``, its markdown a note).
SUMMARY_TRUNCATED = "summary cut at the output-token limit: it may be incomplete (raise --max-output-tokens)"


def summary_warnings(metrics: dict[str, Any] | None) -> list[str]:
    """The warnings of one summary record, from its metrics."""
    return [SUMMARY_TRUNCATED] if (metrics or {}).get("truncated") else []


@dataclass
class SummaryRecord:
    """What the summarize step records per input."""

    input: str
    status: Status
    error: str | None = None
    output: str | None = None  # the rendered summary (markdown)
    cached: bool = False
    metrics: dict[str, Any] | None = None  # timings, tokens and the quality fields (answer format, confidence...)
    digest: str | None = None  # sha256 of the markdown as written
    json_output: str | None = None  # the structured summary (README, "Summary JSON")
    json_digest: str | None = None  # sha256 of the JSON as written

    def __post_init__(self) -> None:
        self.status = Status(self.status)


@dataclass
class SummarizeResult:
    """The summarize step's result: one record per planned input, in plan order, and the endpoint it used."""

    files: list[SummaryRecord]
    url: str | None = None  # credentials already redacted
    model: str | None = None
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "model": self.model, "seconds": self.seconds,
                           "files": [asdict(r) for r in self.files]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> SummarizeResult:
        d = json.loads(text)
        d["files"] = [SummaryRecord(**r) for r in d["files"]]
        return cls(**d)


# --- report -------------------------------------------------------------------------------------------------------


@dataclass
class ReportEntry:
    """One input in ``report.json`` (README, "Output contract")."""

    input: str
    status: Status  # succeeded | failed
    error: str | None
    outputs: dict[str, str | None]  # transcript formats and "summary"; None where there is none
    duration_s: float | None
    size_bytes: int | None
    language: str | None
    transcribe: dict[str, Any] | None
    summary: dict[str, Any] | None
    bad_input: bool
    warnings: list[str] = field(default_factory=list)  # transcription and summary warnings (never failures)
    run_id: str = ""  # the run that produced this entry (report.json at the output root merges many runs)


@dataclass
class RunReport:
    """``report.json``: every planned or rejected input exactly once, totals, and the models used."""

    kubescribe_version: str
    run_id: str
    input: str
    output: str
    created: float
    finished: float
    model: dict[str, Any]
    totals: dict[str, Any]
    files: list[ReportEntry]
    ignored: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"
