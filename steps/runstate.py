"""A run's state in the output store: where each step's record is written and read back (``steps/layout.py``
names the keys, ``steps/records.py`` defines the records and their JSON).

Every write is atomic (``steps/store.py``), so a reader sees a whole record or none.
"""

from __future__ import annotations

from steps import layout
from steps.records import Plan, RunReport, ShardResult, SummarizeResult
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
    """``report.json``, and the run's own copy, which survives later runs (a CronWorkflow writes report.json every
    time)."""
    text = report.to_json()
    store.write_text(layout.run_report(report.run_id), text, _JSON)
    store.write_text(layout.REPORT, text, _JSON)
