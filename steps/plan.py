"""Plan: list the audio under an input prefix, probe durations, and cut the work into balanced shards.

One pod handles one shard, so the Whisper model is loaded once per shard rather than once per file, and the
number of pods (Kueue Workloads, Argo nodes) stays bounded at 10,000 files. The plan itself lives in the store
(``steps/runstate.py``); only the list of shard numbers travels as an Argo parameter, far below its 256 KB limit.

A run may plan a selection instead of the whole input prefix: when the run's state holds ``inputs.json``
(:func:`selection_key`, written by whoever starts the run, e.g. ``kubescribe run a.wav calls/``) it lists keys
relative to ``--input`` and folders (``calls/``) under it; only those are listed, and input names stay relative to
``--input`` as for a whole-prefix run.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from steps import layout
from steps.audio import is_audio_name, probe_duration
from steps.defaults import FILE_COST_S, MAX_SHARDS, SHARD_SECONDS
from steps.markers import input_sha256, is_processed
from steps.records import Plan, PlannedFile
from steps.store import LocalStore, Obj, ObjectError, Store


def selection_key(run_id: str) -> str:
    """Where a run's input selection is kept in the output store: ``{"include": ["a.wav", "calls/"]}``."""
    return f"{layout.run_prefix(run_id)}/inputs.json"


def read_selection(output_store: Store, run_id: str) -> list[str] | None:
    """The run's input selection, or None (plan the whole input prefix)."""
    import json

    if not output_store.exists(selection_key(run_id)):
        return None
    try:
        include = json.loads(output_store.read_text(selection_key(run_id)))["include"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{selection_key(run_id)} is not a valid input selection: {e}") from None
    return [str(k) for k in include]


def list_inputs(store: Store, include: list[str] | None = None) -> list[Obj]:
    """Every entry under the input prefix (``include`` None), or only the selected keys and folders, sorted by key.
    A selected key that does not exist is listed with a problem (it fails alone, named)."""
    if include is None:
        return list(store.list())
    found: dict[str, Obj] = {}
    folders: dict[str, dict[str, Obj]] = {}  # S3: one listing per parent prefix
    for entry in include:
        if entry.endswith("/") or entry == "":
            for o in store.list(entry.rstrip("/")):
                found.setdefault(o.key, o)
            continue
        if isinstance(store, LocalStore):
            o = store._entry(store.path(entry))
        else:
            parent = entry.rsplit("/", 1)[0] if "/" in entry else ""
            if parent not in folders:
                folders[parent] = {o.key: o for o in store.list(parent)}
            o = folders[parent].get(entry) or Obj(entry, 0, problem="no such object")
        found.setdefault(o.key, o)
    return sorted(found.values(), key=lambda o: o.key)


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
    shard_seconds: float = SHARD_SECONDS,
    max_shards: int = MAX_SHARDS,
    probe_workers: int = 8,
    only_new: bool = False,
    output_store: Store | None = None,
    include: list[str] | None = None,
) -> Plan:
    objects = list_inputs(input_store, include)
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
        audio = [o for o in audio if not is_processed(output_store, o.key, o.fingerprint)]
        rejected = [r for r in rejected if not is_processed(output_store, r["input"], r["fingerprint"])]

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
    weights = [files[u[0]].weight + FILE_COST_S * len(u) for u in units]  # audio + fixed work per file
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
                        tags[o.key] = "sha256:" + input_sha256(path)
                except ObjectError:
                    continue  # it will fail alone when the shard reaches it
            elif o.version:
                tags[o.key] = f"etag:{o.size}:{o.version}"
    return tags
