"""The cluster commands' command line: ``submit``, ``templates install`` and ``doctor`` on the ``kubescribe``
subparsers (:func:`add_cluster_commands`). Each command runs guarded: a :class:`ClusterError` is one line on stderr
and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from workflows.cluster.argo import ENV_INSECURE, ENV_SERVER, ENV_TOKEN
from workflows.cluster.doctor import cmd_doctor
from workflows.cluster.doctor_argo import ARGO_CONFIGMAP, ARGO_NAMESPACE
from workflows.cluster.errors import ClusterError
from workflows.cluster.install import cmd_templates_install
from workflows.cluster.settings_file import DEFAULT_NAMESPACE, ENV_NAMESPACE
from workflows.cluster.submit import cmd_submit
from workflows.settings import MIN_ACTIVE_DEADLINE_S, SECRET_KEY_S3_ACCESS, SECRET_KEY_S3_SECRET


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(a: argparse.Namespace) -> int:
        try:
            return fn(a)
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _positive_seconds(text: str) -> int:
    """A run deadline in whole seconds, with ``PipelineSettings.active_deadline_seconds``' floor."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if seconds < MIN_ACTIVE_DEADLINE_S:
        raise argparse.ArgumentTypeError(f"{seconds} s: a run deadline must be at least {MIN_ACTIVE_DEADLINE_S} s")
    return seconds


def _settings_args(p: argparse.ArgumentParser, *, llm: bool = True, images: bool = True,
                   title: str = "pipeline settings (override --settings and the PipelineSettings defaults)") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--settings", metavar="FILE.yaml", help="YAML mapping of PipelineSettings fields")
    g.add_argument("--namespace", "-n", help=f"namespace (default: ${ENV_NAMESPACE}, then the settings, then (doctor) "
                                             f"the kubeconfig context, else '{DEFAULT_NAMESPACE}')")
    g.add_argument("--queue", help="Kueue LocalQueue of the Whisper pods ('' for none)")
    g.add_argument("--accelerator", help="GPU resource per Whisper pod: nvidia.com/mig-<profile>, nvidia.com/gpu or cpu")
    g.add_argument("--s3-secret", help=f"Secret with the MinIO keys {SECRET_KEY_S3_ACCESS}/{SECRET_KEY_S3_SECRET} ('' for none)")
    if llm:
        g.add_argument("--llm-url", help="OpenAI-compatible base URL of the llm-d gateway (ends in /v1)")
        g.add_argument("--llm-model", help="model name sent to the gateway")
    if images:
        g.add_argument("--whisper-image", help="image of the transcribe step")
        g.add_argument("--steps-image", help="image of the plan/summarize/report steps")


def _argo_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Argo Server")
    g.add_argument("--argo-server", metavar="URL", help=f"Argo Server URL (default ${ENV_SERVER}), e.g. https://argo.example.com")
    g.add_argument("--token", help=f"bearer token (default ${ENV_TOKEN}, preferable: command lines are visible in ps); "
                                   "'Bearer ' is added to a bare token; never printed")
    g.add_argument("--insecure", action="store_true", help=f"skip TLS verification (self-signed server; ${ENV_INSECURE})")
    g.add_argument("--template", metavar="NAME", help="WorkflowTemplate name (default: settings name, 'kubescribe')")


def add_cluster_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``submit``, ``templates install`` and ``doctor`` on the ``kubescribe`` subparsers."""
    s = subparsers.add_parser("submit", help="submit a run to Argo (the installed WorkflowTemplate, or --inline)",
                              description="Submit the installed WorkflowTemplate (or, with --inline, the pipeline as a "
                                          "standalone Workflow) through the Argo Server; print its name and UI link.")
    _argo_args(s)
    s.add_argument("-p", "--parameter", dest="param", action="append", metavar="KEY=VALUE",
                   help="workflow parameter, repeatable (input, output, whisper-model, llm-url, ...)")
    s.add_argument("--inline", action="store_true", help="create a Workflow from this checkout's pipeline instead of the installed template")
    s.add_argument("--active-deadline", type=_positive_seconds, metavar="S",
                   help="bound this run to S seconds from its start, queue time and retries included "
                        "(spec.activeDeadlineSeconds; default: the template's, 24 h unless the chart changed it)")
    s.add_argument("--wait", action="store_true", help="follow the run until it finishes, then print its report "
                   "(read from the output store: KUBESCRIBE_S3_ENDPOINT and AWS_* keys); exit 0 if it succeeded, 1 if not")
    s.add_argument("--report", metavar="FILE", help="with --wait: also save the run's report.json here")
    s.add_argument("--poll-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    _settings_args(s, title="pipeline settings (--inline renders the Workflow from them; the template name and "
                            "namespace apply to both)")
    s.set_defaults(fn=_guarded(cmd_submit))

    t = subparsers.add_parser("templates", help="manage the WorkflowTemplate in a cluster")
    tsub = t.add_subparsers(dest="templates_command", required=True)
    ti = tsub.add_parser("install", help="create or update the WorkflowTemplate, its ServiceAccount/Role/RoleBinding "
                                         "(and a CronWorkflow with --cron)",
                         description="Create or update the workflow pods' ServiceAccount, Role and RoleBinding (least "
                                     "privilege: create/patch workflowtaskresults) through the Kubernetes API, then the "
                                     "WorkflowTemplate rendered from the settings through the Argo Server; with --cron "
                                     "also a CronWorkflow that runs it with only-new=true.")
    _argo_args(ti)
    ti.add_argument("--cron", action="append", metavar="SCHEDULE",
                    help='also install a CronWorkflow with this schedule, e.g. "0 * * * *" (repeatable)')
    k = ti.add_argument_group("Kubernetes API (the workflow pods' ServiceAccount, Role and RoleBinding)")
    k.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, else in-cluster)")
    k.add_argument("--context", help="kubeconfig context (default: the current one)")
    k.add_argument("--no-rbac", action="store_true",
                   help="do not create them (an admin or the Helm chart did): check they exist, refuse if they do not")
    _settings_args(ti)
    ti.set_defaults(fn=_guarded(cmd_templates_install))

    d = subparsers.add_parser("doctor", help="check that a namespace is ready to run the pipeline",
                              description="Check Argo (CRDs, the executor securityContext), the workflow RBAC, Kueue "
                                          "(CRDs, LocalQueue, ClusterQueue quota), the GPU resource and DAS, the MinIO "
                                          "Secret and the LLM gateway. Exit 0 only if every check passes or warns.")
    d.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, else in-cluster)")
    d.add_argument("--context", help="kubeconfig context (default: the current one)")
    d.add_argument("--argo-configmap", metavar="[NAMESPACE/]NAME",
                   help=f"Argo's controller ConfigMap (default: {ARGO_CONFIGMAP} in {ARGO_NAMESPACE}, then in the namespace)")
    _settings_args(d, images=False)
    d.set_defaults(fn=_guarded(cmd_doctor))

