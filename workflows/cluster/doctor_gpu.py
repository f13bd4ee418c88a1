"""``doctor``'s checks of what the Whisper pods ask for: the Kueue LocalQueue and its ClusterQueue's quota, the GPU
resource on the nodes, and the DAS webhook's rename and RuntimeClass (:mod:`workflows.das`), under the names Kueue
and the scheduler see."""

from __future__ import annotations

from typing import Any

from workflows.cluster.errors import HTTP_TIMEOUT_S, Check
from workflows.cluster.kube import KubeProbe, crd_versions, kube_reason


def check_kueue(probe: KubeProbe, namespace: str, queue: str | None) -> tuple[list[Check], str | None]:
    """The Kueue CRD and LocalQueue checks, and the LocalQueue's ClusterQueue (None: unknown)."""
    crd_name, lq_name = "Kueue CRDs", "Kueue LocalQueue"
    if not queue:
        return [Check(lq_name, "pass", "Whisper pods are not queued (queue_name unset): Kueue not needed")], None
    try:
        versions, via = crd_versions(probe, "localqueues", "kueue.x-k8s.io")
    except Exception as e:  # noqa: BLE001
        return [probe.common_failure(e, crd_name) or Check(crd_name, "fail", f"cannot read CRDs: {kube_reason(e)[1]}"),
                Check(lq_name, "skip", "not checked (Kueue CRDs unknown)")], None
    if not versions:
        return [Check(crd_name, "fail", "localqueues.kueue.x-k8s.io is not installed",
                      "install Kueue (https://kueue.sigs.k8s.io/docs/installation/), or the Red Hat build of Kueue on OpenShift"),
                Check(lq_name, "skip", "not checked (Kueue missing)")], None
    if "v1beta2" not in versions:
        return [Check(crd_name, "fail", f"Kueue serves {', '.join(versions)} but not v1beta2 (Kueue < 0.15)",
                      "upgrade Kueue to v0.15 or later"),
                Check(lq_name, "skip", "not checked (Kueue too old)")], None
    checks = [Check(crd_name, "pass", f"localqueues.kueue.x-k8s.io serves v1beta2 (via {via})")]
    create = (f"create it: kubectl apply -f - <<< '{{apiVersion: kueue.x-k8s.io/v1beta2, kind: LocalQueue, "
              f"metadata: {{namespace: {namespace}, name: {queue}}}, spec: {{clusterQueue: <cluster-queue>}}}}'")
    try:
        lq = probe.custom.get_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, "localqueues", queue,
                                                       _request_timeout=HTTP_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001
        status, reason = kube_reason(e)
        if status == 404:
            checks.append(Check(lq_name, "fail", f"LocalQueue {namespace}/{queue} not found", create))
        elif status == 403:
            checks.append(Check(lq_name, "fail", f"no permission to read LocalQueue {namespace}/{queue} (403): {reason}",
                                "ask your admin for get on localqueues.kueue.x-k8s.io in this namespace"))
        else:
            checks.append(probe.common_failure(e, lq_name) or Check(lq_name, "fail", f"cannot read LocalQueue: {reason}"))
        return checks, None
    cq = (lq.get("spec") or {}).get("clusterQueue", "?")
    active = next((c for c in (lq.get("status") or {}).get("conditions", []) if c.get("type") == "Active"), None)
    if active is not None and active.get("status") != "True":
        checks.append(Check(lq_name, "fail", f"LocalQueue {namespace}/{queue} is not active: {active.get('message') or active.get('reason')}",
                            f"check the ClusterQueue: kubectl get clusterqueue {cq} -o yaml"))
    else:
        checks.append(Check(lq_name, "pass", f"LocalQueue {namespace}/{queue} exists (ClusterQueue {cq})"))
    return checks, (None if cq == "?" else cq)


def _positive(quantity: Any) -> bool:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(str(quantity)) > 0
    except (ValueError, TypeError):
        return False


def list_nodes(probe: KubeProbe) -> tuple[list | None, Exception | None]:
    try:
        return probe.core.list_node(_request_timeout=HTTP_TIMEOUT_S).items, None
    except Exception as e:  # noqa: BLE001 - reported by check_accelerator
        return None, e


def _resources(node: Any) -> dict[str, Any]:
    status = node.status
    return {**((status.capacity or {}) if status else {}), **((status.allocatable or {}) if status else {})}


def das_in_use(nodes: list | None) -> bool | None:
    """True when a node advertises DAS's ``mig.das.com/*`` resources (None: the nodes could not be read)."""
    from workflows.das import is_das_resource

    if nodes is None:
        return None
    return any(is_das_resource(r) for n in nodes for r in _resources(n))


def check_accelerator(probe: KubeProbe, accelerator: str, nodes: list | None = None, error: Exception | None = None) -> Check:
    from workflows.das import das_resource_name, request_name

    name = "GPU resource"
    if accelerator == "cpu":
        return Check(name, "pass", "accelerator is cpu: no GPU resource needed")
    if nodes is None and error is None:
        nodes, error = list_nodes(probe)
    if error is not None:
        status, reason = kube_reason(error)
        if status == 403:
            return Check(name, "fail", f"no permission to list nodes (403), so {accelerator} cannot be checked",
                         "ask an admin to run `kubescribe doctor`, or for get/list on nodes (cluster-scoped)")
        return probe.common_failure(error, name) or Check(name, "fail", f"cannot list nodes: {reason}")
    nodes = nodes or []
    das = das_in_use(nodes)
    # With DAS installed its webhook renames the pod's limit before the pod is scheduled (workflows/das.py).
    wanted = das_resource_name(accelerator) if das else accelerator
    renamed = f" (DAS renames {accelerator} to it)" if wanted != accelerator else ""
    hits, others = [], set()
    for node in nodes:
        alloc = (node.status.allocatable or {}) if node.status else {}
        for res, qty in alloc.items():
            if res == wanted and _positive(qty):
                hits.append(f"{node.metadata.name} ({res}: {qty})")
            elif res.startswith(("nvidia.com/", "mig.das.com/", "amd.com/")) and _positive(qty):
                others.add(res)
    if hits:
        shown = ", ".join(hits[:3]) + (f" and {len(hits) - 3} more" if len(hits) > 3 else "")
        return Check(name, "pass", f"{wanted}{renamed} allocatable on {len(hits)} node(s): {shown}")
    if others:
        fix = f"pass one that the nodes have with --accelerator: {', '.join(sorted(request_name(r) for r in others))}"
    else:
        fix = "install the GPU stack (NVIDIA GPU operator + DAS for MIG slices), or use --accelerator cpu"
    if das and not accelerator.startswith("nvidia.com/mig-") and wanted != accelerator:
        fix = (f"DAS is installed and its webhook renames every nvidia.com/* limit, so {accelerator} cannot be had in "
               f"namespaces it covers: ask for a MIG profile instead; " + fix)
    return Check(name, "fail", f"no node has {wanted} allocatable{renamed} ({len(nodes)} node(s) seen)", fix)


def _quantities(resources: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in resources.items())


def check_das(probe: KubeProbe, accelerator: str, das: bool | None) -> tuple[Check, dict]:
    """When DAS rewrites the Whisper pods: its RuntimeClass exists, and the overhead Kueue will add to each pod.
    Returns the check and the RuntimeClass's overhead.podFixed ({} when none or unknown)."""
    from kubernetes.client.exceptions import ApiException

    from workflows.das import DAS_RUNTIME_CLASS, DAS_SCHEDULER, das_resource_name

    name = "DAS RuntimeClass"
    if accelerator == "cpu" or das_resource_name(accelerator) == accelerator:
        return Check(name, "pass", f"accelerator {accelerator}: the DAS webhook leaves the Whisper pods alone"), {}
    if das is None:
        return Check(name, "skip", "not checked: the nodes could not be read, so whether DAS is installed is unknown"), {}
    if not das:
        return Check(name, "pass", "DAS not in use (no node advertises mig.das.com/*)"), {}
    renamed = (f"DAS rewrites the Whisper pods' {accelerator} to {das_resource_name(accelerator)} and sets "
               f"schedulerName {DAS_SCHEDULER}, runtimeClassName {DAS_RUNTIME_CLASS}")
    try:
        rc = probe.call("GET", f"/apis/node.k8s.io/v1/runtimeclasses/{DAS_RUNTIME_CLASS}")
    except ApiException as e:
        if e.status == 404:
            return Check(name, "fail", f"RuntimeClass {DAS_RUNTIME_CLASS} not found, but {renamed}: the API server "
                         f"rejects a pod whose RuntimeClass does not exist",
                         f"ask the cluster admin to complete the DAS install (its own DaemonSet runs with "
                         f"RuntimeClass {DAS_RUNTIME_CLASS} too)"), {}
        if e.status == 403:
            return Check(name, "warn", f"{renamed}; no permission to read RuntimeClass {DAS_RUNTIME_CLASS} (403), so "
                         f"its existence and pod overhead (which Kueue counts) are unknown",
                         f"check `kubectl get runtimeclass {DAS_RUNTIME_CLASS} -o yaml` (overhead.podFixed)"), {}
        return Check(name, "fail", f"cannot read RuntimeClass {DAS_RUNTIME_CLASS}: {kube_reason(e)[1]}"), {}
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read RuntimeClass: {kube_reason(e)[1]}"), {}
    overhead = dict(((rc.get("overhead") or {}).get("podFixed")) or {})
    # Kueue adds overhead.podFixed to each pod's requests (kueue v0.19.2 pkg/workload/resources.go handlePodOverhead).
    counted = (f"its overhead.podFixed ({_quantities(overhead)}) is added to each Whisper pod's requests, and Kueue "
               f"counts it against the ClusterQueue" if overhead else "it has no overhead.podFixed")
    return Check(name, "pass", f"RuntimeClass {DAS_RUNTIME_CLASS} exists (handler {rc.get('handler')}); {renamed}; "
                 f"{counted}"), overhead


def check_cluster_queue(probe: KubeProbe, cq: str | None, accelerator: str, das: bool | None, overhead: dict) -> Check:
    """The LocalQueue's ClusterQueue covers what a Whisper pod asks for, under the name Kueue sees: Kueue builds a
    plain pod's Workload from the pod as stored, i.e. after the DAS webhook renamed its limit (workflows/das.py)."""
    from kubernetes.client.exceptions import ApiException

    from workflows.das import das_resource_name

    name = "Kueue ClusterQueue"
    if cq is None:
        return Check(name, "skip", "not checked (no usable LocalQueue)")
    try:
        obj = probe.call("GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{cq}")
    except ApiException as e:
        if e.status == 404:
            return Check(name, "fail", f"ClusterQueue {cq} (of the LocalQueue) not found",
                         "create it, or point the LocalQueue at an existing one")
        if e.status == 403:
            return Check(name, "warn", f"no permission to read ClusterQueue {cq} (cluster-scoped; 403), so its quota "
                         f"cannot be checked", f"ask your admin to check `kubectl get clusterqueue {cq} -o yaml`")
        return Check(name, "fail", f"cannot read ClusterQueue {cq}: {kube_reason(e)[1]}")
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read ClusterQueue: {kube_reason(e)[1]}")
    groups = (obj.get("spec") or {}).get("resourceGroups") or []
    covered = [r for g in groups for r in g.get("coveredResources") or []]
    accel = None if accelerator == "cpu" else (das_resource_name(accelerator) if das else accelerator)
    options = {accelerator, das_resource_name(accelerator)} if das is None and accel else {accel}
    needed = ["cpu", "memory", *[k for k in overhead if k not in ("cpu", "memory")]]
    missing = [r for r in needed if r not in covered]
    if accel and not options & set(covered):
        if das and accelerator in covered:
            return Check(name, "fail", f"ClusterQueue {cq} counts {accelerator}, but the DAS webhook renames the Whisper "
                         f"pods' limit to {accel} before Kueue builds their Workload: no Whisper pod is admitted",
                         f"in spec.resourceGroups[].coveredResources and flavors[].resources of ClusterQueue {cq}, "
                         f"replace {accelerator} with {accel} (the chart derives it with das.enabled=true)")
        missing.append(" or ".join(sorted(options)))
    if missing:
        return Check(name, "fail", f"ClusterQueue {cq} does not cover {', '.join(missing)} (covers "
                     f"{', '.join(covered) or 'nothing'}): Kueue admits no Workload that asks for a resource it does "
                     f"not cover", f"add {', '.join(missing)} to coveredResources and flavors[].resources of ClusterQueue {cq}")
    quota = [f"{r.get('nominalQuota')}" for g in groups for f in g.get("flavors") or [] for r in f.get("resources") or []
             if accel and r.get("name") in options]
    detail = f"ClusterQueue {cq} covers {', '.join(covered)}"
    if accel:
        detail += f"; the Whisper pods are counted as {' or '.join(sorted(options))} (nominal quota {' + '.join(quota) or '?'})"
    if overhead:
        detail += f", plus RuntimeClass overhead {_quantities(overhead)} per pod"
    return Check(name, "pass", detail)


