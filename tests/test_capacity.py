"""The capacity model (workflows/capacity/): its invariants on cases small enough to solve by hand, and
``kubescribe capacity`` through the real CLI (values that render and validate with the chart, a real PNG).

No timing is asserted: every number compared is the simulator's own, in simulated seconds.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.support import FIXTURES, ROOT
from workflows.capacity import defaults as D
from workflows.capacity.calibration import Input, LLMProfile, load
from workflows.capacity.kueue import ClusterQueue, Workload
from workflows.capacity.llm import Request, Router, pool_of, run_closed_loop
from workflows.capacity.model import GPU_TYPES, WHOLE, Inventory, MigLayout, Placed, PodSpec, QueueConfig, Slicing, WorkItem
from workflows.capacity.sim import _finish_times, lower_bound, simulate

pytestmark = pytest.mark.e2e

A100 = GPU_TYPES["A100-40GB"]


@pytest.fixture(scope="module")
def cal():
    """The real calibration with every fixed cost set to zero: makespans are sums of work, solvable by hand."""
    zero = Input(0.0, "test", "assumption")
    return replace(load(), process_start_s=zero, image_gb=zero, das_create_s=zero, das_delete_s=zero)


def inv(n: int, gpu: str = "A100-40GB") -> Inventory:
    return Inventory(GPU_TYPES[gpu], n, 8)


def job(name: str, audio_s: float, model: str = "medium", resource: str = WHOLE, **kw) -> PodSpec:
    return PodSpec(name, model, resource, [WorkItem(f"{name}.wav", audio_s)], cached_weights=True, **kw)


def work(cal, model: str, audio_s: float, share: float = 1.0) -> float:
    return audio_s * cal.rtf(model) / cal.speed(model, share, False)


# --- hand-solvable cases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("queue", [QueueConfig(False), QueueConfig(True)], ids=["no-queue", "kueue"])
def test_one_gpu_two_jobs_makespan_is_the_sum(cal, queue, monkeypatch):
    monkeypatch.setattr(D, "KUEUE_ADMISSION_S", 0.0)
    r = simulate(inv(1), Slicing("whole"), queue, cal, [job("a", 600), job("b", 1200)])
    assert r.makespan == pytest.approx(work(cal, "medium", 600) + work(cal, "medium", 1200))
    first, second = sorted(r.pods, key=lambda p: p.done)
    assert second.bound == pytest.approx(first.done)  # the second waits for the first, then binds at once


def test_quota_one_serialises(cal):
    jobs = [job(f"j{i}", 300 * (i + 1)) for i in range(3)]
    r = simulate(inv(4), Slicing("whole"), QueueConfig(True, {WHOLE: 1}), cal, jobs)
    spans = sorted((p.running, p.done) for p in r.pods)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))  # never two at once, though 4 GPUs are free
    total = sum(work(cal, "medium", 300 * (i + 1)) for i in range(3))
    assert r.makespan == pytest.approx(total + 3 * D.KUEUE_ADMISSION_S)  # each admission waits one gate removal


def test_no_queue_with_enough_gpus_equals_queue(cal, monkeypatch):
    monkeypatch.setattr(D, "KUEUE_ADMISSION_S", 0.0)
    jobs = [job(f"j{i}", 200 + 100 * i, "large-v3" if i % 2 else "medium") for i in range(6)]
    a = simulate(inv(8), Slicing("whole"), QueueConfig(False), cal, jobs, create_interval_s=1.0)
    b = simulate(inv(8), Slicing("whole"), QueueConfig(True), cal, jobs, create_interval_s=1.0)
    assert a.makespan == pytest.approx(b.makespan)
    assert [p.done for p in a.pods] == pytest.approx([p.done for p in b.pods])


def test_batched_shares_the_device_and_shortest_finishes_first():
    items = [WorkItem("long", 30), WorkItem("short", 10)]
    assert [(t, i.name) for t, i in _finish_times(items, 1.0, 0.0, batched=False)] == [(30, "long"), (40, "short")]
    assert [(t, i.name) for t, i in _finish_times(items, 1.0, 0.0, batched=True)] == [(20, "short"), (40, "long")]


def test_das_with_zero_delay_is_at_least_as_good_as_the_matching_static_mix(cal):
    rng = random.Random(3)
    jobs = [job(f"j{i}", rng.uniform(300, 3000), "large-v3", "3g.20gb") for i in range(9)]
    static = simulate(inv(2), Slicing("static", ("3g.20gb", "3g.20gb")), QueueConfig(False), cal, jobs)
    das = simulate(inv(2), Slicing("das"), QueueConfig(False), cal, jobs)
    assert das.makespan <= static.makespan + 1e-6
    assert das.mean_jct <= static.mean_jct + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_makespan_is_never_below_the_lower_bound(cal, seed):
    rng = random.Random(seed)
    files = [WorkItem(f"f{i}", rng.uniform(60, 4000)) for i in range(rng.randint(1, 12))]
    for slicing, resource, units, share in [(Slicing("whole"), WHOLE, 3, 1.0),
                                            (Slicing("static", ("3g.20gb", "3g.20gb")), "3g.20gb", 6, 3 / 7),
                                            (Slicing("das"), "1g.5gb", 21, 1 / 8)]:
        model = "medium"
        jobs = [PodSpec(f"p{i}", model, resource, [f], cached_weights=True) for i, f in enumerate(files)]
        r = simulate(inv(3), slicing, QueueConfig(rng.random() < 0.5), cal, jobs)
        assert r.makespan >= lower_bound(files, model, cal, units, share, False) - 1e-6, slicing


def test_a_model_that_does_not_fit_the_slice_is_refused(cal):
    with pytest.raises(ValueError, match="needs more than"):
        simulate(inv(1), Slicing("das"), QueueConfig(False), cal, [job("x", 60, "large-v3", "1g.5gb")])


# --- MIG tables --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", sorted(GPU_TYPES))
def test_each_profile_packs_to_the_nvidia_maximum(gpu):
    expected = {1: 7, 2: 4, 3: 3, 4: 2, 5: 1, 6: 1}  # NVIDIA MIG user guide: instances per GPU, table order
    for i, p in enumerate(GPU_TYPES[gpu].profiles, start=1):
        layout = MigLayout(GPU_TYPES[gpu])
        while layout.place(p) is not None:
            pass
        assert len(layout.instances) == p.max_count == expected[i], p.name
        assert layout.valid()


def test_known_layouts():
    ok = MigLayout(A100)
    for name in ("4g.20gb", "2g.10gb", "1g.5gb"):  # a documented A100 mix: 4 + 2 + 1 compute slices
        assert ok.place(A100.profile(name)) is not None
    full = MigLayout(A100)
    assert full.place(A100.profile("3g.20gb")) and full.place(A100.profile("3g.20gb"))
    assert full.place(A100.profile("1g.5gb")) is None  # every memory slice taken


@pytest.mark.parametrize("gpu", sorted(GPU_TYPES))
def test_random_packing_never_exceeds_the_profile_table(gpu):
    t = GPU_TYPES[gpu]
    rng = random.Random(11)
    layout = MigLayout(t)
    for _ in range(2000):
        if layout.instances and rng.random() < 0.4:
            layout.remove(rng.choice(layout.instances))
        else:
            layout.place(rng.choice(t.profiles))
        assert layout.valid()
        assert layout.compute_used <= 7 and len(layout.used_slices()) <= 8


def test_das_never_holds_an_invalid_layout(cal):
    rng = random.Random(5)
    jobs = [job(f"j{i}", rng.uniform(100, 2000), m, r)
            for i, (m, r) in enumerate(rng.choice([("medium", "1g.5gb"), ("large-v3", "3g.20gb"), ("medium", "2g.10gb")])
                                       for _ in range(40))]
    cal_delay = replace(cal, das_create_s=Input(7.0, "t", "assumption"), das_delete_s=Input(5.0, "t", "assumption"))
    r = simulate(inv(2), Slicing("das"), QueueConfig(False), cal_delay, jobs)
    held: dict[str, tuple[str, float, float]] = {}
    for s in r.timeline:  # one device label per pod: gpuN/profile@start, held from its first to its last phase
        gpu, t0, t1 = held.get(s.pod, (s.device, s.t0, s.t1))
        held[s.pod] = (s.device, min(t0, s.t0), max(t1, s.t1))
    instants = sorted({t for _, t0, _ in held.values() for t in (t0,)})
    for t in instants:
        for g in range(2):
            layout = MigLayout(A100)
            for label, t0, t1 in held.values():
                if label.startswith(f"gpu{g}/") and t0 <= t < t1:
                    name, start = label.split("/", 1)[1].split("@")
                    layout.instances.append(Placed(A100.profile(name), int(start)))
            assert layout.valid(), (t, g, [(p.profile.name, p.start) for p in layout.instances])


# --- Kueue ----------------------------------------------------------------------------------------------------


def test_strict_fifo_blocks_and_best_effort_backfills():
    def queue(strategy):
        q = ClusterQueue({"3g.20gb": 1, "1g.5gb": 1}, strategy)
        q.usage["3g.20gb"] = 1  # a large job is running
        q.submit(Workload("large", "3g.20gb", 0, 0.0, 0))
        q.submit(Workload("medium", "1g.5gb", 0, 1.0, 1))
        return q

    assert [w.name for w in queue("StrictFIFO").admit(2.0)[0]] == []
    assert [w.name for w in queue("BestEffortFIFO").admit(2.0)[0]] == ["medium"]


def test_priority_and_preemption():
    q = ClusterQueue({"gpu": 1}, preemption=True)
    q.submit(Workload("low", "gpu", 0, 0.0, 0))
    assert [w.name for w in q.admit(0.0)[0]] == ["low"]
    q.submit(Workload("high", "gpu", 10, 1.0, 1))
    admitted, evicted = q.admit(1.0)
    assert [w.name for w in admitted] == ["high"] and [w.name for w in evicted] == ["low"]
    assert q.usage["gpu"] == 1 and [w.name for w in q.pending] == ["low"]
    no = ClusterQueue({"gpu": 1}, preemption=False)
    no.submit(Workload("low", "gpu", 0, 0.0, 0))
    no.admit(0.0)
    no.submit(Workload("high", "gpu", 10, 1.0, 1))
    assert no.admit(1.0) == ([], [])


def test_preempted_pod_keeps_finished_files_and_runs_again(cal):
    low = PodSpec("low", "medium", WHOLE, [WorkItem("a", 100), WorkItem("b", 5000)], cached_weights=True)
    high = replace(job("high", 100), priority=10)
    first_done = work(cal, "medium", 100)
    sim_jobs = [low, high]
    r = simulate(inv(1), Slicing("whole"), QueueConfig(True, {WHOLE: 1}, preemption=True), cal, sim_jobs,
                 create_interval_s=first_done * 1.5)
    rec = {p.name: p for p in r.pods}
    assert rec["low"].evictions == 1
    assert r.file_done["a"] < rec["high"].running  # finished before the eviction, kept
    assert r.file_done["b"] > rec["high"].done  # redone after the high-priority pod


# --- LLM routing ---------------------------------------------------------------------------------------------


def _profile(kv_tokens: int) -> LLMProfile:
    a = lambda v: Input(v, "test", "assumption")  # noqa: E731
    return LLMProfile("test", a(1000.0), a(50.0), a(0.0), a(kv_tokens), max_batch=8, prefill_chunk=512)


def test_prefix_routing_sends_a_prompt_to_the_replica_holding_it():
    pool = pool_of(_profile(10_000), 3)
    prompt = (("stable", 100), ("t", 900))
    pool[2]._remember(prompt)
    pool[0]._remember((("stable", 100),))  # a shorter shared prefix elsewhere does not win
    assert all(Router("prefix", pool, seed).pick(Request(0, prompt, 4)) == 2 for seed in range(10))


@pytest.mark.parametrize("seed", range(5))
def test_prefix_routing_reuses_what_random_picking_evicts(seed):
    """Six 1,000-token prompts cycled over two replicas that hold 3.5 each: affinity keeps each prompt on one
    replica, cached; random picking sends all six to each, and LRU evicts most before they come back."""
    prompts = [((f"t{i}", 1000),) for i in range(6)]
    shares = {}
    for policy in ("random", "prefix"):
        pool = pool_of(_profile(3500), 2)
        reqs = [Request(i, prompts[i % 6], 4) for i in range(60)]
        run_closed_loop(pool, Router(policy, pool, seed), reqs, 2)
        later = reqs[12:]
        shares[policy] = sum(r.cached for r in later) / sum(r.tokens for r in later)
        assert all(r.ttft >= (r.tokens - r.cached) / 1000 - 1e-9 for r in reqs)  # never faster than its prefill
    assert shares["random"] < 0.6 and shares["prefix"] > 0.9, shares


# --- the CLI ------------------------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", "capacity", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _check_values(chart, values_path: Path) -> dict:
    from tests.chart_support import NAMESPACE, hera_workflowtemplate, render
    from tests.schemas import validate as schemas

    overrides = yaml.safe_load(values_path.read_text())
    rendered = render(chart, overrides)  # helm validates the values against values.schema.json here
    errors = [e for o in rendered.objects for e in schemas.validation_errors(o, strict=True)]
    assert not errors, "\n".join(errors)
    assert rendered.one("WorkflowTemplate") == hera_workflowtemplate(rendered)
    assert NAMESPACE
    return rendered.values


@pytest.mark.parametrize("source", ["folder", "synthetic"])
def test_capacity_cli_writes_values_that_render_and_a_png(tmp_path, chart, source):
    args = [str(FIXTURES / "speech"), "--model", "tiny.en"] if source == "folder" else \
        ["--hours", "30", "--length-dist", "lognormal", "--model", "large-v3", "--deadline", "8h"]
    p = _cli(*args, "--gpus", "2xA100-40GB", "-o", "json", "--values-out", str(tmp_path / "v.yaml"),
             "--plot", str(tmp_path / "t.png"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["recommended"]["configuration"] in [c["configuration"] for c in doc["candidates"]]
    assert all(c["makespan_s"] >= c["lower_bound_s"] - 1e-6 for c in doc["candidates"])
    if source == "folder":
        assert doc["backlog"]["files"] == 4
    merged = _check_values(chart, tmp_path / "v.yaml")
    assert merged["whisper"]["accelerator"] == yaml.safe_load((tmp_path / "v.yaml").read_text())["whisper"]["accelerator"]
    w, h = _png_size(tmp_path / "t.png")
    assert w > 0 and h > 0
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "t.png").shape[:2] == (h, w)


def test_capacity_cli_table_output(tmp_path):
    p = _cli("--hours", "5", "--gpus", "1xH100-80GB", "--model", "medium", "--shard-seconds", "1800",
             "--values-out", "v.yaml", "--plot", "t.png", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "recommended:" in p.stdout and (tmp_path / "v.yaml").is_file() and (tmp_path / "t.png").is_file()


@pytest.mark.parametrize("args,code,message", [
    (["--hours", "5", "--gpus", "8xB300"], 2, "unknown GPU type"),
    (["--hours", "5", "--gpus", "2xA100-40GB", "--deadline", "soon"], 2, "--deadline"),
    (["--hours", "5", "--gpus", "2xA100-40GB", "--model", "gigantic"], 2, "unknown Whisper model"),
    (["--gpus", "2xA100-40GB"], 2, "give a backlog"),
    (["--hours", "abc", "--gpus", "2xA100-40GB"], 2, "invalid float value"),
    (["--hours", "5"], 2, "--gpus"),
    (["/nonexistent/backlog", "--gpus", "2xA100-40GB"], 3, "is not a folder"),
])
def test_capacity_cli_bad_options_one_line(tmp_path, args, code, message):
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode == code, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in p.stderr, p.stderr
