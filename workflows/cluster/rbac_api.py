"""The workflow pods' RBAC through the Kubernetes API: ``templates install`` creates or updates the ServiceAccount,
Role and RoleBinding of :mod:`workflows.rbac`; ``templates install --no-rbac`` and ``doctor`` check that they exist
and grant the executor's rules (:func:`inspect_rbac`)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from dataclasses import dataclass

from workflows.cluster.errors import ClusterError
from workflows.cluster.kube import KubeProbe, kube_client, kube_reason
from workflows.settings import PipelineSettings

_RBAC = "/apis/rbac.authorization.k8s.io/v1"
_COLLECTIONS = {"ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts", "Role": _RBAC + "/namespaces/{ns}/roles",
                "RoleBinding": _RBAC + "/namespaces/{ns}/rolebindings"}


def _install_probe(a: argparse.Namespace) -> KubeProbe:
    api, _ = kube_client(getattr(a, "kubeconfig", None), getattr(a, "context", None))
    return KubeProbe(api)


def _kube_write_error(probe: KubeProbe, exc: Exception, action: str, namespace: str) -> ClusterError:
    status, reason = kube_reason(exc)
    if status == 401:
        msg = (f"the Kubernetes API {probe.host} rejected the credentials (401) while trying to {action}: refresh the "
               f"kubeconfig token")
    elif status == 403:
        escalate = (" Creating a Role also needs the permissions it grants (create, patch on "
                    "workflowtaskresults.argoproj.io) or the escalate verb." if " Role " in f" {action} " else "")
        msg = (f"no permission to {action} (403): {reason}.{escalate} Ask your cluster admin to create the "
               f"ServiceAccount, Role and RoleBinding (or to install the Helm chart), then rerun with --no-rbac")
    elif status == 404:
        msg = f"namespace {namespace} not found while trying to {action}: create it or check --namespace"
    elif not status:
        msg = (f"cannot reach the Kubernetes API at {probe.host} ({reason}) while trying to {action}: check "
               f"--kubeconfig / --context, or pass --no-rbac if the RBAC objects already exist")
    else:
        msg = f"the Kubernetes API {probe.host} answered {status} to {action}: {reason}"
    return ClusterError(msg)


def _apply(probe: KubeProbe, obj: dict) -> str:
    """Create ``obj``; if it exists, update it (Role, RoleBinding) or leave it as is (ServiceAccount: other tools add
    imagePullSecrets to it). Labels and annotations already there are kept, so a Helm-owned object stays Helm's."""
    from kubernetes.client.exceptions import ApiException

    kind, meta = obj["kind"], obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    base = _COLLECTIONS[kind].format(ns=ns)
    try:
        probe.call("POST", base, obj)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise _kube_write_error(probe, e, f"create {kind} {ns}/{name}", ns) from None
    except Exception as e:  # noqa: BLE001 - transport failures
        raise _kube_write_error(probe, e, f"create {kind} {ns}/{name}", ns) from None
    try:
        current = probe.call("GET", f"{base}/{name}")
    except Exception as e:  # noqa: BLE001
        raise _kube_write_error(probe, e, f"read {kind} {ns}/{name}", ns) from None
    if kind == "ServiceAccount":
        return "already exists"
    if kind == "RoleBinding" and current.get("roleRef") != obj["roleRef"]:
        ref = current.get("roleRef") or {}
        raise ClusterError(f"RoleBinding {ns}/{name} exists but binds {ref.get('kind')} {ref.get('name')}, and a "
                           f"RoleBinding's roleRef cannot be changed: delete it (kubectl -n {ns} delete rolebinding "
                           f"{name}) and rerun, or keep it and pass --no-rbac")
    old = current.get("metadata") or {}
    body = copy.deepcopy(obj)
    body["metadata"]["resourceVersion"] = old.get("resourceVersion")
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), **(old.get("labels") or {})}
    if old.get("annotations"):
        body["metadata"]["annotations"] = old["annotations"]
    try:
        probe.call("PUT", f"{base}/{name}", body)
    except Exception as e:  # noqa: BLE001
        raise _kube_write_error(probe, e, f"update {kind} {ns}/{name}", ns) from None
    return "updated"


def install_rbac(a: argparse.Namespace, namespace: str, settings: PipelineSettings) -> list[str]:
    """Create or update the ServiceAccount (unless the pods run as ``default``), Role and RoleBinding of
    ``workflows.rbac``; return one line per object."""
    from workflows import rbac

    sa, name = rbac.names(settings.service_account, settings.name)
    objects = [rbac.service_account(sa, namespace, rbac.INSTALL_LABELS)] if settings.service_account else []
    objects += [rbac.role(name, namespace, rbac.INSTALL_LABELS), rbac.role_binding(name, namespace, sa, rbac.INSTALL_LABELS)]
    try:
        probe = _install_probe(a)
    except ClusterError as e:
        listed = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objects)
        raise ClusterError(f"creating {listed} needs the Kubernetes API: {e}; or pass --no-rbac if they exist "
                           f"already (an admin or the Helm chart made them)") from None
    lines = []
    for obj in objects:
        what = _apply(probe, obj)
        extra = f" ({rbac.needed()})" if obj["kind"] == "Role" else ""
        lines.append(f"{obj['kind']} {obj['metadata']['name']} {what} in namespace {namespace}{extra}")
    return lines


@dataclass
class RbacReport:
    missing: list[str]  # what certainly is not there (one phrase each)
    unknown: list[str]  # what could not be read
    grants: list[str]  # "RoleBinding x -> Role y" that grant (part of) the executor's rules


def _binds(binding: dict, sa: str, namespace: str) -> bool:
    binding_ns = (binding.get("metadata") or {}).get("namespace") or namespace
    for s in binding.get("subjects") or []:
        kind, name = s.get("kind"), s.get("name")
        if kind == "ServiceAccount" and name == sa and (s.get("namespace") or binding_ns) == namespace:
            return True
        if kind == "User" and name == f"system:serviceaccount:{namespace}:{sa}":
            return True
        if kind == "Group" and name in ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"):
            return True
    return False


def inspect_rbac(probe: KubeProbe, namespace: str, sa: str) -> RbacReport:
    """Does ServiceAccount ``sa`` exist, and do the RoleBindings of ``namespace`` (and the ClusterRoleBindings, when
    readable) grant it ``workflows.rbac.EXECUTOR_RULES``? Transport errors and 401 are raised."""
    from kubernetes.client.exceptions import ApiException

    from workflows import rbac

    report = RbacReport([], [], [])

    def get(path: str, what: str) -> dict | None:
        try:
            return probe.call("GET", path)
        except ApiException as e:
            if e.status == 404:
                report.missing.append(what)
            elif e.status == 403:
                report.unknown.append(f"{what} (no permission to read it)")
            else:
                raise
        return None

    get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}", f"ServiceAccount {namespace}/{sa}")
    bindings = get(f"{_RBAC}/namespaces/{namespace}/rolebindings", f"RoleBindings of namespace {namespace}")
    if bindings is None:
        return report
    have: set[tuple[str, str, str]] = set()
    seen: list[str] = []
    roles_missing = roles_unknown = False

    def follow(binding: dict, binding_kind: str) -> None:
        nonlocal have, roles_missing, roles_unknown
        ref = binding.get("roleRef") or {}
        bname = f"{binding_kind} {(binding.get('metadata') or {}).get('name')}"
        seen.append(bname)
        before, unknown_before = len(report.missing), len(report.unknown)
        if ref.get("kind") == "Role" and binding_kind == "RoleBinding":
            role = get(f"{_RBAC}/namespaces/{namespace}/roles/{ref.get('name')}",
                       f"Role {namespace}/{ref.get('name')} (referenced by {bname})")
        elif ref.get("kind") == "ClusterRole":
            role = get(f"{_RBAC}/clusterroles/{ref.get('name')}", f"ClusterRole {ref.get('name')} (referenced by {bname})")
        else:
            return
        roles_missing |= len(report.missing) > before
        roles_unknown |= len(report.unknown) > unknown_before  # e.g. a ClusterRole a namespace admin cannot read
        got = rbac.granted((role or {}).get("rules") or [])
        if got:
            have |= got
            report.grants.append(f"{bname} -> {ref.get('kind')} {ref.get('name')}")

    for b in bindings.get("items") or []:
        if _binds(b, sa, namespace):
            follow(b, "RoleBinding")
    if rbac.missing_permissions(have):
        with contextlib.suppress(ApiException):  # cluster-wide bindings: only when readable (admins)
            for b in probe.call("GET", f"{_RBAC}/clusterrolebindings").get("items") or []:
                if _binds(b, sa, namespace):
                    follow(b, "ClusterRoleBinding")
    lacking = rbac.missing_permissions(have)
    if lacking and not roles_missing and not roles_unknown:
        if seen:
            report.missing.append(f"{'; '.join(lacking)} for ServiceAccount {sa} (bound through {', '.join(seen)})")
        else:
            report.missing.append(f"a RoleBinding of ServiceAccount {sa} to a Role with {rbac.needed()}")
    return report


def require_rbac(a: argparse.Namespace, namespace: str, settings: PipelineSettings) -> None:
    """``templates install --no-rbac``: refuse when the pods' ServiceAccount or its executor permissions are missing;
    warn (and go on) when they cannot be checked."""
    from workflows import rbac

    sa, _ = rbac.names(settings.service_account, settings.name)
    try:
        report = inspect_rbac(_install_probe(a), namespace, sa)
    except ClusterError as e:
        print(f"warning: --no-rbac: cannot check ServiceAccount {sa} and its RBAC ({e}); installing anyway", file=sys.stderr)
        return
    except Exception as e:  # noqa: BLE001 - transport failure, 401
        print(f"warning: --no-rbac: cannot check ServiceAccount {sa} and its RBAC ({kube_reason(e)[1]}); installing "
              f"anyway", file=sys.stderr)
        return
    if report.missing:
        raise ClusterError(f"--no-rbac, but namespace {namespace} lacks {'; '.join(report.missing)}. Without them the "
                           f"workflow pods cannot run or report their results (Argo's executor needs {rbac.needed()}). "
                           f"Rerun without --no-rbac to create them, or ask your admin")
    if report.unknown:
        print(f"warning: --no-rbac: could not check {'; '.join(report.unknown)}; installing anyway", file=sys.stderr)


