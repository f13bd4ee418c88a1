"""Builders of small Argo Workflow dicts whose containers run ``sys.executable -c "..."``, for the tests of the local
runner (tests/test_local_runner.py, tests/test_argo_conformance.py, tests/test_local_cancel.py)."""

from __future__ import annotations

import sys
from typing import Any

PY = sys.executable
GPU = "nvidia.com/mig-1g.10gb"


def ctr(name: str, code: str, *args: str, inputs: list[str] | dict[str, str] = (), outputs: dict[str, str] | None = None,
        **extra: Any) -> dict[str, Any]:
    """A container template running ``python -c code args...``."""
    params = [{"name": k, "default": v} for k, v in inputs.items()] if isinstance(inputs, dict) else [
        {"name": k} for k in inputs
    ]
    tmpl: dict[str, Any] = {"name": name, "container": {"image": "python:3.12", "command": [PY, "-c", code, *args]}}
    if params:
        tmpl["inputs"] = {"parameters": params}
    if outputs:
        tmpl["outputs"] = {"parameters": [{"name": k, "valueFrom": {"path": v}} for k, v in outputs.items()]}
    for key, value in extra.items():
        if key in ("env", "resources"):
            tmpl["container"][key] = value
        else:
            tmpl[key] = value
    return tmpl


def task(name: str, template: str, **kw: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "template": template}
    args = kw.pop("args", None)
    if args:
        t["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in args.items()]}
    t.update(kw)
    return t


def workflow(tasks: list[dict[str, Any]], *templates: dict[str, Any], params: dict[str, str] | None = None,
             dag_extra: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    main = {"name": "main", "dag": {"tasks": tasks}, **(dag_extra or {})}
    body: dict[str, Any] = {"entrypoint": "main", "templates": [main, *templates], **spec}
    if params:
        body["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in params.items()]}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "t-"},
            "spec": body}


OK, FAIL = ctr("ok", "print('ok')"), ctr("fail", "import sys; sys.exit(3)")
