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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from steps import layout
from steps.audio import is_audio_name, probe_duration
from steps.store import Obj, Store

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
    ignored: list[str] = field(default_factory=list)
    already_processed: int = 0
    created: float = field(default_factory=time.time)
    version: int = 1

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


def output_stems(keys: list[str]) -> list[str]:
    """``a/b.wav`` → ``a/b``; when two inputs share a stem (``b.wav``, ``b.mp3``) both keep their extension."""
    stems = [str(PurePosixPath(k).with_suffix("")) for k in keys]
    clashes = {s for s, n in Counter(stems).items() if n > 1}
    return [k if s in clashes else s for k, s in zip(keys, stems, strict=True)]


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
    audio = [o for o in objects if is_audio_name(o.key)]
    ignored = [o.key for o in objects if not is_audio_name(o.key)]
    n_listed = len(audio)
    if only_new:
        if output_store is None:
            raise ValueError("only_new needs the output store")
        audio = [o for o in audio if not is_processed(output_store, o)]

    def probe(key: str) -> float | None:
        return probe_duration(input_store.media_url(key))

    with ThreadPoolExecutor(max_workers=max(1, probe_workers)) as pool:
        durations = list(pool.map(probe, [o.key for o in audio]))

    stems = output_stems([o.key for o in audio])
    files = [
        PlannedFile(index=i, input=o.key, stem=stem, size=o.size, duration_s=d, fingerprint=o.fingerprint)
        for i, (o, stem, d) in enumerate(zip(audio, stems, durations, strict=True))
    ]
    total = sum(f.weight for f in files)
    n = min(len(files), max(1, max_shards), max(1, math.ceil(total / max(shard_seconds, 1.0))))
    return Plan(
        run_id=run_id,
        input=input_store.url,
        output=output_url,
        files=files,
        shards=balance([f.weight for f in files], n) if files else [],
        ignored=ignored,
        already_processed=n_listed - len(audio),
    )


def is_processed(output_store: Store, obj: Obj) -> bool:
    """True when this exact input (same key, size and mtime/ETag) already finished in an earlier run."""
    key = layout.processed(obj.key)
    if not output_store.exists(key):
        return False
    entry = json.loads(output_store.read_text(key))
    return entry.get("fingerprint") == obj.fingerprint and all(output_store.exists(k) for k in entry.get("outputs", []))


def write_plan(plan: Plan, output_store: Store) -> list[str]:
    """Store the plan and return the Argo fan-out list: shard numbers as strings."""
    output_store.write_text(layout.plan(plan.run_id), plan.to_json(), "application/json")
    return [str(i) for i in range(len(plan.shards))]


def read_plan(output_store: Store, run_id: str) -> Plan:
    return Plan.from_json(output_store.read_text(layout.plan(run_id)))
