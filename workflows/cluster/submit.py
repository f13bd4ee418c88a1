"""``kubescribe submit``: run the installed WorkflowTemplate (or, with ``--inline``, this checkout's pipeline as a
Workflow) through the Argo Server, print its name and UI link, and with ``--wait`` follow it to the end (exit 0 if
it Succeeded, 1 if not), then fetch the run's own report from the output store (``.kubescribe/runs/<workflow>/
report.json``: the run id is the workflow's name) and print its counts and failed files; ``--report FILE`` keeps a
copy. An output store this machine cannot read is one warning line, not a failure of the command."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

from workflows.cluster.argo import ArgoTarget, argo_call, argo_target, explain_argo_error
from workflows.cluster.errors import ClusterError
from workflows.cluster.settings_file import load_settings, resolve_namespace, validation_message
from workflows.settings import PipelineSettings

FINISHED_PHASES = ("Succeeded", "Failed", "Error")


def _parse_parameters(items: list[str] | None) -> dict[str, str]:
    from workflows.pipeline import RUN_PARAMETERS

    known = [name for name, _, _ in RUN_PARAMETERS]
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ClusterError(f"-p wants key=value, got {item!r}")
        if key not in known:
            raise ClusterError(f"unknown parameter {key!r}; the template's parameters are: {', '.join(known)}")
        params[key] = value
    return params



def _template_run(template: str, params: dict[str, str], deadline: int) -> Any:
    """A Workflow that runs WorkflowTemplate ``template`` with ``params`` and its own run deadline."""
    from hera.workflows import models as m

    return m.Workflow(
        metadata=m.ObjectMeta(generate_name=f"{template}-"),
        spec=m.WorkflowSpec(
            workflow_template_ref=m.WorkflowTemplateRef(name=template),
            arguments=m.Arguments(parameters=[m.Parameter(name=k, value=v) for k, v in params.items()]),
            active_deadline_seconds=deadline,
        ),
    )


def cmd_submit(a: argparse.Namespace) -> int:
    from hera.workflows.models import SubmitOpts, WorkflowCreateRequest, WorkflowSubmitRequest

    from workflows.pipeline import RUN_PARAMETERS, build_workflow

    settings = load_settings(a)
    ns, settings = resolve_namespace(a, settings)
    params = _parse_parameters(a.param)
    t = argo_target(a, ns)
    ws = t.service()
    install_hint = f"install it with `kubescribe templates install --namespace {ns}`"

    deadline = getattr(a, "active_deadline", None)
    if a.inline:
        fields = {pname: fld for pname, fld, _ in RUN_PARAMETERS}
        from pydantic import ValidationError

        overrides = {fields[k]: v for k, v in params.items()}
        if deadline:
            overrides["active_deadline_seconds"] = deadline
        try:
            settings = PipelineSettings(**{**settings.model_dump(), **overrides})
        except ValidationError as e:
            raise ClusterError(validation_message(e, "-p parameters")) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_workflow(settings).build()
        created = argo_call(
            t, f"create a Workflow from the {settings.name} pipeline", ws.create_workflow,
            WorkflowCreateRequest(workflow=model), namespace=ns,
            resource="workflows.argoproj.io (create)",
            not_found=f"namespace {ns} does not exist, or {t.server} is not an Argo Server API URL; check --namespace and --argo-server",
        )
    elif deadline:
        # The submit API's options have no deadline; a Workflow that references the template does: Argo joins the
        # template's spec under the Workflow's, which wins (workflow/util/merge.go JoinWorkflowSpec).
        created = argo_call(
            t, f"create a Workflow from WorkflowTemplate {settings.name}", ws.create_workflow,
            WorkflowCreateRequest(workflow=_template_run(settings.name, params, deadline)), namespace=ns,
            resource="workflows.argoproj.io (create) and workflowtemplates.argoproj.io (get)",
            not_found=f"namespace {ns} or WorkflowTemplate {settings.name} not found; check --namespace/--template, or {install_hint}",
        )
    else:
        opts = SubmitOpts(parameters=[f"{k}={v}" for k, v in params.items()]) if params else None
        req = WorkflowSubmitRequest(namespace=ns, resource_kind="WorkflowTemplate", resource_name=settings.name,
                                    submit_options=opts)
        created = argo_call(
            t, f"submit WorkflowTemplate {settings.name}", ws.submit_workflow, req, namespace=ns,
            resource="workflows.argoproj.io (create) and workflowtemplates.argoproj.io (get)",
            not_found=f"namespace {ns} or WorkflowTemplate {settings.name} not found; check --namespace/--template, or {install_hint}",
        )
    name = created.metadata.name if created.metadata else None
    if not name:
        raise ClusterError(f"the Argo Server {t.server} accepted the workflow but returned no name")
    print(f"workflow {name} submitted in namespace {ns}")
    print(t.ui("workflows", ns, name))
    sys.stdout.flush()
    if not a.wait:
        return 0
    rc = wait_for_workflow(ws, t, name, interval=a.poll_interval)
    if rc != 130:
        output = params.get("output") or settings.output
        fetch_report(output, name, getattr(a, "report", None))
    return rc


def fetch_report(output: str, run_id: str, save_to: str | None) -> dict | None:
    """Print the run's report counts and failed files (and save it to ``save_to``); None when it cannot be read."""
    import json
    from pathlib import Path

    from steps import layout
    from steps.report_markdown import one_line
    from steps.sanitize import show_control
    from steps.store import StoreError, open_store

    import os

    key = layout.run_report(run_id)
    where = f"{output.rstrip('/')}/{key}"
    if output.startswith("s3://") and not (os.environ.get("KUBESCRIBE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")):
        print(f"the run's report is {where}; set KUBESCRIBE_S3_ENDPOINT (and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) "
              "to have it fetched", file=sys.stderr)
        return None
    try:
        store = open_store(output)
        text = store.read_text(key)
        report = json.loads(text)
        line = one_line(report)
    except (StoreError, ValueError, KeyError, TypeError) as e:
        print(f"warning: cannot fetch the run's report {where}: {show_control(str(e))}", file=sys.stderr)
        return None
    print(f"report: {line}")
    for f in report.get("files", []):
        if f.get("error"):
            print(f"failed {show_control(str(f['error']))}")
    print(f"report.json: {where}")
    if save_to:
        Path(save_to).write_text(text, encoding="utf-8")
        print(f"saved to {save_to}")
    return report


def _node_line(node: Any) -> str:
    label = node.display_name or node.name or node.id
    line = f"  {label:<28} {node.phase}"
    if node.phase in ("Failed", "Error") and node.message:
        line += f": {node.message}"
    return line


def wait_for_workflow(ws: Any, t: ArgoTarget, name: str, interval: float, max_network_errors: int = 5) -> int:
    """Poll until the workflow finishes, printing each pod's phase changes; 0 if it Succeeded, else 1."""
    import requests

    seen: dict[str, str] = {}
    last_progress = None
    network_errors = 0
    try:
        while True:
            try:
                wf = argo_call(t, f"read workflow {name}", ws.get_workflow, name, namespace=t.namespace,
                               resource="workflows.argoproj.io (get)",
                               not_found=f"workflow {name} is gone from {t.namespace} (deleted, or archived and garbage-collected)",
                               passthrough=(requests.ConnectionError, requests.Timeout))
                network_errors = 0
            except (requests.ConnectionError, requests.Timeout) as e:
                network_errors += 1
                if network_errors >= max_network_errors:
                    raise explain_argo_error(e, t, f"watch workflow {name}", resource="workflows", not_found="") from None
                time.sleep(interval)
                continue
            status = wf.status
            nodes = (status.nodes or {}) if status else {}
            for node in sorted(nodes.values(), key=lambda n: (str(n.started_at.root if n.started_at else "~"), n.id or "")):
                if node.type != "Pod" or not node.phase:
                    continue
                if seen.get(node.id) != node.phase:
                    seen[node.id] = node.phase
                    print(_node_line(node))
            if status and status.progress and status.progress != last_progress:
                last_progress = status.progress
                print(f"progress {status.progress}")
            phase = status.phase if status else None
            if phase in FINISHED_PHASES:
                msg = f": {status.message}" if status.message else ""
                print(f"workflow {name} {phase}{msg}")
                return 0 if phase == "Succeeded" else 1
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        print(f"stopped waiting; workflow {name} keeps running: {t.ui('workflows', t.namespace, name)}", file=sys.stderr)
        return 130


