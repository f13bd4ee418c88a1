"""``doctor``'s Argo checks: the CRDs, the workflow pods' RBAC, and the controller's executor securityContext
(which Argo's injected init/wait containers get, and which a ``restricted`` namespace needs)."""

from __future__ import annotations

from workflows.cluster.errors import Check
from workflows.cluster.kube import KubeProbe, crd_versions, kube_reason
from workflows.cluster.rbac_api import inspect_rbac
from workflows.settings import PipelineSettings


def check_argo(probe: KubeProbe) -> Check:
    name = "Argo Workflows CRDs"
    try:
        found = {plural: crd_versions(probe, plural, "argoproj.io") for plural in ("workflowtemplates", "workflows", "cronworkflows")}
    except Exception as e:  # noqa: BLE001 - turned into a failed check with the reason
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read CRDs: {kube_reason(e)[1]}")
    missing = [f"{p}.argoproj.io" for p, (versions, _) in found.items() if not versions or "v1alpha1" not in versions]
    if missing:
        return Check(name, "fail", f"{', '.join(missing)} not installed (v1alpha1)",
                     "install Argo Workflows (https://argo-workflows.readthedocs.io/en/latest/installation/) or ask your platform team")
    via = found["workflowtemplates"][1]
    return Check(name, "pass", f"workflowtemplates/workflows/cronworkflows.argoproj.io v1alpha1 served (via {via})")


def check_rbac(probe: KubeProbe, namespace: str, settings: PipelineSettings) -> Check:
    from workflows import rbac

    name = "Workflow RBAC"
    sa, role = rbac.names(settings.service_account, settings.name)
    try:
        report = inspect_rbac(probe, namespace, sa)
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read RBAC: {kube_reason(e)[1]}")
    fix = (f"`kubescribe templates install -n {namespace}` creates ServiceAccount {sa}, Role and RoleBinding {role} "
           f"(the Helm chart does with rbac.create=true); or ask your admin for a Role with {rbac.needed()} bound to it")
    if report.missing:
        return Check(name, "fail", f"missing: {'; '.join(report.missing)} (Argo's executor needs {rbac.needed()})", fix)
    if report.unknown:
        found = f"; found {', '.join(report.grants)}" if report.grants else ""
        return Check(name, "warn", f"cannot check {'; '.join(report.unknown)}{found}",
                     f"ask your admin to confirm ServiceAccount {namespace}/{sa} has {rbac.needed()}")
    return Check(name, "pass", f"ServiceAccount {namespace}/{sa} exists; {', '.join(report.grants)} grant {rbac.needed()}")




# The controller reads its configuration from this ConfigMap in its own namespace (argo-workflows v4.1.2:
# cmd/workflow-controller/main.go flag --configmap, default common.ConfigMapName in workflow/common/common.go). Its
# `executor` key is a Container whose securityContext the controller copies onto the init and wait containers it
# injects into every pod (workflow/controller/workflowpod.go newExecContainer). Either one key per field, or a single
# `config` key holding all of them (config/controller.go parseConfigMap).
ARGO_CONFIGMAP = "workflow-controller-configmap"
ARGO_NAMESPACE = "argo"  # the upstream manifests' namespace
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
RESTRICTED_SECURITY_CONTEXT = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


_SECURITY_CONTEXT_YAML = """\
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
"""  # == {"securityContext": RESTRICTED_SECURITY_CONTEXT} (tests/test_cluster_cli.py parses the printed snippet)


def executor_snippet(key: str) -> str:
    """The ConfigMap lines that give Argo's executor the restricted securityContext (``key``: "executor" or the
    legacy single "config" key, where it sits under ``executor:``)."""
    body = _SECURITY_CONTEXT_YAML.splitlines()
    if key == "config":
        body = ["executor:", *(f"  {line}" for line in body)]
    return f"data:\n  {key}: |\n" + "\n".join(f"    {line}" for line in body)


def restricted_violations(sc: dict) -> list[str]:
    """What keeps a container with securityContext ``sc`` out of the restricted Pod Security level (as fields to set)."""
    out = []
    if sc.get("runAsNonRoot") is not True:
        out.append("runAsNonRoot: true")
    if sc.get("runAsUser") == 0:
        out.append("runAsUser other than 0")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation: false")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append("capabilities.drop: [ALL]")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append("no capabilities.add but NET_BIND_SERVICE")
    if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile.type: RuntimeDefault")
    if sc.get("privileged"):
        out.append("privileged: false")
    return out


def _enforced_level(probe: KubeProbe, namespace: str) -> str | None:
    """The namespace's pod-security.kubernetes.io/enforce label ("" when unset, None when unreadable)."""
    try:
        meta = probe.call("GET", f"/api/v1/namespaces/{namespace}").get("metadata") or {}
    except Exception:  # noqa: BLE001 - namespaces are cluster-scoped: many users cannot read them
        return None
    return (meta.get("labels") or {}).get(PSA_ENFORCE, "")


def check_argo_executor(probe: KubeProbe, namespace: str, location: str | None, pods_run_as_user: int | None = None) -> Check:
    """Argo's init/wait containers get their securityContext only from the controller ConfigMap's ``executor``;
    without a restricted one a namespace enforcing the ``restricted`` Pod Security level rejects every pod.

    Also: the controller's default executor image is the root ``quay.io/argoproj/argoexec:<tag>`` (argo-workflows
    v4.1.2 workflow/controller/config.go; Dockerfile stage ``argoexec`` has no USER, ``argoexec-nonroot`` has USER
    8737). Under runAsNonRoot (the kubescribe pods set it) the kubelet refuses to start a root image unless some
    runAsUser applies, so without the ``-nonroot`` image or a runAsUser the init/wait containers never start."""
    import yaml
    from kubernetes.client.exceptions import ApiException

    name = "Argo executor"
    if location and "/" in location:
        cm_ns, _, cm_name = location.partition("/")
        candidates = [(cm_ns, cm_name)]
    else:
        cm_name = location or ARGO_CONFIGMAP
        candidates = [(c, cm_name) for c in dict.fromkeys([ARGO_NAMESPACE, namespace])]
    cm, forbidden, where = None, [], ""
    for cm_ns, cm_name in candidates:
        try:
            cm = probe.call("GET", f"/api/v1/namespaces/{cm_ns}/configmaps/{cm_name}")
            where = f"{cm_ns}/{cm_name}"
            break
        except ApiException as e:
            if e.status == 403:
                forbidden.append(f"{cm_ns}/{cm_name}")
            elif e.status != 404:
                return Check(name, "fail", f"cannot read ConfigMap {cm_ns}/{cm_name}: {kube_reason(e)[1]}")
        except Exception as e:  # noqa: BLE001
            return probe.common_failure(e, name) or Check(name, "fail", f"cannot read ConfigMap: {kube_reason(e)[1]}")
    snippet = executor_snippet("executor")
    if cm is None:
        tried = ", ".join(f"{n}/{c}" for n, c in candidates)
        if forbidden:
            return Check(name, "warn", f"no permission to read ConfigMap {forbidden[0]} (403), so Argo's executor "
                         f"securityContext cannot be checked", f"ask the Argo admin to make sure it has:\n{snippet}")
        return Check(name, "warn", f"Argo's controller ConfigMap not found ({tried}), so its executor securityContext "
                     f"cannot be checked", f"pass --argo-configmap NAMESPACE/NAME (Helm installs of Argo name it "
                     f"<release>-workflow-controller-configmap); it needs:\n{snippet}")
    data = cm.get("data") or {}
    key = "config" if "config" in data else "executor"
    try:
        parsed = yaml.safe_load(data.get(key) or "") or {}
        executor = (parsed.get("executor") or {}) if key == "config" else parsed
        sc = executor.get("securityContext") or {}
        if not isinstance(sc, dict):
            raise TypeError
    except (yaml.YAMLError, AttributeError, TypeError):
        return Check(name, "fail", f"ConfigMap {where}: data.{key} is not a YAML mapping", f"fix data.{key} of {where}")
    problems = restricted_violations(sc)
    cm_ns, cm_name = where.split("/", 1)
    edit = f"kubectl -n {cm_ns} edit configmap {cm_name}, and add (keeping its other keys):"
    root_image = (not str(executor.get("image") or "").endswith("-nonroot") and not sc.get("runAsUser")
                  and not pods_run_as_user)
    root_note = ("the executor image is Argo's default root argoexec and no runAsUser applies, so under the pods' "
                 "runAsNonRoot the kubelet will not start the init/wait containers, unless the platform assigns a UID "
                 "(OpenShift) or the controller runs with --executor-image ...-nonroot")
    root_fix = (f"under data.{key}{'.executor' if key == 'config' else ''} also set the non-root executor image "
                f"(USER 8737; Argo docs/workflow-pod-security-context.md): "
                f"image: quay.io/argoproj/argoexec:<your Argo version>-nonroot")
    if not problems:
        detail = f"ConfigMap {where}: executor.securityContext meets the restricted Pod Security level"
        if root_image:
            return Check(name, "warn", f"{detail}; but {root_note}", root_fix)
        return Check(name, "pass", detail)
    fix = f"{edit}\n{executor_snippet(key)}" + (f"\nand {root_fix}" if root_image else "")
    detail = (f"ConfigMap {where}: executor.securityContext lacks {', '.join(problems)}, so Argo's init/wait "
              f"containers break the restricted Pod Security level")
    level = _enforced_level(probe, namespace)
    if level == "restricted":
        return Check(name, "fail", f"{detail}, which namespace {namespace} enforces: every pod is rejected", fix)
    why = "the namespace's labels are not readable" if level is None else f"namespace {namespace} enforces {level or 'no level'}"
    return Check(name, "warn", f"{detail} ({why}; pods are rejected where {PSA_ENFORCE}=restricted)", fix)


