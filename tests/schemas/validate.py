"""Offline validation of rendered manifests against the upstream schemas saved in this folder (see README.md).

* Argo kinds: ``argo-workflows-v4.1.2.schema.json`` (or v3.7.18), definition
  ``io.argoproj.workflow.v1alpha1.<Kind>``, JSON Schema draft 2020-12.
* Kueue kinds: the ``v1beta2`` ``openAPIV3Schema`` of the Kueue v0.19.2 CRD, with the OpenAPI extensions mapped to
  JSON Schema (``nullable`` → ``[type, "null"]``, ``x-kubernetes-int-or-string`` → integer or string).
* InferenceObjective (``inference.networking.x-k8s.io/v1alpha2``): the ``v1alpha2`` ``openAPIV3Schema`` of the llm-d
  router CRD (``main`` @ 520af47), mapped the same way.
* Core kinds: ``kubernetes_validate.validate(obj, "1.33.0", strict=True)``.

Neither the Argo schema nor the CRD schemas forbid unknown keys, so a misspelt field passes them. ``strict=True``
validates against a *strict copy*: every object schema with ``properties`` and neither ``additionalProperties`` nor
``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false``.

One patch to the Argo schema: it types ``io.k8s.apimachinery.pkg.util.intstr.IntOrString`` as ``string`` only,
while Kubernetes (and Argo's own CRDs, ``x-kubernetes-int-or-string: true``) accept an integer too (hera writes
``retryStrategy.limit: 2``). It is validated as integer-or-string, like the CRD extension.

Loaded by path from the tests (``load()`` below), so it does not depend on pytest's import mode.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
ARGO_SCHEMAS = {"v4.1.2": HERE / "argo-workflows-v4.1.2.schema.json", "v3.7.18": HERE / "argo-workflows-v3.7.18.schema.json"}
KUEUE_CRDS = {
    "ResourceFlavor": HERE / "kueue.x-k8s.io_resourceflavors.yaml",
    "ClusterQueue": HERE / "kueue.x-k8s.io_clusterqueues.yaml",
    "LocalQueue": HERE / "kueue.x-k8s.io_localqueues.yaml",
    "WorkloadPriorityClass": HERE / "kueue.x-k8s.io_workloadpriorityclasses.yaml",
}
KUEUE_VERSION = "v1beta2"
# Other CRD kinds: apiVersion -> {kind: CRD file}; the version block is the apiVersion's version.
OTHER_CRDS = {
    "inference.networking.x-k8s.io/v1alpha2": {
        "InferenceObjective": HERE / "inference.networking.x-k8s.io_inferenceobjectives.main-520af47.yaml",
    },
}
KUBERNETES_VERSION = "1.33.0"
INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}


def strict_copy(schema: Any) -> Any:
    """A copy where unknown keys are rejected (see module docstring)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def openapi_to_jsonschema(node: Any) -> Any:
    """Map the OpenAPI v3 extensions of a CRD schema onto JSON Schema (in a copy)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", INT_OR_STRING["anyOf"])
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _argo_definitions(version: str) -> dict:
    definitions = json.loads(ARGO_SCHEMAS[version].read_text())["definitions"]
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = dict(INT_OR_STRING)
    return definitions


@functools.cache
def argo_validator(definition: str, *, version: str = "v4.1.2", strict: bool = False) -> jsonschema.Draft202012Validator:
    """Validator for ``definitions[definition]`` of the Argo JSON schema (e.g. ``...v1alpha1.WorkflowTemplate``)."""
    definitions = _argo_definitions(version)
    if definition not in definitions:
        raise KeyError(f"{definition} is not in the Argo {version} schema")
    root = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    return jsonschema.Draft202012Validator(strict_copy(root) if strict else root)


@functools.cache
def crd_validator(path: Path, version: str, *, strict: bool = False) -> jsonschema.Draft202012Validator:
    """Validator for the ``version`` entry of ``spec.versions[].schema.openAPIV3Schema`` of the CRD at ``path``."""
    crd = yaml.safe_load(Path(path).read_text())
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = openapi_to_jsonschema(entry["schema"]["openAPIV3Schema"])
    return jsonschema.Draft202012Validator(strict_copy(schema) if strict else schema)


def kueue_validator(kind: str, *, strict: bool = False) -> jsonschema.Draft202012Validator:
    return crd_validator(KUEUE_CRDS[kind], KUEUE_VERSION, strict=strict)


def _where(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def _format(obj: dict, errors: list[jsonschema.ValidationError], source: str) -> list[str]:
    errors = sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(obj)} [{source}] at {e.json_path}: {e.message[:300]}" for e in errors]


def validation_errors(obj: dict, *, strict: bool = True, argo_version: str = "v4.1.2") -> list[str]:
    """Every schema error of ``obj`` as 'Kind/name [schema] at $.json.path: message' (empty list: valid)."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if api.startswith("argoproj.io/"):
        validator = argo_validator(f"io.argoproj.workflow.v1alpha1.{kind}", version=argo_version, strict=strict)
        label = f"Argo {argo_version} schema{' (strict)' if strict else ''}"
        return _format(obj, list(validator.iter_errors(obj)), label)
    if api == f"kueue.x-k8s.io/{KUEUE_VERSION}":
        if kind not in KUEUE_CRDS:
            return [f"{_where(obj)}: no Kueue CRD saved for kind {kind}"]
        label = f"Kueue CRD {KUEUE_VERSION}{' (strict)' if strict else ''}"
        return _format(obj, list(kueue_validator(kind, strict=strict).iter_errors(obj)), label)
    if api.startswith("kueue.x-k8s.io/"):
        return [f"{_where(obj)}: Kueue API {api}; the chart must use kueue.x-k8s.io/{KUEUE_VERSION}"]
    if api in OTHER_CRDS:
        if kind not in OTHER_CRDS[api]:
            return [f"{_where(obj)}: no CRD saved for {api} kind {kind}"]
        version = api.rsplit("/", 1)[1]
        label = f"{kind} CRD {version}{' (strict)' if strict else ''}"
        return _format(obj, list(crd_validator(OTHER_CRDS[api][kind], version, strict=strict).iter_errors(obj)), label)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=strict)
    except kubernetes_validate.ValidationError as e:  # reports the first error only
        return [f"{_where(obj)} [kubernetes {KUBERNETES_VERSION}{' strict' if strict else ''}] at {e.json_path}: {e.message[:300]}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{_where(obj)}: no Kubernetes schema ({e})"]
    return []
