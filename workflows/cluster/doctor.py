"""``kubescribe doctor``: check that a namespace is ready to run the pipeline, and print one line per check (with a
fix for each failure or warning). It only reads. Exit 0 when every check passes or warns, else 2.

With a usable Kubernetes API: Argo (:mod:`.doctor_argo`), Kueue, the GPU resource and DAS (:mod:`.doctor_gpu`) and
the S3 Secret (:mod:`.doctor_endpoints`); without one these are skipped. The LLM gateway is always checked."""

from __future__ import annotations

import argparse

from workflows.cluster.doctor_argo import check_argo, check_argo_executor, check_rbac
from workflows.cluster.doctor_endpoints import check_gateway, check_secret
from workflows.cluster.doctor_gpu import (
    check_accelerator,
    check_cluster_queue,
    check_das,
    check_kueue,
    das_in_use,
    list_nodes,
)
from workflows.cluster.errors import HTTP_TIMEOUT_S, Check, ClusterError
from workflows.cluster.kube import KubeProbe, kube_client
from workflows.cluster.settings_file import load_settings, resolve_namespace


def run_doctor(a: argparse.Namespace) -> list[Check]:
    settings = load_settings(a)
    checks: list[Check] = []
    probe = None
    context_ns = None
    try:
        api, context_ns = kube_client(a.kubeconfig, a.context)
        probe = KubeProbe(api)
    except ClusterError as e:
        checks.append(Check("Kubernetes API", "fail", str(e), "pass --kubeconfig PATH (or set KUBECONFIG)"))
    ns, settings = resolve_namespace(a, settings, fallback=context_ns)
    if probe is not None:
        from kubernetes import client

        try:
            version = client.VersionApi(probe.api).get_code(_request_timeout=HTTP_TIMEOUT_S)
            checks.append(Check("Kubernetes API", "pass", f"{probe.host} answers (Kubernetes {version.git_version}), namespace {ns}"))
        except Exception as e:  # noqa: BLE001
            failed = probe.common_failure(e, "Kubernetes API")
            if failed is None:  # /version answered with an error other than 401: the API server is there
                checks.append(Check("Kubernetes API", "pass", f"{probe.host} answers, namespace {ns}"))
            else:
                checks.append(failed)
                probe = None
    if probe is not None:
        checks.append(check_argo(probe))
        checks.append(check_argo_executor(probe, ns, getattr(a, "argo_configmap", None),
                                          getattr(settings, "run_as_user", None)))
        checks.append(check_rbac(probe, ns, settings))
        kueue_checks, cluster_queue = check_kueue(probe, ns, settings.queue_name)
        checks.extend(kueue_checks)
        nodes, nodes_error = list_nodes(probe) if settings.accelerator != "cpu" else ([], None)
        checks.append(check_accelerator(probe, settings.accelerator, nodes, nodes_error))
        das = das_in_use(nodes)
        das_check, overhead = check_das(probe, settings.accelerator, das)
        checks.append(das_check)
        if settings.queue_name:
            checks.append(check_cluster_queue(probe, cluster_queue, settings.accelerator, das, overhead))
        checks.append(check_secret(probe, ns, settings.s3_secret))
    else:
        for what in ("Argo Workflows CRDs", "Argo executor", "Workflow RBAC", "Kueue LocalQueue", "GPU resource",
                     "DAS RuntimeClass", "MinIO Secret"):
            checks.append(Check(what, "skip", "not checked: the Kubernetes API is not usable"))
    checks.append(check_gateway(settings.llm_url, settings.llm_model))
    return checks


def cmd_doctor(a: argparse.Namespace) -> int:
    checks = run_doctor(a)
    width = max(len(c.name) for c in checks)
    pad = " " * (5 + 1 + width + 2)
    for c in checks:
        print(f"{c.state.upper():<5} {c.name:<{width}}  {c.detail}")
        if c.state in ("fail", "warn") and c.fix:
            first, *more = c.fix.splitlines()
            print(f"{pad}fix: {first}")
            for line in more:  # a snippet to paste: kept as is, under "fix:"
                print(f"{pad}     {line}")
    passed = sum(c.state == "pass" for c in checks)
    warned = sum(c.state == "warn" for c in checks)
    print(f"{passed}/{len(checks)} checks passed" + (f", {warned} warning(s)" if warned else ""))
    return 0 if passed + warned == len(checks) else 2


