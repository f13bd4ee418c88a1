"""Template resolution: from a template and its arguments to what runs, and from what ran to its outputs.

* :func:`input_scope`: input parameters (the caller's argument, else ``value``, else ``default``; ``enum``)
  into the template's ``{{inputs.parameters.*}}`` scope;
* :func:`prepare_leaf`: a container/script template into a :class:`Leaf` - its body substituted except for the
  tags bound per attempt (``{{pod.name}}``, ``{{node.name}}``, ``{{retries}}``, ``{{lastRetry.*}}``, as Argo's
  ``executeTemplate`` binds them), its timeouts and the extended resources it asks for;
* :func:`attempt_spec`: one attempt into a :class:`TaskSpec` - the per-attempt tags, argv, environment with
  secrets, and declared output paths made private to the attempt (:mod:`.paths`);
* :func:`collect_outputs`: a finished attempt's files into output parameters and stored artifacts
  (``executor.go`` ``SaveParameters``, ``SaveArtifacts``);
* :func:`dag_outputs`: a dag template's output parameters from its tasks' scope.

Functions of their arguments: no node, queue or thread here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import store_artifacts
from .expressions import parameter_string, substitute
from .model import ERROR, SUCCEEDED, TaskSpec, WorkflowError
from .outputs import trim_output
from .paths import PrivatePaths
from .resources import extended_requests
from .retries import ATTEMPT_KEYS

__all__ = [
    "Leaf",
    "AttemptFiles",
    "unresolved_message",
    "input_scope",
    "prepare_leaf",
    "attempt_spec",
    "collect_outputs",
    "dag_outputs",
]

#: The parts of a container/script template a leaf keeps.
_LEAF_KEYS = ("container", "script", "outputs", "retryStrategy", "timeout", "activeDeadlineSeconds")
#: Tags bound per attempt, left in the leaf's body until the attempt starts.
_LATE = frozenset({"pod.name", "node.name", *ATTEMPT_KEYS})


@dataclass
class Leaf:
    """A container/script template, resolved but for the per-attempt tags. ``timeout`` and ``deadline``
    (``activeDeadlineSeconds``) are seconds, already scaled; ``needs`` its extended resources."""

    body: dict[str, Any]
    timeout: float | None = None
    deadline: float | None = None
    needs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptFiles:
    """Where one attempt's declared outputs are: ``parameters`` is ``(name, in-pod path, valueFrom)``."""

    paths: PrivatePaths
    parameters: list[tuple[str, str, Mapping[str, Any]]]
    artifacts: list[Mapping[str, Any]]


def unresolved_message(refs: list[str], where: str) -> str:
    return f"unresolved reference {', '.join('{{' + r + '}}' for r in refs)} in {where}"


def input_scope(tmpl: Mapping[str, Any], tmpl_name: str, args: Mapping[str, str], globals_: Mapping[str, str],
                where: str) -> tuple[dict[str, str] | None, str]:
    """``(scope, "")``: the globals plus ``inputs.parameters.*``; or ``(None, why)`` when an input is missing,
    unresolved or not in its ``enum``."""
    scope = dict(globals_)
    for p in (tmpl.get("inputs") or {}).get("parameters") or []:
        if p["name"] in args:
            value = args[p["name"]]
        elif "value" in p:
            value = parameter_string(p["value"])
        elif "default" in p:
            value = parameter_string(p["default"])
        else:
            return None, f"missing required input parameter {p['name']!r} of template {tmpl_name!r} ({where})"
        value, unresolved = substitute(value, globals_)
        if unresolved:
            return None, unresolved_message(unresolved, where)
        if p.get("enum") and value not in [parameter_string(e) for e in p["enum"]]:
            return None, f"input parameter {p['name']!r}={value!r} is not one of {p['enum']}"
        scope[f"inputs.parameters.{p['name']}"] = value
    return scope, ""


def prepare_leaf(tmpl: Mapping[str, Any], scope: Mapping[str, str],
                 seconds: Callable[[Any, str], float]) -> tuple[Leaf | None, list[str]]:
    """``(leaf, [])``, or ``(None, refs)`` when references are unresolved. ``seconds`` parses (and scales) a
    duration. Raises LocalRunnerError or ValueError for a bad timeout, resource quantity or retry limit."""
    body = {k: tmpl[k] for k in _LEAF_KEYS if k in tmpl}
    body, unresolved = substitute(body, scope, keep=_LATE.__contains__)
    if unresolved:
        return None, unresolved
    name = tmpl["name"]
    leaf = Leaf(body)
    if "timeout" in body:
        leaf.timeout = seconds(body["timeout"], f"template {name} timeout")
    if "activeDeadlineSeconds" in body:
        leaf.deadline = seconds(body["activeDeadlineSeconds"], "activeDeadlineSeconds")
    proc = body.get("container") or body.get("script") or {}
    leaf.needs = extended_requests(proc.get("resources"), f"template {name}")
    if "retryStrategy" in body and body["retryStrategy"].get("limit") is not None:
        int(body["retryStrategy"]["limit"])
    return leaf, []


def attempt_spec(
    leaf: Leaf,
    late: Mapping[str, str],
    attempt_dir: Path,
    *,
    env: Mapping[str, str] | None,
    secrets: Mapping[tuple[str, str], str],
    extra_env: Mapping[str, str] | None = None,
    **spec: Any,
) -> tuple[TaskSpec, AttemptFiles]:
    """The TaskSpec of one attempt (``spec`` holds its remaining fields) and where its outputs will be.

    ``late`` binds the per-attempt tags; ``env`` is the base environment (None: this process's), ``extra_env`` is
    added to it (the template's own env still wins). Declared output
    paths get private folders under ``attempt_dir``, and every mention of them in argv, env and script source is
    rewritten. Raises WorkflowError for a secret the runner was not given.
    """
    body, _ = substitute(leaf.body, late)
    kind = "script" if "script" in body else "container"
    proc = body[kind]
    outputs = body.get("outputs") or {}
    params = outputs.get("parameters") or []
    artifacts = outputs.get("artifacts") or []
    mounts = [str(m.get("mountPath")) for m in proc.get("volumeMounts") or []]
    attempt_dir.mkdir(parents=True, exist_ok=True)
    paths = PrivatePaths(attempt_dir, [p["valueFrom"]["path"] for p in params] + [a["path"] for a in artifacts],
                         mounts)
    files = AttemptFiles(paths, [(p["name"], str(p["valueFrom"]["path"]), p["valueFrom"]) for p in params], artifacts)
    rewrite = paths.rewrite
    argv = [rewrite(parameter_string(a)) for a in proc.get("command") or []]
    if kind == "script":
        script = attempt_dir / "script"
        script.write_text(rewrite(str(proc.get("source", ""))), encoding="utf-8")
        argv.append(str(script))
    argv += [rewrite(parameter_string(a)) for a in proc.get("args") or []]
    environ = {**(os.environ if env is None else env), **(extra_env or {})}
    for e in proc.get("env") or []:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            key = (str(ref["name"]), str(ref["key"]))
            if key not in secrets:
                if ref.get("optional"):
                    continue
                raise WorkflowError(
                    f"env {e['name']}: secret {key[0]!r} key {key[1]!r} is not in the local runner's secrets"
                )
            environ[e["name"]] = rewrite(secrets[key])
        else:
            environ[e["name"]] = rewrite(parameter_string(e.get("value", "")))
    task = TaskSpec(
        argv=tuple(argv),
        env=environ,
        attempt_dir=attempt_dir,
        log_path=attempt_dir / "stdout.log",
        working_dir=Path(proc["workingDir"]) if proc.get("workingDir") else None,
        **spec,
    )
    return task, files


def collect_outputs(files: AttemptFiles, dest: Path, phase: str,
                    message: str) -> tuple[dict[str, str], dict[str, Path], str, str]:
    """Output parameters and artifacts (stored under ``dest``) of a finished attempt, and its phase and message:
    a Succeeded attempt whose declared outputs are missing is an Error."""
    outputs: dict[str, str] = {}
    for pname, orig, vf in files.parameters:
        local = files.paths.local(orig)
        try:
            outputs[pname] = trim_output(local.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            if "default" in vf:
                outputs[pname] = trim_output(parameter_string(vf["default"]))
            elif phase == SUCCEEDED:
                phase, message = ERROR, (f"output parameter {pname!r}: {orig} was not written "
                                         f"(looked for the local file {local})")
    artifacts, problems = store_artifacts(files.artifacts, files.paths.local, dest)
    if problems and phase == SUCCEEDED:
        phase, message = ERROR, "; ".join(problems)
    return outputs, artifacts, phase, message


def dag_outputs(tmpl: Mapping[str, Any], scope: Mapping[str, str]) -> tuple[dict[str, str] | None, str]:
    """``(outputs, "")`` of a dag template (``valueFrom.parameter`` resolved in ``scope``, else its default),
    or ``(None, why)``."""
    outputs: dict[str, str] = {}
    for p in (tmpl.get("outputs") or {}).get("parameters") or []:
        vf = p["valueFrom"]
        value, unresolved = substitute(str(vf["parameter"]), scope)
        if unresolved:
            if "default" not in vf:
                return None, f"output parameter {p['name']!r}: unresolved reference " + ", ".join(
                    "{{" + r + "}}" for r in unresolved)
            value = parameter_string(vf["default"])
        outputs[p["name"]] = value
    return outputs, ""
