"""``kubescribe capacity``: how long a backlog takes on a GPU inventory, per configuration, and which to run.

Reads the backlog (a folder or s3:// prefix, probed like the plan step does; or ``--hours`` of synthetic audio),
simulates every candidate configuration (``recommend.py``), prints makespan, mean/p95 completion, GPU-hours and
utilisation, recommends one, and writes the chart values that implement it and a timeline PNG of it.
Exit status: 0 done (also when no configuration meets the deadline: the output says so), 2 bad options,
3 a backlog that cannot be read or holds no audio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from workflows.capacity import defaults as D
from workflows.local import durations
from workflows.local.model import WorkflowError


class UsageError(ValueError):
    """A bad option: exit 2."""


class BacklogError(RuntimeError):
    """The backlog cannot be read or is empty: exit 3."""


def parse_duration(text: str) -> float:
    """``--deadline``: whole seconds or a Go duration (``6h``, ``90m``, ``1h30m``), the syntax of the workflow's own
    ``timeout`` (one parser: ``workflows/local/durations.py``)."""
    try:
        value = durations.parse_duration(text.strip(), "--deadline")
    except WorkflowError:
        raise UsageError(f"--deadline {text!r}: use seconds or a duration such as 6h, 90m, 1h30m") from None
    if value <= 0:
        raise UsageError(f"--deadline {text!r} must be positive")
    return value


def _human(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def add_capacity_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "capacity", help="plan GPUs and slices for a backlog: simulate configurations, recommend one, write chart values",
        description="How long a backlog takes on a GPU inventory, per configuration (whole GPUs, static MIG, DAS, "
                    "queue, shard size); recommends one and writes the chart values and a timeline PNG for it. "
                    "Simulated from measured and cited inputs (bench/README.md), no cluster needed.")

    def one_line_error(message: str) -> None:  # argparse's own errors (a missing --gpus, --hours abc): one line
        print(f"kubescribe capacity: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error  # type: ignore[method-assign]
    p.add_argument("backlog", nargs="?", help="folder or s3://bucket/prefix of recordings (or use --hours)")
    p.add_argument("--hours", type=float, default=None, help="synthetic backlog: hours of audio")
    p.add_argument("--length-dist", default="lognormal", help="synthetic lengths: lognormal, uniform or fixed")
    p.add_argument("--median-minutes", type=float, default=D.SYNTH_MEDIAN_S / 60, help="synthetic median length")
    p.add_argument("--gpus", required=True, help="inventory, COUNTxTYPE: e.g. 8xA100-40GB, 4xH100-80GB")
    p.add_argument("--gpus-per-node", type=int, default=D.GPUS_PER_NODE)
    p.add_argument("--model", default=D.PLAN_MODEL, help="Whisper model (tiny.en ... medium, large-v3, large-v3-turbo)")
    p.add_argument("--deadline", default=f"{int(D.PLAN_DEADLINE_S)}", help="e.g. 6h, 90m; default 24h")
    p.add_argument("--shard-seconds", default=",".join(str(s) for s in D.PLAN_SHARD_SECONDS),
                   help="comma-separated shard sizes to try (audio seconds per Whisper pod)")
    p.add_argument("--max-shards", type=int, default=D.PLAN_MAX_SHARDS)
    p.add_argument("--engine", choices=("sequential", "batched"), default="batched" if D.PLAN_BATCHED else "sequential",
                   help="Whisper engine the pods run (the cluster default is sequential)")
    p.add_argument("--concurrency", type=int, default=D.PLAN_SUMMARIZE_CONCURRENCY, help="summaries in flight")
    p.add_argument("--llm-replicas", type=int, default=D.PLAN_LLM_REPLICAS, help="LLM replicas behind the gateway")
    p.add_argument("--llm-gpu-gb", type=float, default=D.PLAN_LLM_GPU_GB, help="GPU memory of each LLM replica (Qwen3-8B)")
    p.add_argument("--values-out", default="capacity-values.yaml", help="chart values of the recommendation")
    p.add_argument("--plot", default="capacity-timeline.png", help="timeline PNG of the recommendation; '' for none")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(fn=cmd_capacity)
    return p


def _backlog(a: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    from workflows.capacity.backlog import from_store, synthetic

    if (a.backlog is None) == (a.hours is None):
        raise UsageError("give a backlog folder/s3:// prefix or --hours, not both and not neither")
    if a.hours is not None:
        try:
            items = synthetic(a.hours, a.length_dist, a.median_minutes * 60)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return items, {"source": "synthetic", "hours": a.hours, "length_dist": a.length_dist,
                       "median_s": a.median_minutes * 60}
    if "://" not in a.backlog and not Path(a.backlog).is_dir():
        raise BacklogError(f"backlog {a.backlog!r} is not a folder")
    try:
        items, unreadable = from_store(a.backlog)
    except Exception as exc:  # store errors carry their own one-line reason
        reason = str(exc.args[0]) if exc.args else repr(exc)
        raise BacklogError(f"cannot read backlog {a.backlog}: {(reason.splitlines() or [repr(exc)])[0]}") from None
    if not items:
        raise BacklogError(f"backlog {a.backlog}: no audio file whose length could be read")
    return items, {"source": a.backlog, "unreadable": unreadable}


def _options(a: argparse.Namespace) -> tuple[Any, float, tuple[float, ...]]:
    from workflows.capacity.calibration import family
    from workflows.capacity.model import Inventory

    try:
        inventory = Inventory.parse(a.gpus, a.gpus_per_node)
        family(a.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    deadline = parse_duration(a.deadline)
    try:
        shards = tuple(sorted({float(s) for s in a.shard_seconds.split(",") if s.strip()}))
    except ValueError:
        raise UsageError(f"--shard-seconds {a.shard_seconds!r}: comma-separated numbers") from None
    if not shards or min(shards) < 1:
        raise UsageError("--shard-seconds: at least one size, each >= 1")
    for name in ("max_shards", "concurrency", "llm_replicas", "gpus_per_node"):
        if getattr(a, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < a.llm_gpu_gb <= 1000:
        raise UsageError("--llm-gpu-gb must be a GPU memory size in GB")
    if a.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("the timeline PNG needs matplotlib: pip install 'kubescribe[capacity]', "
                         "or pass --plot '' to skip it")
    return inventory, deadline, shards


def cmd_capacity(a: argparse.Namespace) -> int:
    try:
        inventory, deadline, shard_sizes = _options(a)
        files, backlog_info = _backlog(a)
    except UsageError as exc:
        print(f"kubescribe capacity: error: {exc}", file=sys.stderr)
        return 2
    except BacklogError as exc:
        print(f"kubescribe capacity: error: {exc}", file=sys.stderr)
        return 3
    import yaml

    from workflows.capacity import calibration, plot, recommend

    cal = calibration.load()
    llm = calibration.qwen3_8b(a.llm_gpu_gb)
    try:
        found = recommend.evaluate(files, a.model, inventory, cal, llm, shard_seconds=shard_sizes,
                                   max_shards=a.max_shards, batched=a.engine == "batched", concurrency=a.concurrency)
    except ValueError as exc:
        print(f"kubescribe capacity: error: {exc}", file=sys.stderr)
        return 2
    best, met = recommend.choose(found, deadline)
    values = recommend.chart_values(best, deadline)
    values_path, plot_path = Path(a.values_out), (Path(a.plot) if a.plot else None)
    header = (f"# kubescribe capacity: {best.label}\n# backlog {len(files)} files, "
              f"{sum(f.audio_s for f in files) / 3600:.1f} h; {inventory}; simulated makespan "
              f"{_human(best.result.makespan_s)}. Install: helm install kubescribe charts/kubescribe -f {values_path.name}\n")
    values_path.parent.mkdir(parents=True, exist_ok=True)
    values_path.write_text(header + yaml.safe_dump(values, sort_keys=False))
    if plot_path is not None:
        plot.timeline_png(best.result.cluster.timeline, plot_path, f"{best.label}: {len(files)} files on {inventory}",
                          {"transcribed": best.result.transcribe_end_s - best.result.cluster.first_created})
    rows = [recommend.row(c, deadline) for c in found]
    chosen = recommend.row(best, deadline)
    if a.output == "json":
        doc = {"backlog": backlog_info | {"files": len(files), "audio_s": round(sum(f.audio_s for f in files), 1)},
               "inventory": str(inventory), "model": a.model, "engine": a.engine, "deadline_s": deadline,
               "candidates": rows, "recommended": chosen, "meets_deadline": met, "values_file": str(values_path),
               "plot_file": str(plot_path) if plot_path else None, "values": values, "calibration": cal.inputs(), "llm": llm.inputs()}
        print(json.dumps(doc, indent=1))
        return 0
    _print_table(rows, chosen, files, inventory, a, deadline, met, values_path, plot_path)
    return 0


def _print_table(rows: list[dict], chosen: dict, files: list, inventory: Any, a: argparse.Namespace, deadline: float,
                 met: bool, values_path: Path, plot_path: Path | None) -> None:
    audio_h = sum(f.audio_s for f in files) / 3600
    print(f"backlog: {len(files)} files, {audio_h:.1f} h of audio; {inventory}; Whisper {a.model} ({a.engine}); "
          f"deadline {_human(deadline)}")
    head = f"{'configuration':<62} {'makespan':>9} {'mean':>8} {'p95':>8} {'GPU-h':>7} {'util':>5} {'vs LB':>6}"
    print(head)
    print("-" * len(head))
    for r in sorted(rows, key=lambda r: r["makespan_s"]):
        mark = "*" if r["configuration"] == chosen["configuration"] else (" " if r["meets_deadline"] else "!")
        print(f"{mark}{r['configuration'][:61]:<61} {_human(r['makespan_s']):>9} {_human(r['mean_done_s']):>8} "
              f"{_human(r['p95_done_s']):>8} {r['gpu_hours']:>7.2f} {r['utilisation']:>5.0%} "
              f"{r['makespan_s'] / r['lower_bound_s'] - 1:>+6.0%}")
    print("(* recommended, ! misses the deadline; mean/p95: when a file's summary is written; GPU-h: GPU share held "
          "by Whisper pods; vs LB: over max(work/capacity, longest file) + fixed steps)")
    verdict = "meets the deadline" if met else "NO configuration meets the deadline; this is the fastest"
    print(f"recommended: {chosen['configuration']} ({verdict})")
    print(f"chart values: {values_path}" + (f"    timeline: {plot_path}" if plot_path else ""))
