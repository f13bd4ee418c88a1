"""Up-front checks: turn a Workflow/WorkflowTemplate dict into a runnable workflow, or refuse.

Everything the local runner does not implement is refused here, before any process
starts, with the path of the offending field (``spec.templates[x].container.lifecycle``).
The allow-lists below are deliberately explicit and short.

Fields that would change what a step sees but have no local meaning are refused, not ignored:
``podSpecPatch``, and every volume other than an ``emptyDir`` mounted at ``/tmp`` (the pipeline's scratch
volume; locally the step sees this machine's ``/tmp``, except that the folders holding its declared outputs
are private to each attempt: :mod:`.paths`). Output artifacts are supported as :mod:`.artifacts` describes;
any other artifact feature is refused.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping
from typing import Any

from .expressions import (
    TAG,
    check_when_syntax,
    depends_from_dependencies,
    depends_tasks,
    parameter_string,
    parse_depends,
    parse_duration,
)
from .exprlang import check as check_expression
from .model import UnsupportedFeature, WorkflowError
from .resources import capacity_problem, extended_requests
from .retries import EXPRESSION_NAMES

__all__ = ["prepare_workflow", "validate_workflow", "reachable_templates", "task_depends"]

# Pure pod / cluster concerns: accepted and ignored.
_SPEC_IGNORED = {
    "serviceAccountName", "automountServiceAccountToken", "podMetadata", "nodeSelector", "tolerations",
    "affinity", "priorityClassName", "schedulerName", "podGC", "ttlStrategy", "artifactRepositoryRef",
    "workflowMetadata", "archiveLogs", "securityContext", "imagePullSecrets", "hostNetwork",
}
_SPEC_KEYS = {"entrypoint", "arguments", "templates", "parallelism", "activeDeadlineSeconds", "volumes"} | _SPEC_IGNORED
_TEMPLATE_IGNORED = {
    "metadata", "nodeSelector", "tolerations", "affinity", "priorityClassName",
    "schedulerName", "securityContext", "serviceAccountName", "automountServiceAccountToken",
}
_TEMPLATE_KEYS = {
    "name", "inputs", "outputs", "container", "script", "dag", "retryStrategy", "activeDeadlineSeconds",
    "timeout", "parallelism", "volumes",
} | _TEMPLATE_IGNORED
_CONTAINER_KEYS = {"image", "command", "args", "env", "resources", "workingDir", "imagePullPolicy",
                   "securityContext", "volumeMounts", "name"}
_SCRIPT_KEYS = _CONTAINER_KEYS | {"source"}
# dag.failFast needs nothing of its own: in argo-workflows v4.1.2 (dag.go executeDAG / assessDAGPhase) a DAG keeps
# creating tasks whose dependencies complete while any of its nodes runs, whatever failFast says, and then fails,
# which is what the walker does (tests/test_argo_conformance.py). The template-level failFast (operator.go
# checkParallelism: no new pods after a failed child) is not implemented, so it is refused (not in _TEMPLATE_KEYS).
_DAG_KEYS = {"tasks", "failFast"}
_TASK_KEYS = {"name", "template", "arguments", "dependencies", "depends", "withParam", "withItems", "when",
              "continueOn"}
_RETRY_KEYS = {"limit", "retryPolicy", "backoff", "affinity", "expression"}
_BACKOFF_KEYS = {"duration", "factor", "maxDuration", "cap"}
_RETRY_POLICIES = {"Always", "OnFailure", "OnError", "OnTransientError"}
_PARAM_KEYS = {"name", "value", "default", "description", "enum"}
_ARTIFACT_KEYS = {"name", "path", "optional", "archive"}
#: The one volume mount with a local meaning: a scratch emptyDir at /tmp (workflows/pipeline.py's).
SCRATCH_MOUNT = "/tmp"
_NO_LOCAL_MEANING = "is not supported by the local runner (it changes what the step sees, which has no local meaning)"


def _unsupported(path: str, what: str = "is not supported by the local runner") -> UnsupportedFeature:
    return UnsupportedFeature(f"{path} {what}")


def _check_keys(obj: Any, allowed: set[str], path: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise WorkflowError(f"{path} must be an object, got {type(obj).__name__}")
    for key in obj:
        if key not in allowed:
            raise _unsupported(f"{path}.{key}")
    return dict(obj)


def _as_list(obj: Any, path: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise WorkflowError(f"{path} must be a list")
    return obj


# --- turning the input into a Workflow ----------------------------------------------------------


def prepare_workflow(obj: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy as ``kind: Workflow`` with ``spec.arguments.parameters`` overridden by name.

    A ``WorkflowTemplate`` (or ``ClusterWorkflowTemplate``) becomes a Workflow named like Argo
    names submitted ones (``generateName: <template-name>-``). Unknown parameter names raise.
    """
    if not isinstance(obj, Mapping):
        raise WorkflowError(f"workflow must be a dict, got {type(obj).__name__}")
    wf = copy.deepcopy(dict(obj))
    kind = wf.get("kind", "Workflow")
    if kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        meta = dict(wf.get("metadata") or {})
        name = meta.get("name") or meta.get("generateName", "workflow-").rstrip("-")
        wf["kind"] = "Workflow"
        wf["metadata"] = {"generateName": f"{name}-", "namespace": meta.get("namespace"),
                          "labels": meta.get("labels") or {}}
    elif kind != "Workflow":
        raise WorkflowError(f"kind {kind!r} cannot be run; expected Workflow or WorkflowTemplate")
    spec = wf.get("spec")
    if not isinstance(spec, Mapping):
        raise WorkflowError("workflow has no spec")
    if "workflowTemplateRef" in spec:
        raise _unsupported("spec.workflowTemplateRef", "is not supported by the local runner (pass the template dict)")
    if parameters:
        args = dict(spec.get("arguments") or {})
        params = [dict(p) for p in _as_list(args.get("parameters"), "spec.arguments.parameters")]
        known = {p.get("name") for p in params}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise WorkflowError(
                f"unknown workflow parameter(s) {', '.join(unknown)}; the workflow declares "
                f"{', '.join(sorted(str(k) for k in known)) or 'none'}"
            )
        for p in params:
            if p.get("name") in parameters:
                p["value"] = parameter_string(parameters[p["name"]])
        args["parameters"] = params
        spec["arguments"] = args
    return wf


# --- validation ---------------------------------------------------------------------------------


def task_depends(task: Mapping[str, Any]) -> Any:
    """The parsed depends tree of a DAG task (``depends`` wins over ``dependencies``)."""
    if task.get("depends"):
        return parse_depends(str(task["depends"]))
    return depends_from_dependencies([str(d) for d in task.get("dependencies") or []])


def reachable_templates(templates: Mapping[str, Mapping[str, Any]], entry: str) -> list[str]:
    """Template names reachable from ``entry`` (entry first, then in discovery order)."""
    seen: list[str] = []
    stack = [entry]
    while stack:
        name = stack.pop()
        if name in seen or name not in templates:
            continue
        seen.append(name)
        tasks = ((templates[name].get("dag") or {}).get("tasks")) or []
        stack.extend(reversed([t.get("template") for t in tasks if t.get("template")]))
    return seen


def _check_expression_tags(value: Any, path: str) -> None:
    if isinstance(value, str):
        for m in TAG.finditer(value):
            if m.group(1).strip().startswith("="):
                raise _unsupported(f"{path}: expression tag {m.group(0)!r}")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_expression_tags(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_expression_tags(v, f"{path}[{i}]")


def _check_params(params: Any, path: str, extra: set[str] = frozenset()) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(_as_list(params, path)):
        if not isinstance(p, Mapping) or not p.get("name"):
            raise WorkflowError(f"{path}[{i}] needs a name")
        out.append(_check_keys(p, _PARAM_KEYS | extra, f"{path}[{p['name']}]"))
    return out


def _check_int_or_duration(value: Any, path: str, duration: bool) -> None:
    if value is None or (isinstance(value, str) and "{{" in value):
        return
    if duration:
        parse_duration(value, path)
    else:
        try:
            int(value)
        except (TypeError, ValueError):
            raise WorkflowError(f"{path} must be an integer, got {value!r}") from None


def _check_volumes(volumes: Any, path: str) -> set[str]:
    """Names of the declared volumes; only emptyDir volumes are accepted."""
    names: set[str] = set()
    for i, vol in enumerate(_as_list(volumes, path)):
        if not isinstance(vol, Mapping) or not vol.get("name"):
            raise WorkflowError(f"{path}[{i}] needs a name")
        vpath = f"{path}[{vol['name']}]"
        for key in vol:
            if key not in ("name", "emptyDir"):
                raise _unsupported(f"{vpath}.{key}", f"{_NO_LOCAL_MEANING}; only an emptyDir volume mounted at "
                                   f"{SCRATCH_MOUNT} is")
        if "emptyDir" not in vol:
            raise _unsupported(vpath, f"{_NO_LOCAL_MEANING}; only an emptyDir volume mounted at {SCRATCH_MOUNT} is")
        _check_keys(vol["emptyDir"], {"medium", "sizeLimit"}, f"{vpath}.emptyDir")
        names.add(str(vol["name"]))
    return names


def _check_mounts(mounts: Any, path: str, volumes: set[str]) -> None:
    for j, mount in enumerate(_as_list(mounts, path)):
        mpath = f"{path}[{mount.get('name', j) if isinstance(mount, Mapping) else j}]"
        mount = _check_keys(mount, {"name", "mountPath"}, mpath)
        if mount.get("name") not in volumes:
            raise WorkflowError(f"{mpath}: no volume named {mount.get('name')!r} in spec.volumes or the "
                                "template's volumes")
        if posixpath.normpath(str(mount.get("mountPath") or "/")) != SCRATCH_MOUNT:
            raise _unsupported(f"{mpath}.mountPath={mount.get('mountPath')!r}",
                               f"{_NO_LOCAL_MEANING}; an emptyDir volume is only supported mounted at {SCRATCH_MOUNT}")


def _check_output_artifacts(artifacts: Any, path: str) -> None:
    names: set[str] = set()
    for i, art in enumerate(_as_list(artifacts, path)):
        if not isinstance(art, Mapping) or not art.get("name"):
            raise WorkflowError(f"{path}[{i}] needs a name")
        apath = f"{path}[{art['name']}]"
        if art["name"] in names:
            raise WorkflowError(f"{path}: duplicate artifact name {art['name']!r}")
        names.add(art["name"])
        art = _check_keys(art, _ARTIFACT_KEYS, apath)
        if not art.get("path"):
            raise WorkflowError(f"{apath}.path is required")
        archive = _check_keys(art.get("archive"), {"none", "tar"}, f"{apath}.archive")
        if len(archive) > 1:
            raise WorkflowError(f"{apath}.archive: choose one of none, tar")
        _check_keys(archive.get("none"), set(), f"{apath}.archive.none")
        tar = _check_keys(archive.get("tar"), {"compressionLevel"}, f"{apath}.archive.tar")
        level = tar.get("compressionLevel")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not -1 <= level <= 9):
            raise WorkflowError(f"{apath}.archive.tar.compressionLevel must be an integer from -1 to 9")


def _check_container(tmpl: Mapping[str, Any], path: str, kind: str, secrets: Mapping[tuple[str, str], str],
                     capacity: Mapping[str, float], reachable: bool, volumes: set[str] = frozenset()) -> None:
    body = _check_keys(tmpl[kind], _SCRIPT_KEYS if kind == "script" else _CONTAINER_KEYS, f"{path}.{kind}")
    _check_mounts(body.get("volumeMounts"), f"{path}.{kind}.volumeMounts", volumes | _check_volumes(
        tmpl.get("volumes"), f"{path}.volumes"))
    if not body.get("command"):
        raise _unsupported(
            f"{path}.{kind}.command", "is required by the local runner (image entrypoints are unknown locally)"
        )
    for field in ("command", "args"):
        for j, arg in enumerate(_as_list(body.get(field), f"{path}.{kind}.{field}")):
            if not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
                raise WorkflowError(f"{path}.{kind}.{field}[{j}] must be a string")
    for j, env in enumerate(_as_list(body.get("env"), f"{path}.{kind}.env")):
        epath = f"{path}.{kind}.env[{env.get('name', j) if isinstance(env, Mapping) else j}]"
        env = _check_keys(env, {"name", "value", "valueFrom"}, epath)
        if "valueFrom" in env:
            vf = _check_keys(env["valueFrom"], {"secretKeyRef"}, f"{epath}.valueFrom")
            ref = _check_keys(vf.get("secretKeyRef"), {"name", "key", "optional"}, f"{epath}.valueFrom.secretKeyRef")
            name, key = str(ref.get("name", "")), str(ref.get("key", ""))
            if not name or not key:
                raise WorkflowError(f"{epath}.valueFrom.secretKeyRef needs name and key")
            if reachable and "{{" not in name + key and not ref.get("optional") and (name, key) not in secrets:
                raise WorkflowError(
                    f"{epath}: secret {name!r} key {key!r} is not in the local runner's secrets "
                    f"(pass secrets={{({name!r}, {key!r}): '...'}})"
                )
    resources = _check_keys(body.get("resources"), {"limits", "requests"}, f"{path}.{kind}.resources")
    needs = extended_requests(resources, f"{path}.{kind}.resources")
    problem = capacity_problem(needs, capacity) if reachable else None
    if problem:
        raise WorkflowError(f"{problem} ({path})")


def _check_retry(retry: Any, path: str) -> None:
    retry = _check_keys(retry, _RETRY_KEYS, path)
    if retry.get("retryPolicy", "OnFailure") not in _RETRY_POLICIES:
        raise WorkflowError(f"{path}.retryPolicy must be one of {sorted(_RETRY_POLICIES)}")
    _check_int_or_duration(retry.get("limit"), f"{path}.limit", duration=False)
    backoff = _check_keys(retry.get("backoff"), _BACKOFF_KEYS, f"{path}.backoff")
    for key in ("duration", "maxDuration", "cap"):
        _check_int_or_duration(backoff.get(key), f"{path}.backoff.{key}", duration=True)
    _check_int_or_duration(backoff.get("factor"), f"{path}.backoff.factor", duration=False)
    if retry.get("backoff") is not None and not backoff.get("duration"):  # Argo: "no base duration specified"
        raise WorkflowError(f"{path}.backoff.duration is required")
    if retry.get("expression"):
        try:  # {{...}} tags are resolved before Argo evaluates it: any value stands in for them here
            check_expression(TAG.sub("0", str(retry["expression"])), EXPRESSION_NAMES)
        except (UnsupportedFeature, WorkflowError) as exc:
            raise type(exc)(f"{path}.expression: {exc}") from None


def _check_dag(tmpl: Mapping[str, Any], path: str, templates: Mapping[str, Any]) -> None:
    dag = _check_keys(tmpl["dag"], _DAG_KEYS, f"{path}.dag")
    tasks = _as_list(dag.get("tasks"), f"{path}.dag.tasks")
    if not tasks:
        raise WorkflowError(f"{path}.dag.tasks is empty")
    names: list[str] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, Mapping) or not task.get("name"):
            raise WorkflowError(f"{path}.dag.tasks[{i}] needs a name")
        if task["name"] in names:
            raise WorkflowError(f"{path}.dag.tasks: duplicate task name {task['name']!r}")
        names.append(task["name"])
    graph: dict[str, list[str]] = {}
    for task in tasks:
        tpath = f"{path}.dag.tasks[{task['name']}]"
        _check_keys(task, _TASK_KEYS, tpath)
        if not task.get("template"):
            raise WorkflowError(f"{tpath}.template is required")
        if task["template"] not in templates:
            raise WorkflowError(f"{tpath}.template: no template named {task['template']!r}")
        args = _check_keys(task.get("arguments"), {"parameters"}, f"{tpath}.arguments")
        for p in _check_params(args.get("parameters"), f"{tpath}.arguments.parameters"):
            if "value" not in p:
                raise WorkflowError(f"{tpath}.arguments.parameters[{p['name']}].value is required")
        _check_keys(task.get("continueOn"), {"failed", "error"}, f"{tpath}.continueOn")
        if "withItems" in task and "withParam" in task:
            raise WorkflowError(f"{tpath}: withItems and withParam are mutually exclusive")
        if "withItems" in task and not isinstance(task["withItems"], list):
            raise WorkflowError(f"{tpath}.withItems must be a list")
        if "withParam" in task and not isinstance(task["withParam"], str):
            raise WorkflowError(f"{tpath}.withParam must be a string")
        if task.get("when"):
            try:
                check_when_syntax(str(task["when"]))
            except UnsupportedFeature as exc:
                raise UnsupportedFeature(f"{tpath}.when: {exc}") from None
        if task.get("depends") and task.get("dependencies"):
            raise WorkflowError(f"{tpath}: use either depends or dependencies, not both")
        try:
            deps = depends_tasks(task_depends(task))
        except WorkflowError as exc:
            raise WorkflowError(f"{tpath}.depends: {exc}") from None
        for dep in deps:
            if dep not in names:
                raise WorkflowError(f"{tpath} depends on unknown task {dep!r}")
        graph[task["name"]] = deps
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise WorkflowError(f"{path}.dag: dependency cycle {' -> '.join(trail + [name])}")
        state[name] = 1
        for dep in graph[name]:
            visit(dep, trail + [name])
        state[name] = 2

    for name in names:
        visit(name, [])


def validate_workflow(
    wf: Mapping[str, Any],
    *,
    capacity: Mapping[str, float] | None = None,
    secrets: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Raise UnsupportedFeature/WorkflowError for anything the local runner cannot run as written."""
    capacity = capacity or {}
    secrets = secrets or {}
    for where, obj in [("spec", wf.get("spec") or {})] + [
        (f"spec.templates[{t.get('name')}]", t) for t in ((wf.get("spec") or {}).get("templates") or [])
        if isinstance(t, Mapping)
    ]:
        if "podSpecPatch" in obj:
            raise _unsupported(f"{where}.podSpecPatch", _NO_LOCAL_MEANING)
    spec = _check_keys(wf.get("spec"), _SPEC_KEYS, "spec")
    volumes = _check_volumes(spec.get("volumes"), "spec.volumes")
    if spec.get("hostNetwork"):
        raise _unsupported("spec.hostNetwork=true")
    _check_expression_tags(spec, "spec")
    templates_list = _as_list(spec.get("templates"), "spec.templates")
    templates: dict[str, Mapping[str, Any]] = {}
    for i, tmpl in enumerate(templates_list):
        if not isinstance(tmpl, Mapping) or not tmpl.get("name"):
            raise WorkflowError(f"spec.templates[{i}] needs a name")
        if tmpl["name"] in templates:
            raise WorkflowError(f"spec.templates: duplicate template name {tmpl['name']!r}")
        templates[tmpl["name"]] = tmpl
    entry = spec.get("entrypoint")
    if not entry:
        raise WorkflowError("spec.entrypoint is required")
    if entry not in templates:
        raise WorkflowError(f"spec.entrypoint: no template named {entry!r}")
    args = _check_keys(spec.get("arguments"), {"parameters"}, "spec.arguments")
    for p in _check_params(args.get("parameters"), "spec.arguments.parameters"):
        if "value" not in p and "default" not in p:
            raise WorkflowError(f"workflow parameter {p['name']!r} has no value; pass parameters={{{p['name']!r}: ...}}")
        value = parameter_string(p.get("value", p.get("default")))
        if p.get("enum") and value not in [parameter_string(e) for e in p["enum"]]:
            raise WorkflowError(f"workflow parameter {p['name']!r}={value!r} is not one of {p['enum']}")
    for key in ("parallelism", "activeDeadlineSeconds"):
        _check_int_or_duration(spec.get(key), f"spec.{key}", duration=False)
    reachable = set(reachable_templates(templates, entry))
    for name, tmpl in templates.items():
        path = f"spec.templates[{name}]"
        if "steps" in tmpl:
            raise _unsupported(f"{path}.steps", "is not supported by the local runner (use a dag template)")
        _check_keys(tmpl, _TEMPLATE_KEYS, path)
        kinds = [k for k in ("container", "script", "dag") if k in tmpl]
        if len(kinds) != 1:
            raise WorkflowError(f"{path} must have exactly one of container, script or dag (has {kinds or 'none'})")
        kind = kinds[0]
        inputs = _check_keys(tmpl.get("inputs"), {"parameters"}, f"{path}.inputs")
        _check_params(inputs.get("parameters"), f"{path}.inputs.parameters")
        outputs = _check_keys(tmpl.get("outputs"), {"parameters"} if kind == "dag" else {"parameters", "artifacts"},
                              f"{path}.outputs")
        _check_output_artifacts(outputs.get("artifacts"), f"{path}.outputs.artifacts")
        for p in _check_params(outputs.get("parameters"), f"{path}.outputs.parameters", {"valueFrom"}):
            ppath = f"{path}.outputs.parameters[{p['name']}]"
            vf = _check_keys(p.get("valueFrom"), {"path", "default"} if kind != "dag" else {"parameter", "default"},
                             f"{ppath}.valueFrom")
            if kind != "dag" and not vf.get("path"):
                raise WorkflowError(f"{ppath}.valueFrom.path is required")
            if kind == "dag" and not vf.get("parameter"):
                raise WorkflowError(f"{ppath}.valueFrom.parameter is required")
        if "retryStrategy" in tmpl:
            if kind == "dag":
                raise _unsupported(f"{path}.retryStrategy", "on a dag template is not supported by the local runner")
            _check_retry(tmpl["retryStrategy"], f"{path}.retryStrategy")
        _check_int_or_duration(tmpl.get("timeout"), f"{path}.timeout", duration=True)
        _check_int_or_duration(tmpl.get("activeDeadlineSeconds"), f"{path}.activeDeadlineSeconds", duration=False)
        _check_int_or_duration(tmpl.get("parallelism"), f"{path}.parallelism", duration=False)
        if kind == "dag":
            _check_volumes(tmpl.get("volumes"), f"{path}.volumes")
            _check_dag(tmpl, path, templates)
        else:
            _check_container(tmpl, path, kind, secrets, capacity, name in reachable, volumes)
