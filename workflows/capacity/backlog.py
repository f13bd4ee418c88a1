"""The backlog to plan for: recordings and their lengths, from a folder or S3 prefix (probed with the plan step's
own ffmpeg header probe) or synthetic (hours of audio with a length distribution), and kubescribe's shards of it
(the plan step's longest-first balancing, with its shard count rule)."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor

from steps.audio import is_audio_name, probe_duration
from steps.plan import balance
from workflows.capacity import defaults as D
from workflows.capacity.model import WorkItem

LENGTH_DISTS = ("lognormal", "uniform", "fixed")


def from_store(url: str, workers: int = 8) -> tuple[list[WorkItem], list[str]]:
    """Audio files under ``url`` (folder or s3://) with their probed lengths; and the names that could not be probed."""
    from steps.store import open_store

    store = open_store(url)
    keys = [o.key for o in store.list() if not o.problem and is_audio_name(o.key)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        durations = list(pool.map(lambda k: probe_duration(store.media_url(k)), keys))
    items = [WorkItem(k, d) for k, d in zip(keys, durations, strict=True) if d]
    return items, [k for k, d in zip(keys, durations, strict=True) if not d]


def synthetic(hours: float, dist: str = "lognormal", median_s: float = D.SYNTH_MEDIAN_S, seed: int = D.SEED
              ) -> list[WorkItem]:
    """Recordings adding up to ``hours`` of audio. ``lognormal`` (median ``median_s``, sigma SYNTH_SIGMA: meeting
    and call archives are heavy-tailed), ``uniform`` (0.2x to 1.8x the median) or ``fixed`` (all the median)."""
    if dist not in LENGTH_DISTS:
        raise ValueError(f"length distribution {dist!r}: one of {', '.join(LENGTH_DISTS)}")
    if hours <= 0 or median_s <= 0:
        raise ValueError("--hours and the median length must be positive")
    rng = random.Random(seed)
    total, items = hours * 3600, []
    while sum(i.audio_s for i in items) < total:
        if dist == "lognormal":
            d = rng.lognormvariate(math.log(median_s), D.SYNTH_SIGMA)
        elif dist == "uniform":
            d = rng.uniform(0.2 * median_s, 1.8 * median_s)
        else:
            d = median_s
        d = min(max(d, D.SYNTH_MIN_S), D.SYNTH_MAX_S, total - sum(i.audio_s for i in items))
        items.append(WorkItem(f"synthetic-{len(items):05d}", round(max(d, 1.0), 1)))
    return items


def shards(items: list[WorkItem], shard_seconds: float, max_shards: int) -> list[list[WorkItem]]:
    """kubescribe's plan: min(files, max_shards, ceil(audio / shard_seconds)) shards, balanced longest-first
    (``steps.plan.balance``, the plan step's own function)."""
    if not items:
        return []
    total = sum(i.audio_s for i in items)
    n = min(len(items), max(1, max_shards), max(1, math.ceil(total / max(shard_seconds, 1.0))))
    return [[items[i] for i in shard] for shard in balance([i.audio_s for i in items], n)]
