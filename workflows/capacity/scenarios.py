"""The paper's three setups (``../shared/docs/paper.md`` §4), and kubescribe's own design on the same backlog.

Everything the artifacts fix is taken from them: 16 medium + 16 large Jobs created one a second in the order
medium, large, medium, large ... (kube-burner, qps 1); 8 whole GPUs; ClusterQueue BestEffortFIFO with quota 8;
medium on ``mig-1g.5gb`` and large on ``mig-3g.20gb`` (A100-40GB) vs one whole GPU each; weights downloaded by
every pod into an emptyDir. What they do not fix is drawn or assumed and said so: the recordings' lengths
(Earnings-22 averages ~57 min a file: lognormal around that, one draw per seed), the GPU count of the DAS run
(8, as the Kueue run), the LLM replicas' GPU (A100-40GB, 2 replicas: the llm-d guide's default).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from workflows.capacity import defaults as D
from workflows.capacity.calibration import Calibration, Input, LLMProfile
from workflows.capacity.llm import Request, Router, percentile, pool_of, run_closed_loop
from workflows.capacity.model import WHOLE, Inventory, PodSpec, QueueConfig, Slicing, WorkItem, gpu_type
from workflows.capacity.sim import SimResult, file_seconds, lower_bound, simulate

A100 = gpu_type("A100-40GB")
#: Earnings-22: 119 h over 125 files (paper.md §3); the spread of lengths is an assumption.
EARNINGS_MEAN_S = 119 * 3600 / 125
EARNINGS_SIGMA = 0.35


def earnings_files(n: int, seed: int, tag: str) -> list[WorkItem]:
    rng = random.Random(f"{seed}-{tag}")
    median = EARNINGS_MEAN_S / math.exp(EARNINGS_SIGMA**2 / 2)  # lognormal with the dataset's mean
    return [WorkItem(f"{tag}-{i:02d}", round(rng.lognormvariate(math.log(median), EARNINGS_SIGMA), 1)) for i in range(n)]


def paper_jobs(iterations: int, seed: int, das: bool) -> list[PodSpec]:
    """One Job per file, medium then large per iteration; weights downloaded at start (no cache)."""
    medium, large = earnings_files(iterations, seed, "medium"), earnings_files(iterations, seed, "large")
    pods = []
    for i in range(iterations):
        pods.append(PodSpec(f"medium-{i:02d}", "medium", "1g.5gb" if das else WHOLE, [medium[i]]))
        pods.append(PodSpec(f"large-{i:02d}", "large-v3", "3g.20gb" if das else WHOLE, [large[i]]))
    return pods


def kueue_vs_no_queue(cal: Calibration, seed: int, gpus: int = 8, iterations: int = 16) -> dict:
    inv = Inventory(A100, gpus, D.GPUS_PER_NODE)
    pods = paper_jobs(iterations, seed, das=False)
    # The artifacts' later variant adds a WorkloadPriorityClass (value 10000, paper.md §4.1); which Jobs carried it
    # is not recorded. Given to the large Jobs, Kueue admits them first: longest-first order, which no-queue
    # kube-scheduler cannot do (it does not read Kueue's priority classes).
    ranked = [replace(p, priority=10000 if p.model != "medium" else 0) for p in pods]
    out = {}
    for label, queue, specs in (("no_queue", QueueConfig(False), pods),
                                ("kueue", QueueConfig(True, {WHOLE: gpus}, "BestEffortFIFO"), pods),
                                ("kueue_large_first", QueueConfig(True, {WHOLE: gpus}, "BestEffortFIFO"), ranked)):
        r = simulate(inv, Slicing("whole"), queue, cal, [replace(p) for p in specs], create_interval_s=1.0)
        out[label] = {"makespan_s": r.makespan, "mean_jct_s": r.mean_jct}
    # Without a queue, the pods moved back at a freed GPU tie in kube-scheduler's queue: oldest-first above is the
    # kindest reading; a shuffled tie-break shows what an arbitrary winner does to the makespan.
    r = simulate(inv, Slicing("whole"), QueueConfig(False), cal, [replace(p) for p in pods], create_interval_s=1.0,
                 shuffle_seed=seed)
    out["no_queue_shuffled"] = {"makespan_s": r.makespan, "mean_jct_s": r.mean_jct}
    out["makespan_change"] = out["kueue"]["makespan_s"] / out["no_queue"]["makespan_s"] - 1
    out["makespan_change_vs_shuffled"] = out["kueue"]["makespan_s"] / out["no_queue_shuffled"]["makespan_s"] - 1
    out["makespan_change_large_first"] = out["kueue_large_first"]["makespan_s"] / out["no_queue"]["makespan_s"] - 1
    return out


def das_vs_whole(cal: Calibration, seed: int, gpus: int = 8, iterations: int = 16) -> dict:
    inv = Inventory(A100, gpus, D.GPUS_PER_NODE)
    out = {}
    for label, das in (("whole", False), ("das", True)):
        r = simulate(inv, Slicing("das" if das else "whole"), QueueConfig(False), cal, paper_jobs(iterations, seed, das),
                     create_interval_s=1.0)
        out[label] = {"mean_jct_s": r.mean_jct, "makespan_s": r.makespan,
                      "peak_pods": _peak(r)}
    out["mean_jct_change"] = out["das"]["mean_jct_s"] / out["whole"]["mean_jct_s"] - 1
    out["makespan_change"] = out["das"]["makespan_s"] / out["whole"]["makespan_s"] - 1
    return out


def _peak(r: SimResult) -> int:
    events = sorted([(p.running, 1) for p in r.pods] + [(p.done, -1) for p in r.pods])
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def kubescribe_design(cal: Calibration, seed: int, gpus: int = 8, iterations: int = 16) -> list[dict]:
    """The same 32 recordings as two kubescribe runs (medium, large) through one ClusterQueue (quota = GPUs),
    adding one design choice at a time; each against its lower bound max(work / GPUs, longest file)."""
    inv = Inventory(A100, gpus, D.GPUS_PER_NODE)
    runs = {"medium": earnings_files(iterations, seed, "medium"), "large-v3": earnings_files(iterations, seed, "large")}
    queue = QueueConfig(True, {WHOLE: gpus}, "BestEffortFIFO")

    def one_per_file(cached: bool, batched: bool) -> list[PodSpec]:
        order = [(m, f) for pair in zip(*[[(m, f) for f in fs] for m, fs in runs.items()], strict=True) for m, f in pair]
        return [PodSpec(f"{m}-{f.name}", m, WHOLE, [f], batched=batched, cached_weights=cached) for m, f in order]

    def sharded(batched: bool) -> list[PodSpec]:
        from workflows.capacity.backlog import shards

        pods = []
        for m, fs in runs.items():  # as many shards per run as GPUs: Kueue backfills the shorter run's GPUs
            total = sum(f.audio_s for f in fs)
            for i, g in enumerate(shards(fs, math.ceil(total / gpus), D.PLAN_MAX_SHARDS)):
                pods.append(PodSpec(f"{m}-shard-{i}", m, WHOLE, g, batched=batched, cached_weights=True))
        return pods

    variants = [
        ("paper Jobs: a pod per file, weights downloaded per pod", one_per_file(False, False), False),
        ("+ weights baked into the image (model loaded from disk once per pod)", one_per_file(True, False), False),
        ("+ duration-balanced shards (LPT, shards = GPUs per run)", sharded(False), False),
        ("+ batched engine", sharded(True), True),
    ]
    rows = []
    for label, pods, batched in variants:
        r = simulate(inv, Slicing("whole"), queue, cal, pods, create_interval_s=0.0)
        seconds = [t for m, fs in runs.items() for t in file_seconds(fs, m, cal, 1.0, batched)]
        lb = max(sum(seconds) / gpus, max(seconds))  # all work over all GPUs, or the longest file
        rows.append({"design": label, "pods": len(pods), "makespan_s": r.makespan, "mean_file_done_s":
                     sum(r.file_done.values()) / len(r.file_done), "lower_bound_s": lb,
                     "over_lower_bound": r.makespan / lb - 1, "utilisation": r.utilisation})
    return rows


# --- routing ----------------------------------------------------------------------------------------------------


def paper_routing(profile: LLMProfile, seed: int = D.SEED, transcripts: int = 32, requests: int = 256,
                  replicas: int = 2, levels: tuple[int, ...] = (5, 10, 15, 20)) -> dict:
    """GuideLLM against 2 replicas: warm-up (256 requests, concurrency 25, 1 output token), then each level with
    256 requests of 512 output tokens cycling the transcripts (~10 k tokens each: paper.md §1.1), on the same pool."""
    rng = random.Random(seed)
    prompts = [(("guidellm-instruction", 12), (f"t{i}", int(rng.lognormvariate(math.log(10000), 0.25))))
               for i in range(transcripts)]
    out: dict[str, dict] = {}
    for policy in ("random", "round-robin", "prefix"):
        pool = pool_of(profile, replicas)
        router = Router(policy, pool, seed)
        warm = [Request(i, prompts[i % transcripts], 1) for i in range(requests)]
        now = run_closed_loop(pool, router, warm, 25)
        levels_out = {}
        for c in levels:
            reqs = [Request(i, prompts[i % transcripts], 512) for i in range(requests)]
            now = run_closed_loop(pool, router, reqs, c, now + 10) + 10
            ttfts = [r.ttft for r in reqs]
            levels_out[c] = {"ttft_mean_s": sum(ttfts) / len(ttfts), "ttft_p99_s": percentile(ttfts, 99),
                             "cached_share": sum(r.cached for r in reqs) / sum(r.tokens for r in reqs)}
        out[policy] = levels_out
    return out


def cpu_routing_check(profile: LLMProfile, bench: dict) -> dict:
    """The simulator on the CPU benchmark's own setup (bench/ttft_routing.py): its dataset's prompt sizes, fresh
    replicas per cell, a warm-up pass, ``rounds`` passes measured. Compared with what was measured."""
    sizes: dict[str, int] = {}
    partial: list[int] = []  # tokens reused from a slot that held ANOTHER prompt: the shared instruction block
    for cell in bench["cells"]:
        for row in cell["rows"]:
            if row.get("prompt_n") is not None and row.get("cache_n") is not None:
                total = row["prompt_n"] + row["cache_n"]
                sizes[row["name"]] = max(sizes.get(row["name"], 0), total)
                if 0 < row["cache_n"] < 0.9 * total:
                    partial.append(row["cache_n"])
    stable = min(partial) if partial else 0
    names = sorted(sizes)
    prompts = [(("kubescribe-instructions", stable), (n, sizes[n] - stable)) for n in names]
    out: dict[str, dict] = {}
    for policy in ("random", "prefix"):
        out[policy] = {}
        for c in (cell["concurrency"] for cell in bench["cells"] if cell["policy"] == policy):
            pool = pool_of(profile, 2)
            router = Router(policy, pool)
            now = run_closed_loop(pool, router, [Request(i, p, 1) for i, p in enumerate(prompts)], c)
            reqs = [Request(i, prompts[i % len(prompts)], bench["max_tokens"])
                    for i in range(bench["rounds"] * len(prompts))]
            run_closed_loop(pool, router, reqs, c, now)
            ttfts = [r.ttft for r in reqs]
            out[policy][c] = {"ttft_mean_s": sum(ttfts) / len(ttfts), "ttft_p99_s": percentile(ttfts, 99),
                              "cached_share": sum(r.cached for r in reqs) / sum(r.tokens for r in reqs)}
    return out


def with_share(cal: Calibration, scale: float) -> Calibration:
    """The calibration with every model's single-stream share multiplied by ``scale`` (capped at 1): the DAS
    effect's sensitivity to the one input it hinges on."""
    shares = {k: min(1.0, v * scale) for k, v in cal.single_stream_share.value.items()}
    return replace(cal, single_stream_share=Input(shares, f"{cal.single_stream_share.source} (x{scale:g})",
                                                  "assumption"))


__all__ = ["cpu_routing_check", "das_vs_whole", "kubescribe_design", "kueue_vs_no_queue", "lower_bound",
           "paper_routing", "with_share"]
