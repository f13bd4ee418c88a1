"""Argo's rules for output values: trimming, aggregation over fanned-out tasks, skipped tasks' defaults.

Upstream (argo-workflows v4.1.2):

* ``workflow/executor/executor.go`` ``SaveParameters`` and ``CaptureScriptResult``: a value read from an
  output file (or its ``valueFrom.default``) and ``outputs.result`` lose exactly one trailing newline
  (``strings.TrimSuffix(out, "\\n")``); ``outputs.result`` keeps the last 256 KiB.
* ``workflow/controller/operator.go`` ``processAggregateNodeOutputs``: over the Succeeded children of a
  withItems/withParam task, ``outputs.parameters`` is a JSON list of ``{name: value}`` objects,
  ``outputs.parameters.<name>`` is ``aggregatedJSONValueList``: a JSON list of the values as STRINGS unless
  every value is a JSON object or list (then the decoded values), and ``outputs.result`` a list of the
  decoded results (Go's ``json.Marshal``: compact, map keys sorted, ``<``, ``>``, ``&`` escaped).
* ``workflow/controller/scope.go`` ``addSkippedNodeOutputsToScope``: a Skipped or Omitted task has no
  outputs; references to its output parameters resolve to the declared ``valueFrom.default`` (without one
  they stay unresolved: an error, as Argo's absent optional is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .expressions import parameter_string
from .handler import RESULT_LIMIT

__all__ = ["trim_output", "result_of", "aggregate", "skipped_outputs", "go_marshal"]


def trim_output(text: str) -> str:
    """One trailing newline off, nothing else (executor.go SaveParameters)."""
    return text[:-1] if text.endswith("\n") else text


def result_of(stdout: str) -> str:
    """``outputs.result`` from a process's stdout (executor.go CaptureScriptResult)."""
    return trim_output(stdout)[-RESULT_LIMIT:]


def _go_number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 1e21 else value  # Go decodes numbers as float64


def go_marshal(value: Any) -> str:
    """Go's ``json.Marshal``: compact, map keys sorted, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _value_list(values: list[str]) -> str:
    """operator.go aggregatedJSONValueList / tryJSONUnmarshal."""
    decoded: list[Any] = []
    for value in values:
        try:
            item = json.loads(value, parse_float=_go_number)
        except ValueError:
            return go_marshal(values)
        if not isinstance(item, (list, dict)):
            return go_marshal(values)
        decoded.append(item)
    return go_marshal(decoded)


def aggregate(prefix: str, succeeded: list[tuple[Mapping[str, str], str | None]]) -> dict[str, str]:
    """Scope entries ``<prefix>.outputs.{result,parameters,parameters.<name>}`` from the Succeeded children's
    ``(outputs, result)``, in item order."""
    params: list[dict[str, str]] = []
    per_name: dict[str, list[str]] = {}
    results: list[Any] = []
    for outputs, result in succeeded:
        if outputs:
            params.append(dict(outputs))
            for name, value in outputs.items():
                per_name.setdefault(name, []).append(value)
        if result is not None:
            try:
                results.append(json.loads(result))
            except ValueError:  # Argo fails the referencing task here; kept as a string locally (see report)
                results.append(result)
    scope = {f"{prefix}.outputs.result": go_marshal(results), f"{prefix}.outputs.parameters": go_marshal(params)}
    for name, values in per_name.items():
        scope[f"{prefix}.outputs.parameters.{name}"] = _value_list(values)
    return scope


def skipped_outputs(template: Mapping[str, Any]) -> dict[str, str]:
    """Declared output parameters with a ``valueFrom.default``: what a skipped/omitted task's outputs resolve to."""
    out: dict[str, str] = {}
    for p in (template.get("outputs") or {}).get("parameters") or []:
        vf = p.get("valueFrom") or {}
        if "default" in vf:
            out[p["name"]] = parameter_string(vf["default"])
    return out
