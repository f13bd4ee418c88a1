"""One kubescribe run on a cluster, end to end: Argo's DAG plan -> transcribe shards -> summarize -> report.

The transcribe fan-out is the cluster simulation (``sim.py``) with Argo's ``parallelism``; summarize starts when
the last shard ends (the DAG's fan-in) and sends every transcript, map-reduced when it exceeds the context, to
the LLM pool (``llm.py``) with the run's concurrency; report follows. A file is complete when its summary is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workflows.capacity import defaults as D
from workflows.capacity.backlog import shards as make_shards
from workflows.capacity.calibration import Calibration, LLMProfile
from workflows.capacity.llm import Request, Router, percentile, pool_of, run_closed_loop
from workflows.capacity.model import WHOLE, Inventory, PodSpec, QueueConfig, Slicing, WorkItem
from workflows.capacity.sim import SimResult, lower_bound, simulate

#: Tokens of kubescribe's stable prompt prefix (system message, instructions, worked example; steps/llm/prompts.py).
STABLE_PREFIX = "kubescribe-instructions"


@dataclass(frozen=True)
class RunConfig:
    model: str
    resource: str  # "gpu" or a MIG profile name
    slicing: Slicing
    queue: QueueConfig
    shard_seconds: float
    max_shards: int
    parallelism: int
    batched: bool = False
    summarize_concurrency: int = D.PLAN_SUMMARIZE_CONCURRENCY
    llm_replicas: int = D.PLAN_LLM_REPLICAS
    context_tokens: int = D.PLAN_CONTEXT_TOKENS
    max_output_tokens: int = D.PLAN_MAX_OUTPUT_TOKENS


@dataclass
class RunResult:
    config: RunConfig
    cluster: SimResult
    plan_s: float
    transcribe_end_s: float
    summarize_end_s: float
    makespan_s: float
    file_done: dict[str, float]  # summary written, seconds after submission
    lower_bound_s: float
    pods: int

    @property
    def mean_done_s(self) -> float:
        return sum(self.file_done.values()) / len(self.file_done)

    @property
    def p95_done_s(self) -> float:
        return percentile(list(self.file_done.values()), 95)

    @property
    def gpu_hours(self) -> float:
        return self.cluster.gpu_seconds_held / 3600

    @property
    def utilisation(self) -> float:
        """GPU share held by Whisper pods over the inventory during the transcribe stage."""
        span = self.transcribe_end_s - self.plan_s
        return self.cluster.gpu_seconds_held / (self.cluster.gpus * span) if span > 0 else 0.0


def summary_requests(files: list[WorkItem], cfg: RunConfig, stable_tokens: int) -> list[tuple[str, Request]]:
    """kubescribe's summarize requests per file: one, or map parts plus a reduce, as ``steps.llm.mapreduce`` cuts."""
    budget = cfg.context_tokens - stable_tokens - cfg.max_output_tokens
    out: list[tuple[str, Request]] = []
    for f in files:
        tokens = max(1, int(f.audio_s * D.TOKENS_PER_AUDIO_S))
        parts = max(1, math.ceil(tokens / max(budget, 64)))
        for p in range(parts):
            prompt = ((STABLE_PREFIX, stable_tokens), (f"{f.name}#{p}", math.ceil(tokens / parts)))
            out.append((f.name, Request(len(out), prompt, cfg.max_output_tokens, tag=f.name)))
        if parts > 1:  # the reduce request: part titles and summaries
            prompt = ((STABLE_PREFIX, stable_tokens), (f"{f.name}#reduce", parts * cfg.max_output_tokens // 2))
            out.append((f.name, Request(len(out), prompt, cfg.max_output_tokens, tag=f.name)))
    return out


def summarize_stage(files: list[WorkItem], cfg: RunConfig, llm: LLMProfile, start: float) -> tuple[float, dict[str, float]]:
    from steps.llm.prompts import overhead_tokens

    requests = summary_requests(files, cfg, overhead_tokens())
    pool = pool_of(llm, cfg.llm_replicas)
    end = run_closed_loop(pool, Router("prefix", pool), [r for _, r in requests], cfg.summarize_concurrency, start)
    done: dict[str, float] = {}
    for name, r in requests:
        done[name] = max(done.get(name, 0.0), r.done or end)
    return end, done


def pods_for(files: list[WorkItem], cfg: RunConfig, cal: Calibration) -> list[PodSpec]:
    groups = make_shards(files, cfg.shard_seconds, cfg.max_shards)
    return [PodSpec(f"shard-{i:04d}", cfg.model, cfg.resource, g, batched=cfg.batched, cached_weights=True)
            for i, g in enumerate(groups)]


def simulate_run(files: list[WorkItem], inventory: Inventory, cfg: RunConfig, cal: Calibration, llm: LLMProfile,
                 summarize: tuple[float, dict[str, float]] | None = None) -> RunResult:
    """``summarize``: (duration, per-file offsets) of the summarize stage when already known (it does not depend
    on the GPUs), else it is simulated here."""
    plan_s = cal_plan_s(files)
    pods = pods_for(files, cfg, cal)
    cluster = simulate(inventory, cfg.slicing, cfg.queue, cal, pods, parallelism=cfg.parallelism, start_s=plan_s)
    t_end = cluster.first_created + cluster.makespan
    if summarize is None:
        summarize = summarize_offsets(files, cfg, llm)
    duration, offsets = summarize
    done = {name: t_end + off for name, off in offsets.items()}
    end = t_end + duration + D.REPORT_S
    share = 1.0 if cfg.resource == WHOLE else inventory.gpu.profile(cfg.resource).share
    lb = plan_s + lower_bound(files, cfg.model, cal, cfg.parallelism, share, cfg.batched) + duration + D.REPORT_S
    return RunResult(cfg, cluster, plan_s, t_end, t_end + duration, end, done, lb, len(pods))


def summarize_offsets(files: list[WorkItem], cfg: RunConfig, llm: LLMProfile) -> tuple[float, dict[str, float]]:
    end, done = summarize_stage(files, cfg, llm, 0.0)
    return end, done



def cal_plan_s(files: list[WorkItem]) -> float:
    return D.PLAN_POD_S + D.PROBE_S * len(files) / D.PROBE_WORKERS
