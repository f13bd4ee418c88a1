"""The local runner's entry point: :class:`LocalRunner` validates a Workflow dict and runs it to completion.

One thread (the caller's) owns all state and makes every decision in a fixed order; worker threads only run
:class:`TaskHandler` attempts and post their outcome to a queue. The loop is:

1. advance every active DAG instance to a fixpoint (:mod:`.dag`: create task nodes whose dependencies are
   fulfilled - run, skip, omit, expand, finish DAGs);
2. act on the timers, then admit queued work FIFO against parallelism limits and extended-resource capacity
   (:mod:`.scheduler`, which also describes the timers);
3. wait for an attempt to finish (or a timer: retry backoff, queue timeout, deadline).

Nodes and events are kept by :mod:`.nodes`; templates are resolved into what runs by :mod:`.templates`.
"""

from __future__ import annotations

import secrets as _secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .dag import Walker, count_leaves
from .expressions import parameter_string
from .handler import SubprocessHandler, TaskHandler
from .model import ERROR, FAILED, SUCCEEDED, Event, LocalRunnerError, RunResult
from .nodes import Ledger, iso
from .resources import ResourcePool
from .scheduler import Scheduler
from .validate import prepare_workflow, validate_workflow

__all__ = ["LocalRunner"]


class LocalRunner:
    """Runs an Argo Workflow (or WorkflowTemplate) dict with local processes.

    ``capacity`` bounds extended resources (``{"nvidia.com/mig-1g.10gb": 1}``); ``secrets``
    maps ``(secret_name, key)`` to values for ``valueFrom.secretKeyRef``; ``env`` is the base
    environment of every process (default: this process's); ``time_scale`` multiplies every
    duration read from the workflow (backoff, timeout, activeDeadlineSeconds) - tests use it
    to run fast; ``max_parallel`` caps concurrently running processes on top of the
    workflow's own ``parallelism``. With ``events_env`` and ``events_dir``, every attempt gets
    the environment variable ``events_env`` naming its own file
    ``<events_dir>/<node id>.<attempt>.jsonl`` (where the steps append progress events, see
    ``steps/events.py``; whoever runs the workflow reads them). :meth:`cancel` stops a run
    from another thread or a signal handler.
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
        events_env: str | None = None,
        events_dir: Path | str | None = None,
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
        self.events_env = events_env
        self.events_dir = None if events_dir is None else Path(events_dir)
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
    """One execution: names the workflow, binds its globals, and drives the walker and the scheduler."""

    def __init__(self, runner: LocalRunner, wf: dict[str, Any]) -> None:
        self.spec: dict[str, Any] = wf["spec"]
        self.templates: dict[str, dict[str, Any]] = {t["name"]: t for t in self.spec["templates"]}
        meta = wf.get("metadata") or {}
        self.name = meta.get("name") or (meta.get("generateName") or "workflow-") + _secrets.token_hex(3)[:5]
        self.uid = str(uuid.uuid4())
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
            "workflow.creationTimestamp": iso(self.started),
        }
        self.args: dict[str, str] = {}
        for p in (self.spec.get("arguments") or {}).get("parameters") or []:
            self.args[p["name"]] = parameter_string(p.get("value", p.get("default")))
            self.globals[f"workflow.parameters.{p['name']}"] = self.args[p["name"]]
        self.ledger = Ledger(self.name, runner.on_event)
        self.runner = runner

    def _stopped(self) -> str | None:
        return self.runner._stop_reason if self.runner.cancelled else None

    def execute(self) -> RunResult:
        entry = self.spec["entrypoint"]
        self.ledger.emit("run-started", node=None, total=count_leaves(self.templates, entry), message=self.name)
        # The scheduler admits nested DAGs for their parent's parallelism; the walker (made next) starts them.
        scheduler = Scheduler(self.runner, self.ledger, self.spec, self.run_dir, self.started, self._stopped,
                              start_dag=lambda node: walker.start_dag(node))
        walker = Walker(self.ledger, scheduler, self.templates, self.globals)
        try:
            root = walker.execute_template(self.name, entry, self.args, owner=None, where="the entrypoint")
            while True:
                walker.advance()
                now = time.time()
                scheduler.check_timers(now)
                scheduler.admit(now)
                if root.fulfilled:
                    break
                if not scheduler.busy and not walker.advance():
                    raise LocalRunnerError(f"internal error: local run of {self.name} stalled")  # pragma: no cover
                scheduler.wait(now)
        finally:
            scheduler.close()
        finished = time.time()
        message = root.message if root.phase != SUCCEEDED else ""
        result = RunResult(
            phase=root.phase if root.phase in (SUCCEEDED, FAILED, ERROR) else ERROR,
            nodes=self.ledger.statuses(),
            message=message,
            workflow_name=self.name,
            uid=self.uid,
            run_dir=self.run_dir,
            started=self.started,
            finished=finished,
        )
        self.ledger.emit("run-finished", node=None, phase=result.phase, message=message, total=self.ledger.leaves())
        return result
