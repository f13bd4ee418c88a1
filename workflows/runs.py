"""``kubescribe runs OUT`` and ``kubescribe show OUT RUN|FILE``: run management over an output folder or S3 prefix,
as ``argo list`` / ``argo get`` are over a namespace.

A run's state lives in the output store under ``.kubescribe/runs/<run-id>/`` (``steps/layout.py``): its plan (when
it was planned, how many files) and, once the report step ran, its own ``report.json``. ``report.json`` at the root
is the current state of every input processed there. Both commands only read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from steps import layout
from steps.store import StoreError, open_store

RUNS_PREFIX = ".kubescribe/runs"


class RunsError(Exception):
    """One line, exit 2."""


def _store(out: str):
    if not out.startswith("s3://"):
        from pathlib import Path

        if not Path(out).expanduser().is_dir():
            raise RunsError(f"{out}: no such output folder")
    return open_store(out)


def list_runs(out: str) -> list[dict]:
    """Every run under ``out``, oldest first: id, when it was planned, files planned, succeeded, failed, state."""
    store = _store(out)
    ids = sorted({o.key.split("/")[2] for o in store.list(RUNS_PREFIX) if o.key.count("/") >= 3})
    runs = []
    for run_id in ids:
        row: dict = {"run_id": run_id, "created": None, "files": None, "succeeded": None, "failed": None,
                     "state": "no plan"}
        if store.exists(layout.plan(run_id)):
            plan = json.loads(store.read_text(layout.plan(run_id)))
            row.update(created=plan.get("created"), files=len(plan.get("files", [])) + len(plan.get("rejected", [])),
                       state="no report (running, or it broke off)")
        if store.exists(layout.run_report(run_id)):
            totals = json.loads(store.read_text(layout.run_report(run_id))).get("totals", {})
            row.update(files=totals.get("files"), succeeded=totals.get("succeeded"), failed=totals.get("failed"),
                       state="finished")
        runs.append(row)
    return sorted(runs, key=lambda r: (r["created"] or 0, r["run_id"]))


def cmd_runs(a: argparse.Namespace) -> int:
    runs = list_runs(a.out)
    if a.output == "json":
        for r in runs:
            print(json.dumps(r))
        return 0
    from workflows.run_view import safe

    console = Console(emoji=False)
    if not runs:
        console.print(f"no runs in {safe(a.out)}", soft_wrap=True)
        return 0
    table = Table(title=f"runs in {safe(a.out)}")
    for col in ("run", "planned", "files", "succeeded", "failed", "state"):
        table.add_column(col, no_wrap=True)
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"])) if r["created"] else "-"
        table.add_row(safe(r["run_id"]), when, *("-" if r[k] is None else str(r[k]) for k in ("files", "succeeded",
                                                                                            "failed")), r["state"])
    console.print(table)
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    """A run's transcripts and summaries (RUN: a run id), or one input's (FILE: its name in report.json)."""
    from workflows.run_view import print_texts

    store = _store(a.out)
    if store.exists(layout.run_report(a.what)):
        report = json.loads(store.read_text(layout.run_report(a.what)))
    elif store.exists(layout.plan(a.what)):
        raise RunsError(f"run {a.what} has no report (it is running, or it broke off)")
    else:
        if not store.exists(layout.REPORT):
            raise RunsError(f"{a.out} has no report.json: no run finished there")
        merged = json.loads(store.read_text(layout.REPORT))
        files = [f for f in merged.get("files", []) if f["input"] == a.what or f["input"].endswith("/" + a.what)]
        if not files:
            raise RunsError(f"no run or input named {a.what} in {a.out} (kubescribe runs {a.out} lists the runs)")
        report = {**merged, "files": files}
    for f in report["files"]:
        if f.get("error"):
            print(f"{f['input']}: failed: {f['error']}", file=sys.stderr)
    print_texts(report, store)
    return 0


def _guarded(fn):
    def run(a: argparse.Namespace) -> int:
        try:
            return fn(a)
        except (RunsError, StoreError, ValueError, KeyError) as e:
            from steps.sanitize import show_control

            print(f"error: {show_control(str(e))}", file=sys.stderr)
            return 2
    return run


def add_runs_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("runs", help="list the runs in an output folder or S3 prefix, with their counts",
                       description="List the runs whose results are in OUT (a folder or s3://bucket/prefix), oldest "
                                   "first: when each was planned, its files, how many succeeded and failed.")
    r.add_argument("out", metavar="OUT", help="output folder or s3://bucket/prefix (KUBESCRIBE_S3_ENDPOINT set)")
    r.add_argument("-o", "--output", choices=["text", "json"], default="text", help="json: one JSON object per run")
    r.set_defaults(fn=_guarded(cmd_runs))
    s = sub.add_parser("show", help="print a run's (or one file's) transcripts and summaries",
                       description="Print the transcript and summary of every file of run RUN, or of the input FILE "
                                   "(its name as report.json lists it) as last processed.")
    s.add_argument("out", metavar="OUT", help="output folder or s3://bucket/prefix")
    s.add_argument("what", metavar="RUN|FILE", help="a run id (kubescribe runs OUT lists them) or an input's name")
    s.set_defaults(fn=_guarded(cmd_show))
