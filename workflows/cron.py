"""The scheduled run: a CronWorkflow that submits the kubescribe WorkflowTemplate over an input prefix.

It references the WorkflowTemplate (``workflowTemplateRef``) instead of copying the DAG, so the schedule always
runs what is installed, and it overrides two run parameters: ``input`` (the prefix to scan) and ``only-new: "true"``
(plan only audio without a finished result). ``concurrencyPolicy: Forbid`` keeps a slow night from overlapping the
next one, and ``workflowSpec.activeDeadlineSeconds`` (``settings.active_deadline_seconds``) bounds each run.

Argo v4 removed ``spec.schedule``; hera 7 emits ``schedules`` only (and rewrites a legacy ``schedule=``). Argo 3.6
and 3.7 accept ``schedules`` too; for older controllers the Helm chart has ``cron.legacySchedule`` to render the
single ``schedule:`` field instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from hera.workflows import CronWorkflow, Parameter
from hera.workflows import models as m

from workflows.settings import PipelineSettings

DEFAULT_SCHEDULES = ("0 2 * * *",)
CONCURRENCY_POLICY = "Forbid"


def build_cron_workflow(
    settings: PipelineSettings | None = None,
    schedules: Sequence[str] = DEFAULT_SCHEDULES,
    *,
    name: str | None = None,
    input: str | None = None,
    timezone: str | None = None,
    starting_deadline_seconds: int = 300,
    successful_jobs_history_limit: int = 3,
    failed_jobs_history_limit: int = 1,
    suspend: bool = False,
) -> CronWorkflow:
    """A CronWorkflow running the WorkflowTemplate ``settings.name`` with ``only-new=true`` over ``input``.

    ``input`` defaults to ``settings.input``; ``timezone`` None/empty leaves the controller's zone; ``suspend``
    False omits the field (Argo's default).
    """
    settings = settings or PipelineSettings()
    if not schedules:
        raise ValueError("a CronWorkflow needs at least one schedule")
    return CronWorkflow(
        name=name or settings.name,
        namespace=settings.namespace,
        schedules=list(schedules),
        concurrency_policy=CONCURRENCY_POLICY,
        starting_deadline_seconds=starting_deadline_seconds,
        successful_jobs_history_limit=successful_jobs_history_limit,
        failed_jobs_history_limit=failed_jobs_history_limit,
        timezone=timezone or None,
        cron_suspend=True if suspend else None,
        workflow_template_ref=m.WorkflowTemplateRef(name=settings.name),
        # Each scheduled run is bounded as a whole, queue time included (a Kueue-gated pod never starts its own
        # deadline). The WorkflowTemplate carries the same value; the Workflow's own spec wins when the controller
        # merges the two (argo-workflows v4.1.2 workflow/util/merge.go JoinWorkflowSpec), so an older installed
        # template cannot leave scheduled runs unbounded.
        active_deadline_seconds=settings.active_deadline_seconds,
        arguments=[
            Parameter(name="input", value=input or settings.input),
            Parameter(name="only-new", value="true"),
        ],
        labels={"app.kubernetes.io/name": "kubescribe", "app.kubernetes.io/component": "schedule"},
    )
