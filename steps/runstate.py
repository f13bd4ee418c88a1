"""A run's state in the output store: where each step's record is written and read back (``steps/layout.py``
names the keys, ``steps/records.py`` defines the records and their JSON).

Every write is atomic (``steps/store.py``), so a reader sees a whole record or none.
"""

from __future__ import annotations

import json
from typing import Any

from steps import layout
from steps.markers import forget_processed
from steps.records import Plan, RunReport, ShardResult, Status, SummarizeResult
from steps.store import Store

_JSON = "application/json"


def write_plan(plan: Plan, store: Store) -> list[str]:
    """Store the plan and return the Argo fan-out list: shard numbers as strings."""
    store.write_text(layout.plan(plan.run_id), plan.to_json(), _JSON)
    return [str(i) for i in range(len(plan.shards))]


def read_plan(store: Store, run_id: str) -> Plan:
    return Plan.from_json(store.read_text(layout.plan(run_id)))


def write_shard_result(store: Store, result: ShardResult) -> None:
    store.write_text(layout.shard_result(result.run_id, result.shard), result.to_json(), _JSON)


def read_shard_results(store: Store, plan: Plan) -> dict[int, ShardResult | None]:
    """Every shard's result as it stands; None for a shard that never reported."""
    results: dict[int, ShardResult | None] = {}
    for i in range(len(plan.shards)):
        key = layout.shard_result(plan.run_id, i)
        results[i] = ShardResult.from_json(store.read_text(key)) if store.exists(key) else None
    return results


def write_summarize_result(store: Store, run_id: str, result: SummarizeResult) -> None:
    store.write_text(layout.summarize_result(run_id), result.to_json(), _JSON)


def read_summarize_result(store: Store, run_id: str) -> SummarizeResult:
    """The summarize step's result; an empty one when the step never finished."""
    key = layout.summarize_result(run_id)
    return SummarizeResult.from_json(store.read_text(key)) if store.exists(key) else SummarizeResult(files=[])


def write_report(store: Store, report: RunReport) -> None:
    """The run's own report (``.kubescribe/runs/<id>/report.json``: this run's inputs only), then ``report.json``
    at the output root: the current state of every input ever reported into this output, each entry with the run
    that produced it. A later run replaces the entries of the inputs it reported and keeps the others, so a
    scheduled ``--only-new`` run that found nothing new leaves the last full report as it was."""
    for f in report.files:
        f.run_id = f.run_id or report.run_id
    store.write_text(layout.run_report(report.run_id), report.to_json(), _JSON)
    merged = merged_report(_previous_root(store), report)
    store.write_text(layout.REPORT, json.dumps(merged, indent=2) + "\n", _JSON)
    for f in merged["files"]:
        if f.get("superseded_by"):  # its outputs are another input's now: an --only-new run must process it again
            forget_processed(store, f["input"], run_id=report.run_id, error=f["error"])


def merged_report(previous: dict[str, Any] | None, report: RunReport) -> dict[str, Any]:
    """``report`` over ``previous`` (the root report.json before it; None when there was none). ``totals`` keeps
    the run's figures except the file counts, which count the merged list; ``this_run`` keeps the run's own."""
    doc = report.to_dict()
    fresh = {f["input"] for f in doc["files"]}
    # Output names are unique within a run, not across runs: `x.mp3` then, later, only `x.wav` both write
    # transcripts/x.*. The later run's outputs replace the earlier entry's, which then no longer holds them.
    # Only this run's successes hold their outputs: a failed entry may name outputs another run has since replaced.
    written = {k.casefold(): f["input"] for f in doc["files"] if f["status"] == Status.SUCCEEDED.value
               for k in (f.get("outputs") or {}).values() if k}
    kept = []
    if previous is not None:
        for f in previous.get("files") or []:
            if isinstance(f, dict) and f.get("input") not in fresh:
                kept.append(_superseded({**f, "run_id": f.get("run_id") or previous.get("run_id", "")},
                                        written, report.run_id))
    files = doc["files"] + kept  # this run's entries in its order, then the earlier ones
    run_counts = {k: doc["totals"].get(k) for k in ("files", "succeeded", "failed")}
    doc["files"] = files
    doc["totals"] = {**doc["totals"], "files": len(files),
                     "succeeded": sum(f.get("status") == "succeeded" for f in files),
                     "failed": sum(f.get("status") == "failed" for f in files),
                     "runs": len({f.get("run_id") for f in files} | {report.run_id})}
    doc["this_run"] = run_counts
    return doc


def _superseded(entry: dict[str, Any], written: dict[str, str], run_id: str) -> dict[str, Any]:
    """``entry`` from an earlier run, failed and without the outputs that this run has since written for another
    input (the outputs now belong to that input)."""
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    taken = {name: written[key.casefold()] for name, key in outputs.items() if key and key.casefold() in written}
    if not taken:
        return entry
    other = sorted(set(taken.values()))
    error = (f"{entry.get('input')}: its outputs now hold the results of {', '.join(other)} (run {run_id}, "
             "same output name); run both in one run to give each its own output name")
    return {**entry, "status": Status.FAILED.value, "error": error, "superseded_by": other,
            "outputs": {name: (None if name in taken else key) for name, key in outputs.items()}}


def _previous_root(store: Store) -> dict[str, Any] | None:
    """The root report.json, or None when it is missing or unreadable (then this run's report starts it again)."""
    try:
        if not store.exists(layout.REPORT):
            return None
        doc = json.loads(store.read_text(layout.REPORT))
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), list) else None