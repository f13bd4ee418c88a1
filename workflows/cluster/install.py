"""``kubescribe templates install``: the workflow pods' ServiceAccount, Role and RoleBinding first (through the
Kubernetes API, :mod:`workflows.cluster.rbac_api`; with ``--no-rbac`` only checked), then the WorkflowTemplate
rendered from the settings and, with ``--cron``, a CronWorkflow running it with ``only-new=true`` (through the Argo
Server). Each is created, or updated when it exists."""

from __future__ import annotations

import argparse
import re
import warnings

from workflows.cluster.argo import argo_target, create_or_update
from workflows.cluster.errors import ClusterError
from workflows.cluster.rbac_api import install_rbac, require_rbac
from workflows.cluster.settings_file import load_settings, resolve_namespace
from workflows.settings import PipelineSettings


def build_cron(settings: PipelineSettings, schedules: list[str]):
    """The CronWorkflow model of ``workflows.cron``: the installed WorkflowTemplate, run with ``only-new=true``."""
    from workflows.cron import build_cron_workflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_cron_workflow(settings, schedules=schedules).build()


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def _check_schedule(s: str) -> str:
    s = " ".join(s.split())
    body = re.sub(r"^CRON_TZ=\S+ ", "", s)
    if body.startswith("@") or (len(body.split()) == 5 and all(_CRON_FIELD.match(f) for f in body.split())):
        return s
    raise ClusterError(f"--cron {s!r} is not a cron schedule: use 5 fields like \"0 * * * *\" or @hourly/@daily")


def cmd_templates_install(a: argparse.Namespace) -> int:
    from hera.workflows.models import (
        CreateCronWorkflowRequest,
        UpdateCronWorkflowRequest,
        WorkflowTemplateCreateRequest,
        WorkflowTemplateUpdateRequest,
    )

    from workflows.pipeline import build_workflow_template

    settings = load_settings(a)
    ns, settings = resolve_namespace(a, settings)
    schedules = [_check_schedule(s) for s in a.cron or []]
    t = argo_target(a, ns)
    ws = t.service()
    name = settings.name

    # The pods' identity first: a WorkflowTemplate whose serviceAccountName does not exist (or may not report
    # results) only fails at run time, pod by pod.
    if a.no_rbac:
        require_rbac(a, ns, settings)
    else:
        for line in install_rbac(a, ns, settings):
            print(line)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = build_workflow_template(settings).build()
        cron = build_cron(settings, schedules) if schedules else None

    def update_template(version: str):
        model = template.model_copy(deep=True)
        model.metadata.resource_version = version
        return ws.update_workflow_template(name, WorkflowTemplateUpdateRequest(template=model), namespace=ns)

    what = create_or_update(
        t, "WorkflowTemplate", name,
        create=lambda: ws.create_workflow_template(WorkflowTemplateCreateRequest(template=template), namespace=ns),
        get=lambda: ws.get_workflow_template(name, namespace=ns),
        update=update_template,
        resource="workflowtemplates.argoproj.io (create, get, update)",
    )
    print(f"WorkflowTemplate {name} {what} in namespace {ns}: {t.ui('workflow-templates', ns, name)}")

    if cron is not None:
        cron_name = cron.metadata.name

        def update_cron(version: str):
            model = cron.model_copy(deep=True)
            model.metadata.resource_version = version
            return ws.update_cron_workflow(cron_name, UpdateCronWorkflowRequest(cron_workflow=model), namespace=ns)

        what = create_or_update(
            t, "CronWorkflow", cron_name,
            create=lambda: ws.create_cron_workflow(CreateCronWorkflowRequest(cron_workflow=cron), namespace=ns),
            get=lambda: ws.get_cron_workflow(cron_name, namespace=ns),
            update=update_cron,
            resource="cronworkflows.argoproj.io (create, get, update)",
        )
        print(f"CronWorkflow {cron_name} {what} in namespace {ns} ({'; '.join(schedules)}): {t.ui('cron-workflows', ns, cron_name)}")
    return 0


