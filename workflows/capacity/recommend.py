"""Candidate configurations for one backlog on one GPU inventory, their simulated outcome, the choice, and the
chart values that implement it.

Candidates: whole GPUs (with Kueue, and without a queue), every static MIG layout of one profile the model fits
in, and DAS with that profile; each at every shard size of ``PLAN_SHARD_SECONDS``. A kubescribe run asks for one
accelerator resource (the chart's ``whisper.accelerator``), so mixed layouts would leave their other profiles idle
and are not candidates; StrictFIFO and BestEffortFIFO behave the same when every pod asks for the same thing.

The choice: among candidates that meet the deadline, the fewest GPU-hours held (what the run takes away from
everyone else on a shared cluster), then the shortest makespan; when none meets it, the shortest makespan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.capacity import defaults as D
from workflows.capacity.calibration import Calibration, LLMProfile, family
from workflows.capacity.model import WHOLE, Inventory, MigLayout, QueueConfig, Slicing, WorkItem
from workflows.capacity.pipeline import RunConfig, RunResult, simulate_run, summarize_offsets

#: Host resources per Whisper pod, by model: the paper's DAS manifests (medium 2 CPU / 8 Gi, large 4 CPU / 12 Gi,
#: paper.md §2); smaller models take the chart's defaults.
POD_RESOURCES = {"large": ("4", 12), "turbo": ("4", 12), "medium": ("2", 8)}
DEFAULT_POD_RESOURCES = ("2", 8)


@dataclass
class Candidate:
    config: RunConfig
    result: RunResult
    units: int  # devices of the requested resource in the inventory

    @property
    def label(self) -> str:
        c = self.config
        what = "whole GPUs" if c.resource == WHOLE else f"{c.slicing.label()} ({c.resource})"
        if c.slicing.mode == "static":
            what = f"static MIG {len(c.slicing.mix)}x{c.resource}/GPU"
        return f"{what}, {c.queue.label()}, shards {int(c.shard_seconds)}s"


def uniform_mix(inventory: Inventory, profile: str) -> tuple[str, ...]:
    """As many instances of one profile as fit one GPU (the MIG table's placements)."""
    layout = MigLayout(inventory.gpu)
    p = inventory.gpu.profile(profile)
    while layout.place(p) is not None:
        pass
    return tuple(i.profile.name for i in layout.instances)


def candidates(model: str, inventory: Inventory, cal: Calibration, shard_seconds: tuple[float, ...],
               max_shards: int, batched: bool, concurrency: int) -> list[RunConfig]:
    fitting = [p.name for p in inventory.gpu.profiles if cal.fits(model, p.memory_gb) and p.compute < 7]
    kueue = QueueConfig(True, None, "BestEffortFIFO")
    shapes: list[tuple[str, Slicing, QueueConfig, int]] = []
    if cal.fits(model, inventory.gpu.memory_gb):
        shapes += [(WHOLE, Slicing("whole"), kueue, inventory.count),
                   (WHOLE, Slicing("whole"), QueueConfig(False), inventory.count)]
    for name in fitting:
        mix = uniform_mix(inventory, name)
        units = len(mix) * inventory.count
        shapes += [(name, Slicing("static", mix), kueue, units), (name, Slicing("das"), kueue, units)]
    return [RunConfig(model, res, sl, q, s, max_shards, units, batched, concurrency)
            for res, sl, q, units in shapes for s in shard_seconds]


def evaluate(files: list[WorkItem], model: str, inventory: Inventory, cal: Calibration, llm: LLMProfile, *,
             shard_seconds: tuple[float, ...] = D.PLAN_SHARD_SECONDS, max_shards: int = D.PLAN_MAX_SHARDS,
             batched: bool = D.PLAN_BATCHED, concurrency: int = D.PLAN_SUMMARIZE_CONCURRENCY) -> list[Candidate]:
    configs = candidates(model, inventory, cal, shard_seconds, max_shards, batched, concurrency)
    if not configs:
        raise ValueError(f"Whisper {model} ({cal.vram_gb.value[family(model)]} GB) fits no slice of "
                         f"{inventory.gpu.name}")
    summarize = summarize_offsets(files, configs[0], llm)  # the same for every candidate: it runs on the gateway
    return [Candidate(c, simulate_run(files, inventory, c, cal, llm, summarize), c.parallelism) for c in configs]


def choose(found: list[Candidate], deadline_s: float) -> tuple[Candidate, bool]:
    meeting = [c for c in found if c.result.makespan_s <= deadline_s]
    if meeting:
        return min(meeting, key=lambda c: (round(c.result.gpu_hours, 3), c.result.makespan_s)), True
    return min(found, key=lambda c: c.result.makespan_s), False


def chart_values(c: Candidate, deadline_s: float) -> dict[str, Any]:
    """Overrides of charts/kubescribe/values.yaml that run this configuration."""
    cfg = c.config
    cpu, mem_gi = POD_RESOURCES.get(family(cfg.model), DEFAULT_POD_RESOURCES)
    accelerator = "nvidia.com/gpu" if cfg.resource == WHOLE else f"nvidia.com/mig-{cfg.resource}"
    values: dict[str, Any] = {
        "pipeline": {"whisperModel": cfg.model, "shardSeconds": int(cfg.shard_seconds),
                     "maxShards": int(cfg.max_shards), "activeDeadlineSeconds": max(60, int(deadline_s))},
        "whisper": {"accelerator": accelerator, "parallelism": int(cfg.parallelism), "cpu": cpu,
                    "memory": f"{mem_gi}Gi"},
        # DAS renames nvidia.com/* to mig.das.com/* (quota follows) and forbids whole GPUs; static MIG is
        # the GPU operator's mig-manager, counted under its own name.
        "das": {"enabled": cfg.slicing.mode == "das"},
        "gateway": {"concurrency": int(cfg.summarize_concurrency)},
    }
    if not cfg.queue.enabled:
        values["kueue"] = {"enabled": False}
        return values
    pods = int(cfg.parallelism)
    values["kueue"] = {"enabled": True, "clusterQueue": {
        "queueingStrategy": cfg.queue.strategy,
        "preemption": {"withinClusterQueue": "LowerPriority" if cfg.queue.preemption else "Never"},
        "quota": {"accelerator": c.units, "cpu": str(pods * (int(cpu) + D.ARGO_POD_OVERHEAD[0])),
                  "memory": f"{pods * (mem_gi + D.ARGO_POD_OVERHEAD[1])}Gi"}}}
    return values


def row(c: Candidate, deadline_s: float) -> dict[str, Any]:
    r = c.result
    return {"configuration": c.label, "resource": c.config.resource, "slicing": c.config.slicing.mode,
            "queue": c.config.queue.label(), "shard_seconds": c.config.shard_seconds, "pods": r.pods,
            "parallelism": c.config.parallelism, "makespan_s": round(r.makespan_s, 1),
            "mean_done_s": round(r.mean_done_s, 1), "p95_done_s": round(r.p95_done_s, 1),
            "gpu_hours": round(r.gpu_hours, 3), "utilisation": round(r.utilisation, 3),
            "lower_bound_s": round(r.lower_bound_s, 1), "meets_deadline": r.makespan_s <= deadline_s}
