"""Plan: list the audio under an input prefix, probe durations, and cut the work into balanced shards.

One pod handles one shard, so the Whisper model is loaded once per shard rather than once per file, and the
number of pods (Kueue Workloads, Argo nodes) stays bounded at 10,000 files. The plan itself lives in the store;
only the list of shard numbers travels as an Argo parameter, far below its 256 KB limit.
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from steps import layout
from steps.audio import is_audio_name, probe_duration
from steps.digests import file_sha256
from steps.store import LocalStore, Obj, ObjectError, Store

# Used only to estimate the duration of a file ffmpeg could not probe (it will most likely fail alone later).
_ASSUMED_BYTES_PER_SECOND = 16_000  # 128 kbit/s


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


def balance(weights: list[float], n_shards: int) -> list[list[int]]:
    """Longest-processing-time-first: each file, longest first, goes to the least-loaded shard.

    Within 4/3 of the optimal makespan, and what keeps the slowest pod (the workflow's tail) short.
    """
    heap = [(0.0, s) for s in range(n_shards)]
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, s = heapq.heappop(heap)
        shards[s].append(i)
        heapq.heappush(heap, (load + weights[i], s))
    return [sorted(s) for s in shards if s]


def make_plan(
    input_store: Store,
    output_url: str,
    run_id: str,
    shard_seconds: float = 1800.0,
    max_shards: int = 64,
    probe_workers: int = 8,
    only_new: bool = False,
    output_store: Store | None = None,
) -> Plan:
    objects = list(input_store.list())
    ignored, rejected, audio = [], [], []
    for o in objects:
        if o.problem and (not is_audio_name(o.key) or o.key.endswith("/") or "hidden" in o.problem):
            ignored.append({"input": o.key, "reason": o.problem})
        elif o.problem:
            rejected.append({"input": o.key, "reason": o.problem, "fingerprint": o.fingerprint})
        elif not is_audio_name(o.key):
            ignored.append({"input": o.key, "reason": "not an audio file name"})
        else:
            audio.append(o)
    n_listed = len(audio)
    if only_new:
        if output_store is None:
            raise ValueError("only_new needs the output store")
        audio = [o for o in audio if not is_processed(output_store, o)]
        rejected = [r for r in rejected
                    if not is_processed(output_store, Obj(r["input"], *_split_fingerprint(r["fingerprint"])))]

    def probe(key: str) -> float | None:
        return probe_duration(input_store.media_url(key))

    with ThreadPoolExecutor(max_workers=max(1, probe_workers)) as pool:
        durations = list(pool.map(probe, [o.key for o in audio]))

    stems = layout.output_names([o.key for o in audio])
    contents = content_groups(input_store, audio)
    files = [
        PlannedFile(index=i, input=o.key, stem=stem, size=o.size, duration_s=d, fingerprint=o.fingerprint,
                    content=contents.get(o.key, ""))
        for i, (o, stem, d) in enumerate(zip(audio, stems, durations, strict=True))
    ]
    # Inputs with the same bytes travel together, so the shard decodes them once and reuses the transcript.
    groups: dict[str, list[int]] = defaultdict(list)
    for f in files:
        groups[f.content or f"#{f.index}"].append(f.index)
    units = list(groups.values())
    weights = [files[u[0]].weight for u in units]
    total = sum(weights)
    n = min(len(units), max(1, max_shards), max(1, math.ceil(total / max(shard_seconds, 1.0))))
    shards = [sorted(i for u in shard for i in units[u]) for shard in balance(weights, n)] if units else []
    return Plan(
        run_id=run_id,
        input=input_store.url,
        output=output_url,
        files=files,
        shards=shards,
        ignored=ignored,
        rejected=rejected,
        already_processed=n_listed - len(audio),
    )


def content_groups(store: Store, objects: list[Obj]) -> dict[str, str]:
    """A content tag for each input whose size another input shares: its sha256 (local) or ETag (S3, where the
    ETag already is a digest of the bytes). Inputs of unique size get none: they cannot be duplicates."""
    by_size: dict[int, list[Obj]] = defaultdict(list)
    for o in objects:
        by_size[o.size].append(o)
    tags = {}
    for same in (g for g in by_size.values() if len(g) > 1):
        for o in same:
            if isinstance(store, LocalStore):
                try:
                    with store.local_copy(o.key) as path:
                        tags[o.key] = "sha256:" + file_sha256(path)
                except (ObjectError, OSError):
                    continue  # it will fail alone when the shard reaches it
            elif o.version:
                tags[o.key] = f"etag:{o.size}:{o.version}"
    return tags


def is_processed(output_store: Store, obj: Obj) -> bool:
    """True when this exact input (same key, size and mtime/ETag) already finished in an earlier run."""
    key = layout.processed(obj.key)
    if not output_store.exists(key):
        return False
    entry = json.loads(output_store.read_text(key))
    return entry.get("fingerprint") == obj.fingerprint and all(output_store.exists(k) for k in entry.get("outputs", []))


def _split_fingerprint(fingerprint: str) -> tuple[int, str]:
    size, _, version = fingerprint.partition(":")
    return int(size or 0), version


def write_plan(plan: Plan, output_store: Store) -> list[str]:
    """Store the plan and return the Argo fan-out list: shard numbers as strings."""
    output_store.write_text(layout.plan(plan.run_id), plan.to_json(), "application/json")
    return [str(i) for i in range(len(plan.shards))]


def read_plan(output_store: Store, run_id: str) -> Plan:
    return Plan.from_json(output_store.read_text(layout.plan(run_id)))
