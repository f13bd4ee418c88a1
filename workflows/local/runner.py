"""The DAG walker: executes a compiled Argo Workflow dict on this machine.

One thread (the caller's) owns all state and makes every decision in a fixed order;
worker threads only run :class:`TaskHandler` attempts and post their outcome to a
queue. The loop is:

1. advance every active DAG instance to a fixpoint (create task nodes whose
   dependencies are fulfilled: run, skip, omit, expand, finish DAGs);
2. admit queued work FIFO against parallelism limits and extended-resource capacity;
3. wait for an attempt to finish (or a timer: retry backoff, queue timeout, deadline).

Node names follow Argo (``<wf>.<task>``, ``<wf>.<task>(0:item)``, ``<wf>.<outer>.<inner>``);
results are keyed by the name without the leading ``<wf>.``.

Timers, as argo-workflows v4.1.2 applies them (an attempt "starts" when its process starts, the local
counterpart of a pod's start on a node; before that it waits in the queue, like a pod Pending or gated by Kueue):

* template ``timeout``: each attempt's process is killed ``timeout`` after it starts (``workflowpod.go`` turns the
  timeout into the pod's ``activeDeadlineSeconds``, which the kubelet counts from the pod's start). For a template
  WITHOUT ``retryStrategy`` it also bounds the wait in the queue: an attempt not started ``timeout`` after it was
  queued fails with "timeout" (``operator.go`` ``checkTemplateTimeouts`` fails a Pending node); for a retried
  template that check sees the Running retry node, so queue time is not bounded.
* template ``activeDeadlineSeconds``: each attempt's process is killed that long after it starts (the pod's own
  ``activeDeadlineSeconds``); queue time is never counted.
* ``retryStrategy.backoff.maxDuration``: every retry attempt is also killed at the first attempt's queueing +
  maxDuration (``ARGO_DEADLINE``), and no retry starts past it (:mod:`.retries`).
* ``spec.activeDeadlineSeconds``: the whole run, from its start, queue time, backoffs and retries included; at
  the deadline running attempts are killed and queued ones failed ("Step exceeded its deadline":
  ``exec_control.go`` ``applyExecutionControl``, ``operator.go``
  ``failNodesWithoutCreatedPodsAfterDeadlineOrShutdown``), nothing new starts and no retry happens
  (``processNodeRetries``).

Waiting for workflow/DAG ``parallelism`` counts as queue time here, while Argo creates no node until
parallelism admits it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import secrets as _secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .artifacts import store_artifacts
from .expressions import depends_tasks, eval_depends, eval_when, item_label, item_scope, parse_duration, substitute
from .handler import SubprocessHandler, TaskHandler
from .model import (
    COMPLETED,
    ERROR,
    FAILED,
    FULFILLED,
    OMITTED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Event,
    LocalRunnerError,
    NodeStatus,
    RunResult,
    TaskOutcome,
    TaskSpec,
    WorkflowError,
)
from .outputs import aggregate, result_of, skipped_outputs, trim_output
from .paths import PrivatePaths
from .resources import ResourcePool, extended_requests
from .retries import ATTEMPT_KEYS, Attempt, RetryPlan, attempt_parameters, plan_retry
from .validate import prepare_workflow, task_depends, validate_workflow

__all__ = ["LocalRunner"]

_MAX_THREADS = 256


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _aggregate(prefix: str, children: list["_Node"]) -> dict[str, str]:
    """Argo's aggregation of fanned-out outputs, over the Succeeded children (:func:`.outputs.aggregate`)."""
    return aggregate(prefix, [(c.outputs, c.result) for c in children if c.phase == SUCCEEDED]) if children else {}


def _node_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "node"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


@dataclass(eq=False)
class _Node:
    name: str
    display: str
    template: str | None
    kind: str  # "leaf" | "dag" | "group" | "none" (skipped/omitted/error before running)
    owner: "_Dag | None"
    phase: str = PENDING
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    log_path: Path | None = None
    exit_code: int | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    children: list["_Node"] = field(default_factory=list)
    # leaf attempts: queued time of the current and the first attempt, the last one's outcome, retry deadline
    created: float = 0.0
    first_created: float = 0.0
    last_attempt: Attempt | None = None
    exec_deadline: float | None = None
    # leaf only
    body: dict[str, Any] = field(default_factory=dict)  # substituted template
    needs: dict[str, float] = field(default_factory=dict)
    # dag only
    dag: "_Dag | None" = None
    continue_on: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return _node_id(self.display)

    @property
    def fulfilled(self) -> bool:
        return self.phase in FULFILLED


@dataclass(eq=False)
class _Dag:
    node: _Node
    template: dict[str, Any]
    scope: dict[str, str]
    tasks: list[dict[str, Any]]
    deps: dict[str, list[str]]
    depends: dict[str, Any]
    parallelism: int | None
    task_nodes: dict[str, _Node] = field(default_factory=dict)
    active: int = 0


@dataclass(eq=False)
class _Queued:
    node: _Node
    attempt: int  # 0 for a DAG start
    enqueued: float
    not_before: float = 0.0
    final: tuple[str, str] | None = None  # a backoff Argo waits out before ending the node: (phase, message)


class LocalRunner:
    """Runs an Argo Workflow (or WorkflowTemplate) dict with local processes.

    ``capacity`` bounds extended resources (``{"nvidia.com/mig-1g.10gb": 1}``); ``secrets``
    maps ``(secret_name, key)`` to values for ``valueFrom.secretKeyRef``; ``env`` is the base
    environment of every process (default: this process's); ``time_scale`` multiplies every
    duration read from the workflow (backoff, timeout, activeDeadlineSeconds) - tests use it
    to run fast; ``max_parallel`` caps concurrently running processes on top of the
    workflow's own ``parallelism``. :meth:`cancel` stops a run from another thread or a
    signal handler.
    """

    def __init__(
        self,
        workdir: Path | str,
        capacity: Mapping[str, int | float | str] | None = None,
        secrets: Mapping[tuple[str, str], str] | None = None,
        handler: TaskHandler | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_log: Callable[[str, str], None] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        time_scale: float = 1.0,
        max_parallel: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.pool_capacity = dict(capacity or {})
        ResourcePool(self.pool_capacity)  # validates quantities early
        self.secrets = dict(secrets or {})
        self.handler: TaskHandler = handler if handler is not None else SubprocessHandler()
        self.on_event = on_event
        self.on_log = on_log
        self.env = None if env is None else dict(env)  # None: this process's environment at run time
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self.max_parallel = max_parallel
        self._stop = threading.Event()
        self._stop_reason = "stopped"

    def validate(self, workflow: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check without running; returns the prepared Workflow dict. Raises UnsupportedFeature/WorkflowError."""
        wf = prepare_workflow(workflow, parameters)
        validate_workflow(wf, capacity=ResourcePool(self.pool_capacity).capacity, secrets=self.secrets)
        return wf

    def run(self, workflow: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> RunResult:
        """Validate, then run to completion. Returns the run's phase, every node and a message."""
        wf = self.validate(workflow, parameters)
        return _Run(self, wf).execute()

    def cancel(self, reason: str = "stopped") -> None:
        """Stop the run in progress (and any later one): nothing new starts, running attempts are killed
        (SIGTERM, then SIGKILL after the handler's grace), and ``run`` returns Failed with ``reason``.

        Only sets flags, so it is safe from a signal handler or another thread; the run loop acts on it
        within half a second.
        """
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()


class _Run:
    """State of one execution; all methods run on the caller's thread except ``_work``."""

    def __init__(self, runner: LocalRunner, wf: dict[str, Any]) -> None:
        self.r = runner
        self.wf = wf
        self.spec: dict[str, Any] = wf["spec"]
        self.templates: dict[str, dict[str, Any]] = {t["name"]: t for t in self.spec["templates"]}
        meta = wf.get("metadata") or {}
        self.name = meta.get("name") or (meta.get("generateName") or "workflow-") + _secrets.token_hex(3)[:5]
        self.uid = str(uuid.uuid4())
        self.pool = ResourcePool(runner.pool_capacity)
        self.nodes: dict[str, _Node] = {}
        self.dags: list[_Dag] = []
        self.queue: list[_Queued] = []
        self.running: dict[tuple[str, int], TaskSpec] = {}
        self.done: queue.Queue[tuple[_Node, int, TaskSpec, TaskOutcome]] = queue.Queue()
        self.running_leaves = 0
        limits = [v for v in (self._int(self.spec.get("parallelism")), runner.max_parallel) if v]
        self.max_running = min(limits + [_MAX_THREADS])
        self.deadline: float | None = None
        self.halted: str | None = None  # why the run stopped early (deadline, cancel): nothing new starts
        base = runner.workdir / self.name
        self.run_dir = base
        n = 1
        while self.run_dir.exists():
            n += 1
            self.run_dir = base.with_name(f"{self.name}-{n}")
        self.started = time.time()
        self.globals = {
            "workflow.name": self.name,
            "workflow.uid": self.uid,
            "workflow.namespace": meta.get("namespace") or "default",
            "workflow.creationTimestamp": _iso(self.started),
        }
        for p in (self.spec.get("arguments") or {}).get("parameters") or []:
            self.globals[f"workflow.parameters.{p['name']}"] = _str(p.get("value", p.get("default")))

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _int(value: Any) -> int | None:
        return None if value is None else int(value)

    def _scaled(self, value: Any, what: str) -> float:
        return parse_duration(value, what) * self.r.time_scale

    def _emit(self, kind: str, node: _Node | None = None, **kw: Any) -> None:
        if self.r.on_event is None:
            return
        if node is not None:
            kw.setdefault("node", node.display)
            kw.setdefault("template", node.template)
            kw.setdefault("phase", node.phase)
            kw.setdefault("message", node.message)
            kw.setdefault("attempt", node.attempts)
            kw.setdefault("leaf", node.kind == "leaf")
        self.r.on_event(Event(kind=kind, time=time.time(), **kw))

    def _set_phase(self, node: _Node, phase: str, message: str | None = None, **event: Any) -> None:
        node.phase = phase
        if message is not None:
            node.message = message
        now = time.time()
        if phase == RUNNING and node.started is None:
            node.started = now
        if phase in FULFILLED:
            node.finished = now
            if node.started is None:
                node.started = now
        self._emit(f"node-{phase.lower()}", node, **event)

    def _new_node(self, name: str, template: str | None, kind: str, owner: _Dag | None) -> _Node:
        prefix = self.name + "."
        display = name[len(prefix):] if name.startswith(prefix) else name
        node = _Node(name=name, display=display, template=template, kind=kind, owner=owner)
        self.nodes[name] = node
        return node

    def _finished_node(self, name: str, template: str | None, owner: _Dag | None, phase: str, message: str) -> _Node:
        node = self._new_node(name, template, "none", owner)
        self._set_phase(node, phase, message)
        return node

    # --- main loop -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        entry = self.spec["entrypoint"]
        self._emit("run-started", node=None, total=self._count_leaves(entry, frozenset()), message=self.name)
        if self.spec.get("activeDeadlineSeconds") is not None:
            self.deadline = self.started + self._scaled(self.spec["activeDeadlineSeconds"], "spec.activeDeadlineSeconds")
        workers = ThreadPoolExecutor(max_workers=self.max_running, thread_name_prefix="kubescribe-local")
        try:
            args = {p["name"]: self.globals[f"workflow.parameters.{p['name']}"]
                    for p in (self.spec.get("arguments") or {}).get("parameters") or []}
            root = self._execute_template(self.name, entry, args, owner=None, where="the entrypoint")
            while True:
                self._advance()
                now = time.time()
                self._check_timers(now)
                self._admit(now, workers)
                if root.fulfilled:
                    break
                if not self.running and not self.queue and not self._advance():
                    raise LocalRunnerError(f"internal error: local run of {self.name} stalled")  # pragma: no cover
                self._wait(now)
        finally:
            for spec in self.running.values():
                spec.cancel.set()
            workers.shutdown(wait=True)
        finished = time.time()
        message = root.message if root.phase != SUCCEEDED else ""
        result = RunResult(
            phase=root.phase if root.phase in (SUCCEEDED, FAILED, ERROR) else ERROR,
            nodes={n.display: self._status(n) for n in self.nodes.values()},
            message=message,
            workflow_name=self.name,
            uid=self.uid,
            run_dir=self.run_dir,
            started=self.started,
            finished=finished,
        )
        leaves = sum(1 for n in self.nodes.values() if n.kind == "leaf")
        self._emit("run-finished", node=None, phase=result.phase, message=message, total=leaves)
        return result

    @staticmethod
    def _status(n: _Node) -> NodeStatus:
        return NodeStatus(
            phase=n.phase, template=n.template, outputs=dict(n.outputs), result=n.result, message=n.message,
            attempts=n.attempts, started=n.started, finished=n.finished, log_path=n.log_path,
            exit_code=n.exit_code, artifacts=dict(n.artifacts),
        )

    def _wait(self, now: float) -> None:
        timers = [q.not_before for q in self.queue if q.not_before > now]
        timers += [q.enqueued + limit for q in self.queue if (limit := self._queue_limit(q)) is not None]
        if self.deadline is not None and not self.halted:
            timers.append(self.deadline)
        timeout = min([0.5] + [max(0.0, t - now) for t in timers])
        try:
            item = self.done.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._on_done(*item)
            try:
                item = self.done.get_nowait()
            except queue.Empty:
                return

    def _check_timers(self, now: float) -> None:
        if self.r.cancelled and not self.halted:
            self._halt(self.r._stop_reason)
        if self.deadline is not None and not self.halted and now >= self.deadline:
            self._halt(f"Step exceeded its deadline (spec.activeDeadlineSeconds={self.spec['activeDeadlineSeconds']})")
        for q in list(self.queue):
            limit = self._queue_limit(q)
            if limit is not None and now >= q.enqueued + limit:
                self.queue.remove(q)
                outcome = TaskOutcome(FAILED, f"timeout: exceeded {limit:g}s while waiting for admission",
                                      started=now, finished=now)
                self._on_done(q.node, q.attempt, None, outcome)

    @staticmethod
    def _queue_limit(q: _Queued) -> float | None:
        """A template timeout bounds queue time only without a retryStrategy (checkTemplateTimeouts)."""
        body = q.node.body if q.node.kind == "leaf" else {}
        return None if "retryStrategy" in body or q.final else body.get("_timeout")

    def _halt(self, msg: str) -> None:
        """Stop early: kill running attempts, fail queued work; DAGs then start nothing new."""
        self.halted = msg
        for spec in self.running.values():
            spec.cancel.set()
        for q in list(self.queue):
            self.queue.remove(q)
            if q.node.kind == "leaf":  # a retry that never started is no attempt (Argo creates its node later)
                q.node.attempts = max(q.node.attempts, 1)
            self._set_phase(q.node, FAILED, msg)

    # --- templates -----------------------------------------------------------------------------

    def _count_leaves(self, name: str, stack: frozenset[str]) -> int | None:
        tmpl = self.templates[name]
        if "dag" not in tmpl:
            return 1
        if name in stack:
            return None
        total = 0
        for task in tmpl["dag"]["tasks"]:
            if "withParam" in task:
                return None
            n = self._count_leaves(task["template"], stack | {name})
            if n is None:
                return None
            total += n * (len(task["withItems"]) if "withItems" in task else 1)
        return total

    def _execute_template(self, name: str, tmpl_name: str, args: Mapping[str, str], owner: _Dag | None,
                          where: str, continue_on: Mapping[str, Any] | None = None) -> _Node:
        """Create the node that runs ``tmpl_name`` with ``args`` (queued, or finished with an error)."""
        tmpl = self.templates[tmpl_name]
        kind = "dag" if "dag" in tmpl else "leaf"
        scope = dict(self.globals)
        for p in (tmpl.get("inputs") or {}).get("parameters") or []:
            if p["name"] in args:
                value = args[p["name"]]
            elif "value" in p:
                value = _str(p["value"])
            elif "default" in p:
                value = _str(p["default"])
            else:
                return self._finished_node(
                    name, tmpl_name, owner, ERROR,
                    f"missing required input parameter {p['name']!r} of template {tmpl_name!r} ({where})",
                )
            value, unresolved = substitute(value, self.globals)
            if unresolved:
                return self._unresolved(name, tmpl_name, owner, unresolved, where)
            if p.get("enum") and value not in [_str(e) for e in p["enum"]]:
                return self._finished_node(name, tmpl_name, owner, ERROR,
                                           f"input parameter {p['name']!r}={value!r} is not one of {p['enum']}")
            scope[f"inputs.parameters.{p['name']}"] = value
        if kind == "dag":
            node = self._new_node(name, tmpl_name, "dag", owner)
            node.continue_on = dict(continue_on or {})
            tasks = tmpl["dag"]["tasks"]
            depends = {t["name"]: task_depends(t) for t in tasks}
            node.dag = _Dag(
                node=node, template=tmpl, scope=scope, tasks=tasks, depends=depends,
                deps={k: depends_tasks(v) for k, v in depends.items()},
                parallelism=self._int(tmpl.get("parallelism")),
            )
            if owner is None:
                self._start_dag(node)
            else:
                self._set_phase(node, PENDING)
                self.queue.append(_Queued(node, 0, time.time()))
            return node
        keep = {"pod.name", "node.name", *ATTEMPT_KEYS}
        body = {k: tmpl[k] for k in ("container", "script", "outputs", "retryStrategy", "timeout",
                                      "activeDeadlineSeconds") if k in tmpl}
        body, unresolved = substitute(body, scope, keep=keep.__contains__)
        if unresolved:
            return self._unresolved(name, tmpl_name, owner, unresolved, where)
        node = self._new_node(name, tmpl_name, "leaf", owner)
        node.continue_on = dict(continue_on or {})
        try:
            timeouts = [self._scaled(body[k], f"template {tmpl_name} {k}") for k in ("timeout",) if k in body]
            node.body = body
            node.body["_timeout"] = min(timeouts) if timeouts else None
            node.body["_deadline"] = (self._scaled(body["activeDeadlineSeconds"], "activeDeadlineSeconds")
                                      if "activeDeadlineSeconds" in body else None)
            proc = body.get("container") or body.get("script") or {}
            node.needs = extended_requests(proc.get("resources"), f"template {tmpl_name}")
            if "retryStrategy" in body and body["retryStrategy"].get("limit") is not None:
                int(body["retryStrategy"]["limit"])
        except (LocalRunnerError, ValueError) as exc:
            self._set_phase(node, ERROR, f"{exc} ({where})")
            return node
        self._set_phase(node, PENDING, attempt=1)
        self.queue.append(_Queued(node, 1, time.time()))
        return node

    def _unresolved(self, name: str, tmpl: str | None, owner: _Dag | None, refs: list[str], where: str) -> _Node:
        listed = ", ".join("{{" + r + "}}" for r in refs)
        return self._finished_node(name, tmpl, owner, ERROR, f"unresolved reference {listed} in {where}")

    def _start_dag(self, node: _Node) -> None:
        assert node.dag is not None
        self.dags.append(node.dag)
        self._set_phase(node, RUNNING)
        if node.owner is not None:
            node.owner.active += 1

    # --- DAG walking ---------------------------------------------------------------------------

    def _advance(self) -> bool:
        any_change = False
        changed = True
        while changed:
            changed = False
            for dag in list(self.dags):
                if self._advance_dag(dag):
                    changed = any_change = True
        return any_change

    def _advance_dag(self, dag: _Dag) -> bool:
        changed = False
        for task in dag.tasks:
            tname = task["name"]
            node = dag.task_nodes.get(tname)
            if node is not None:
                if node.kind == "group" and not node.fulfilled and all(c.fulfilled for c in node.children):
                    failed = [c for c in node.children if c.phase in (FAILED, ERROR)]
                    phase = failed[-1].phase if failed else SUCCEEDED  # dag.go: the last failed child's phase
                    msg = f"{len(failed)} of {len(node.children)} items failed" if failed else ""
                    agg = _aggregate("", node.children)
                    node.outputs = {k[len(".outputs.parameters."):]: v for k, v in agg.items()
                                    if k.startswith(".outputs.parameters.")}
                    node.result = agg.get(".outputs.result")
                    self._set_phase(node, phase, msg)
                    changed = True
                continue
            if self.halted:
                continue
            deps = [dag.task_nodes.get(d) for d in dag.deps[tname]]
            if any(d is None or not d.fulfilled for d in deps):
                continue
            changed = True
            full = f"{dag.node.name}.{tname}"
            tree = dag.depends[tname]
            if tree is not None and not eval_depends(tree, lambda t, res: self._task_result(dag, t, res)):
                dag.task_nodes[tname] = self._finished_node(full, task["template"], dag, OMITTED,
                                                            "omitted: depends condition not met")
                continue
            dag.task_nodes[tname] = self._start_task(dag, task, full)
        if all(t["name"] in dag.task_nodes and dag.task_nodes[t["name"]].fulfilled for t in dag.tasks) or (
            self.halted and all(n.fulfilled for n in dag.task_nodes.values())
        ):
            self._finish_dag(dag)
            changed = True
        return changed

    def _task_result(self, dag: _Dag, task: str, result: str | None) -> bool:
        node = dag.task_nodes[task]
        if result is None:
            spec = next(t for t in dag.tasks if t["name"] == task)
            ok = {SUCCEEDED, SKIPPED}
            cont = spec.get("continueOn") or {}
            if cont.get("failed"):
                ok.add(FAILED)
            if cont.get("error"):
                ok.add(ERROR)
            return node.phase in ok
        if result == "AnySucceeded":
            return node.kind == "group" and any(c.phase == SUCCEEDED for c in node.children)
        if result == "AllFailed":
            return node.kind == "group" and bool(node.children) and all(c.phase == FAILED for c in node.children)
        if result == "Daemoned":
            return False
        return node.phase == {"Errored": ERROR}.get(result, result)

    def _ancestors(self, dag: _Dag, task: str) -> list[str]:
        seen: list[str] = []
        stack = list(dag.deps[task])
        while stack:
            t = stack.pop(0)
            if t not in seen:
                seen.append(t)
                stack.extend(dag.deps[t])
        return seen

    def _task_scope(self, dag: _Dag, names: list[str]) -> dict[str, str]:
        scope: dict[str, str] = {}
        for t in names:
            node = dag.task_nodes.get(t)
            if node is None:
                continue
            p = f"tasks.{t}"
            scope[f"{p}.status"] = node.phase
            scope[f"{p}.id"] = node.id
            if node.started is not None:
                scope[f"{p}.startedAt"] = _iso(node.started)
            if node.finished is not None:
                scope[f"{p}.finishedAt"] = _iso(node.finished)
            if node.kind == "group":
                scope.update(_aggregate(p, node.children))
                continue
            outputs = node.outputs  # skipped/omitted: declared defaults (scope.go addSkippedNodeOutputsToScope)
            if node.phase in (SKIPPED, OMITTED) and not outputs and node.template:
                outputs = skipped_outputs(self.templates[node.template])
            for k, v in outputs.items():
                scope[f"{p}.outputs.parameters.{k}"] = v
            if node.result is not None:
                scope[f"{p}.outputs.result"] = node.result
            if node.exit_code is not None:
                scope[f"{p}.exitCode"] = str(node.exit_code)
        return scope

    def _start_task(self, dag: _Dag, task: dict[str, Any], full: str) -> _Node:
        tname = task["name"]
        where = f"task {tname!r}"
        scope = {**dag.scope, **self._task_scope(dag, self._ancestors(dag, tname))}
        expands = "withItems" in task or "withParam" in task
        is_item = (lambda k: k == "item" or k.startswith("item.")) if expands else None
        resolved, unresolved = substitute({k: v for k, v in task.items() if k != "withItems"}, scope, keep=is_item)
        if unresolved:
            return self._unresolved(full, task["template"], dag, unresolved, where)
        if not expands:
            return self._run_instance(dag, resolved, full, where)
        if "withItems" in task:
            items, unresolved = substitute(task["withItems"], scope)
            if unresolved:
                return self._unresolved(full, task["template"], dag, unresolved, where)
        else:
            try:
                items = json.loads(resolved["withParam"])
            except ValueError:
                items = None
            if not isinstance(items, list):
                return self._finished_node(
                    full, task["template"], dag, ERROR,
                    f"withParam value could not be parsed as a JSON list: {resolved['withParam'].strip()[:200]} ({where})",
                )
        if not items:  # dag.go executeDAGTask: "DAG task with empty withParams list should be skipped"
            return self._finished_node(full, task["template"], dag, SKIPPED, "Skipped, empty params")
        group = self._new_node(full, task["template"], "group", dag)
        group.continue_on = dict(task.get("continueOn") or {})
        self._set_phase(group, RUNNING)
        self._emit("node-expanded", group, total=len(items))
        body = {k: v for k, v in resolved.items() if k not in ("withItems", "withParam")}
        for i, item in enumerate(items):
            child_name = f"{full}{item_label(i, item)}"
            child_where = f"task {tname + item_label(i, item)!r}"
            child_task, unresolved = substitute(body, item_scope(item))
            if unresolved:
                group.children.append(self._unresolved(child_name, task["template"], dag, unresolved, child_where))
                continue
            group.children.append(self._run_instance(dag, child_task, child_name, child_where))
        return group

    def _run_instance(self, dag: _Dag, task: dict[str, Any], name: str, where: str) -> _Node:
        when = task.get("when")
        if when:
            try:
                go = eval_when(str(when))
            except (ValueError, LocalRunnerError) as exc:
                return self._finished_node(name, task["template"], dag, ERROR, f"{exc} ({where})")
            if not go:
                return self._finished_node(name, task["template"], dag, SKIPPED, f"when '{when}' evaluated false")
        args = {p["name"]: _str(p.get("value", "")) for p in (task.get("arguments") or {}).get("parameters") or []}
        return self._execute_template(name, task["template"], args, dag, where, task.get("continueOn"))

    def _finish_dag(self, dag: _Dag) -> None:
        self.dags.remove(dag)
        node = dag.node
        if node.owner is not None:
            node.owner.active -= 1
        dependents = {d for deps in dag.deps.values() for d in deps}
        targets = sorted(t["name"] for t in dag.tasks if t["name"] not in dependents)
        memo: dict[str, str | None] = {}

        def branch(t: str) -> str | None:
            if t not in memo:
                n = dag.task_nodes.get(t)
                if n is None:
                    memo[t] = None
                elif n.phase in COMPLETED:
                    memo[t] = n.phase
                else:  # omitted: inherit from parents, failures first
                    parents = [branch(d) for d in dag.deps[t]]
                    memo[t] = next((p for p in parents if p in (FAILED, ERROR)), SUCCEEDED)
            return memo[t]

        phase, culprit = SUCCEEDED, None
        for t in targets:
            p = branch(t)
            if p is None:
                phase, culprit = FAILED, None
                break
            if p in (FAILED, ERROR):
                cont = next(x for x in dag.tasks if x["name"] == t).get("continueOn") or {}
                if (p == FAILED and cont.get("failed")) or (p == ERROR and cont.get("error")):
                    continue
                phase, culprit = p, t
                break
        if phase != SUCCEEDED:
            self._set_phase(node, phase, self._failure_message(dag, culprit))
            return
        outputs: dict[str, str] = {}
        out_params = (dag.template.get("outputs") or {}).get("parameters") or []
        if out_params:
            scope = {**dag.scope, **self._task_scope(dag, [t["name"] for t in dag.tasks])}
            for p in out_params:
                vf = p["valueFrom"]
                value, unresolved = substitute(str(vf["parameter"]), scope)
                if unresolved:
                    if "default" not in vf:
                        self._set_phase(node, ERROR, f"output parameter {p['name']!r}: unresolved reference "
                                        + ", ".join("{{" + r + "}}" for r in unresolved))
                        return
                    value = _str(vf["default"])
                outputs[p["name"]] = value
        node.outputs = outputs
        self._set_phase(node, SUCCEEDED, "")

    def _failure_message(self, dag: _Dag, culprit: str | None) -> str:
        if self.halted:
            return self.halted
        prefix = dag.node.name + "."
        for n in self.nodes.values():  # first failed leaf (in creation order) under this DAG
            if n.name.startswith(prefix) and n.kind in ("leaf", "none") and n.phase in (FAILED, ERROR):
                return f"{n.display} {n.phase.lower()}: {n.message}"
        return f"task {culprit!r} {FAILED.lower()}" if culprit else "failed"

    # --- admission and attempts ----------------------------------------------------------------

    def _admit(self, now: float, workers: ThreadPoolExecutor) -> None:
        blocked: set[str] = set()
        for q in list(self.queue):
            if self.r.cancelled:  # a signal may land mid-loop: start nothing after it
                return
            if q.not_before > now:
                continue
            if q.final is not None:  # the backoff Argo waits out before giving up is over
                self.queue.remove(q)
                self._set_phase(q.node, *q.final)
                continue
            owner = q.node.owner
            if owner is not None and owner.parallelism and owner.active >= owner.parallelism:
                continue
            if q.node.kind == "dag":
                self.queue.remove(q)
                self._start_dag(q.node)
                continue
            if self.running_leaves >= self.max_running:
                continue
            if blocked.intersection(q.node.needs):
                continue
            if not self.pool.fits(q.node.needs):
                blocked.update(q.node.needs)  # FIFO: later tasks may not jump ahead on these resources
                continue
            self.queue.remove(q)
            self._start_attempt(q.node, q.attempt, q.enqueued, workers)

    def _start_attempt(self, node: _Node, attempt: int, enqueued: float, workers: ThreadPoolExecutor) -> None:
        node.attempts, node.created = attempt, enqueued
        if attempt == 1:
            node.first_created = enqueued
        attempt_dir = self.run_dir / node.id / f"attempt-{attempt}"
        node.log_path = attempt_dir / "stdout.log"
        try:
            spec = self._task_spec(node, attempt, attempt_dir)
        except LocalRunnerError as exc:
            self._set_phase(node, ERROR, str(exc))
            return
        self.pool.acquire(node.needs)
        self.running_leaves += 1
        if node.owner is not None:
            node.owner.active += 1
        self.running[(node.name, attempt)] = spec
        self._set_phase(node, RUNNING)
        workers.submit(self._work, node, attempt, spec)

    def _task_spec(self, node: _Node, attempt: int, attempt_dir: Path) -> TaskSpec:
        late = {**attempt_parameters(attempt, node.last_attempt), "pod.name": node.id, "node.name": node.name}
        body, _ = substitute({k: v for k, v in node.body.items() if not k.startswith("_")}, late)
        kind = "script" if "script" in body else "container"
        proc = body[kind]
        outputs = body.get("outputs") or {}
        params = outputs.get("parameters") or []
        artifacts = outputs.get("artifacts") or []
        mounts = [str(m.get("mountPath")) for m in proc.get("volumeMounts") or []]
        attempt_dir.mkdir(parents=True, exist_ok=True)
        paths = PrivatePaths(attempt_dir, [p["valueFrom"]["path"] for p in params] + [a["path"] for a in artifacts],
                             mounts)
        node.body["_paths"], node.body["_artifacts"] = paths, artifacts
        node.body["_outputs"] = [(p["name"], str(p["valueFrom"]["path"]), p["valueFrom"]) for p in params]
        rewrite = paths.rewrite
        argv = [rewrite(_str(a)) for a in proc.get("command") or []]
        if kind == "script":
            script = attempt_dir / "script"
            script.write_text(rewrite(str(proc.get("source", ""))), encoding="utf-8")
            argv.append(str(script))
        argv += [rewrite(_str(a)) for a in proc.get("args") or []]
        env = dict(os.environ if self.r.env is None else self.r.env)
        for e in proc.get("env") or []:
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                key = (str(ref["name"]), str(ref["key"]))
                if key not in self.r.secrets:
                    if ref.get("optional"):
                        continue
                    raise WorkflowError(
                        f"env {e['name']}: secret {key[0]!r} key {key[1]!r} is not in the local runner's secrets"
                    )
                env[e["name"]] = rewrite(self.r.secrets[key])
            else:
                env[e["name"]] = rewrite(_str(e.get("value", "")))
        # Counted from the process's start (see the module docstring): timeout, activeDeadlineSeconds, and the
        # absolute deadline that backoff.maxDuration gives a retry.
        limits = [x for x in (node.body.get("_timeout"), node.body.get("_deadline")) if x is not None]
        if node.exec_deadline is not None:
            limits.append(max(0.0, node.exec_deadline - time.time()))
        return TaskSpec(
            node_name=node.display,
            template=node.template or "",
            argv=tuple(argv),
            env=env,
            attempt=attempt,
            attempt_dir=attempt_dir,
            log_path=attempt_dir / "stdout.log",
            working_dir=Path(proc["workingDir"]) if proc.get("workingDir") else None,
            timeout=min(limits) if limits else None,
            on_log=self.r.on_log,
        )

    def _work(self, node: _Node, attempt: int, spec: TaskSpec) -> None:
        try:
            outcome = self.r.handler.run(spec)
        except Exception as exc:  # a broken handler is a runner-side error
            outcome = TaskOutcome(ERROR, f"task handler raised {type(exc).__name__}: {exc}")
        self.done.put((node, attempt, spec, outcome))

    def _on_done(self, node: _Node, attempt: int, spec: TaskSpec | None, outcome: TaskOutcome) -> None:
        node.attempts = attempt
        if spec is not None:
            self.running.pop((node.name, attempt), None)
            self.pool.release(node.needs)
            self.running_leaves -= 1
            if node.owner is not None:
                node.owner.active -= 1
        node.exit_code = outcome.exit_code
        node.result = result_of(outcome.stdout) if spec is not None else None
        phase, message = outcome.phase, outcome.message
        if spec is not None:
            phase, message = self._collect_outputs(node, attempt, phase, message)
        if self.halted and spec is not None and spec.cancel.is_set() and phase != SUCCEEDED:
            message = f"{message} ({self.halted})"
        now = time.time()
        if phase in (FAILED, ERROR) and not self.halted and "retryStrategy" in node.body:
            node.last_attempt = Attempt(attempt, phase, message, outcome.exit_code, node.created or now, now)
            plan = plan_retry(node.body["retryStrategy"], node.last_attempt, node.first_created or now, now,
                              self._scaled)
            if plan.retry or plan.wait > 0:
                self._schedule_retry(node, attempt, phase, message, plan, now)
                return
            phase, message = self._retry_final(phase, message, plan)
        self._set_phase(node, phase, message)

    def _collect_outputs(self, node: _Node, attempt: int, phase: str, message: str) -> tuple[str, str]:
        """Output parameters and artifacts of a finished attempt (executor.go SaveParameters, SaveArtifacts)."""
        paths: PrivatePaths = node.body["_paths"]
        outputs: dict[str, str] = {}
        for pname, orig, vf in node.body.get("_outputs", []):
            local = paths.local(orig)
            try:
                outputs[pname] = trim_output(local.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                if "default" in vf:
                    outputs[pname] = trim_output(_str(vf["default"]))
                elif phase == SUCCEEDED:
                    phase, message = ERROR, (f"output parameter {pname!r}: {orig} was not written "
                                             f"(looked for the local file {local})")
        node.outputs = outputs
        dest = self.r.workdir / "artifacts" / self.run_dir.name / node.id / f"attempt-{attempt}"
        node.artifacts, problems = store_artifacts(node.body.get("_artifacts") or [], paths.local, dest)
        if problems and phase == SUCCEEDED:
            phase, message = ERROR, "; ".join(problems)
        return phase, message

    def _schedule_retry(self, node: _Node, attempt: int, phase: str, message: str, plan: RetryPlan,
                        now: float) -> None:
        """Queue the next attempt after the backoff, or hold the node Pending for the backoff Argo waits out
        before it gives up; a retry's node is created after the backoff, so its timers start then."""
        node.phase = PENDING
        due = now + plan.wait
        if plan.retry:
            node.message = f"attempt {attempt} {phase.lower()}: {message}; retrying"
            node.exec_deadline = plan.deadline
            self.queue.append(_Queued(node, attempt + 1, due, not_before=due))
            self._emit("node-pending", node, attempt=attempt + 1)
        else:
            node.message = f"attempt {attempt} {phase.lower()}: {message}; backing off"
            final = self._retry_final(phase, message, plan)
            self.queue.append(_Queued(node, attempt, due, not_before=due, final=final))

    @staticmethod
    def _retry_final(phase: str, message: str, plan: RetryPlan) -> tuple[str, str]:
        if plan.error:
            return ERROR, f"{message}; {plan.message}"
        return phase, message if plan.message in ("", message) else f"{message}; {plan.message}"
