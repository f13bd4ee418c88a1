"""The workflow pods' Kubernetes identity (ServiceAccount, Role, RoleBinding): the one owner of the Role's rules.

Users: ``kubescribe templates install`` (``workflows/cluster/rbac_api.py``) creates or updates these objects,
``kubescribe doctor`` checks them with :func:`missing_permissions`, and the chart's ``templates/rbac.yaml`` is
generated from :func:`role` and :func:`role_binding` by ``make chart`` (``tools/chart.py``).

Upstream (argoproj/argo-workflows v4.1.2): ``docs/workflow-rbac.md`` ("The minimum for the executor to function",
>= v3.4) and ``manifests/quick-start/base/executor/emissary/executor-role.yaml``: the emissary executor needs
``create`` and ``patch`` on ``workflowtaskresults.argoproj.io``, nothing else. The steps themselves never call the
Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RBAC_API = "rbac.authorization.k8s.io/v1"

# The executor's rules (the only thing the workflow pods may do through the Kubernetes API).
EXECUTOR_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
)

# Labels of the objects `kubescribe templates install` creates (the chart uses its own, kubescribe.labels).
INSTALL_LABELS = {"app.kubernetes.io/name": "kubescribe", "app.kubernetes.io/component": "workflow-rbac",
                  "app.kubernetes.io/managed-by": "kubescribe-cli"}


def rules() -> list[dict[str, list[str]]]:
    return [{k: list(v) for k, v in r.items()} for r in EXECUTOR_RULES]


def names(service_account: str | None, template_name: str) -> tuple[str, str]:
    """(service account the pods run as, name of its Role and RoleBinding). No service account set: Argo runs the
    pods as the namespace's ``default`` one (not created here), and the Role/RoleBinding are ``<template>-executor``."""
    if service_account:
        return service_account, service_account
    return "default", f"{template_name}-executor"


def _meta(name: str, namespace: str, labels: Mapping[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return meta


def service_account(name: str, namespace: str, labels: Mapping[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, labels)}


def role(name: str, namespace: str, labels: Mapping[str, str] | None = None) -> dict:
    return {"apiVersion": RBAC_API, "kind": "Role", "metadata": _meta(name, namespace, labels), "rules": rules()}


def role_binding(name: str, namespace: str, subject: str, labels: Mapping[str, str] | None = None) -> dict:
    return {
        "apiVersion": RBAC_API, "kind": "RoleBinding", "metadata": _meta(name, namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": namespace}],
    }


# --- reading rules (doctor, templates install --no-rbac) ------------------------------------------------------------


def _grants(rule: Mapping[str, Any], group: str, resource: str, verb: str) -> bool:
    if rule.get("resourceNames"):  # a rule limited to named objects does not cover create
        return False
    return (any(g in (group, "*") for g in rule.get("apiGroups") or [])
            and any(r in (resource, "*") for r in rule.get("resources") or [])
            and any(v in (verb, "*") for v in rule.get("verbs") or []))


def granted(rules_: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """The (apiGroup, resource, verb) of :data:`EXECUTOR_RULES` that ``rules_`` grant."""
    rules_ = list(rules_)
    return {(g, res, v) for need in EXECUTOR_RULES for g in need["apiGroups"] for res in need["resources"]
            for v in need["verbs"] if any(_grants(r, g, res, v) for r in rules_)}


def missing_permissions(have: set[tuple[str, str, str]]) -> list[str]:
    """What of :data:`EXECUTOR_RULES` is not in ``have``, as ``"patch on workflowtaskresults.argoproj.io"`` lines."""
    out: dict[str, list[str]] = {}
    for need in EXECUTOR_RULES:
        for g in need["apiGroups"]:
            for res in need["resources"]:
                for v in need["verbs"]:
                    if (g, res, v) not in have:
                        out.setdefault(f"{res}.{g}" if g else res, []).append(v)
    return [f"{', '.join(verbs)} on {what}" for what, verbs in out.items()]


def needed() -> str:
    """``create, patch on workflowtaskresults.argoproj.io`` (for messages)."""
    return "; ".join(missing_permissions(set()))

