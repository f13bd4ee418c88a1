"""Render the cluster manifests from the hera objects (the one source of truth for the DAG)."""

from __future__ import annotations

from pathlib import Path

import yaml

from workflows.cron import DEFAULT_SCHEDULES, build_cron_workflow
from workflows.pipeline import build_workflow_template
from workflows.settings import PipelineSettings


def to_yaml(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)


def manifests(settings: PipelineSettings | None = None) -> dict[str, dict]:
    """File name → manifest dict: the WorkflowTemplate and a CronWorkflow running it (only-new) on DEFAULT_SCHEDULES.

    The Helm chart (charts/kubescribe) is generated from the same builders at build time (``make chart``,
    ``tools/chart.py``).
    """
    settings = settings or PipelineSettings()
    return {
        "workflowtemplate.yaml": build_workflow_template(settings).to_dict(),
        "cronworkflow.yaml": build_cron_workflow(settings, DEFAULT_SCHEDULES).to_dict(),
    }


def render_all(out: Path, settings: PipelineSettings | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in manifests(settings).items():
        path = out / name
        path.write_text(to_yaml(obj))
        written.append(path)
    return written
