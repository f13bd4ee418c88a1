"""The workflow-level queue: admission, attempts on worker threads, retries, and the timers.

Queued work (leaf attempts and nested DAG starts) is admitted FIFO against the workflow's and each DAG's
``parallelism``, the runner's ``max_parallel`` and extended-resource capacity (:mod:`.resources`); an admitted
attempt is resolved into a :class:`TaskSpec` (:mod:`.templates`) and run by the :class:`TaskHandler` on a worker
thread, which only posts the outcome back. Everything else happens on the walker's thread.

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

import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .expressions import parse_duration
from .model import ERROR, FAILED, PENDING, RUNNING, SUCCEEDED, LocalRunnerError, TaskOutcome, TaskSpec
from .nodes import Ledger, Node
from .outputs import result_of
from .resources import ResourcePool
from .retries import Attempt, RetryPlan, attempt_parameters, plan_retry
from .templates import attempt_spec, collect_outputs

if TYPE_CHECKING:
    from .runner import LocalRunner

__all__ = ["Scheduler"]

_MAX_THREADS = 256


@dataclass(eq=False)
class _Queued:
    node: Node
    attempt: int  # 0 for a DAG start
    enqueued: float
    not_before: float = 0.0
    final: tuple[str, str] | None = None  # a backoff Argo waits out before ending the node: (phase, message)


class Scheduler:
    """The queue, the running attempts and the timers of one run.

    ``stopped()`` returns why the runner was cancelled (None while it was not); ``start_dag`` starts an admitted
    DAG node (the walker's). ``halted`` says why the run stopped early (deadline, cancel): nothing new starts.
    """

    def __init__(self, runner: LocalRunner, ledger: Ledger, spec: dict[str, Any], run_dir: Path, started: float,
                 stopped: Callable[[], str | None], start_dag: Callable[[Node], None]) -> None:
        self.r = runner
        self.ledger = ledger
        self.spec = spec
        self.run_dir = run_dir
        self.stopped = stopped
        self.start_dag = start_dag
        self.pool = ResourcePool(runner.pool_capacity)
        self.queue: list[_Queued] = []
        self.running: dict[tuple[str, int], TaskSpec] = {}
        self.done: queue.Queue[tuple[Node, int, TaskSpec, TaskOutcome]] = queue.Queue()
        self.running_leaves = 0
        parallelism = spec.get("parallelism")
        limits = [v for v in (None if parallelism is None else int(parallelism), runner.max_parallel) if v]
        self.max_running = min(limits + [_MAX_THREADS])
        self.deadline: float | None = None
        if spec.get("activeDeadlineSeconds") is not None:
            self.deadline = started + self.seconds(spec["activeDeadlineSeconds"], "spec.activeDeadlineSeconds")
        self.halted: str | None = None
        self.workers = ThreadPoolExecutor(max_workers=self.max_running, thread_name_prefix="kubescribe-local")

    def seconds(self, value: Any, what: str) -> float:
        """A duration of the workflow, in seconds, times the runner's ``time_scale``."""
        return parse_duration(value, what) * self.r.time_scale

    @property
    def busy(self) -> bool:
        return bool(self.running or self.queue)

    def enqueue(self, node: Node, attempt: int) -> None:
        """Queue the first attempt of a leaf (``attempt`` 1) or the start of a nested DAG (0)."""
        self.queue.append(_Queued(node, attempt, time.time()))

    def close(self) -> None:
        """Kill what still runs and wait for the worker threads."""
        for spec in self.running.values():
            spec.cancel.set()
        self.workers.shutdown(wait=True)

    # --- timers --------------------------------------------------------------------------------

    def check_timers(self, now: float) -> None:
        reason = self.stopped()
        if reason is not None and not self.halted:
            self.halt(reason)
        if self.deadline is not None and not self.halted and now >= self.deadline:
            self.halt(f"Step exceeded its deadline (spec.activeDeadlineSeconds={self.spec['activeDeadlineSeconds']})")
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
        leaf = q.node.leaf if q.node.kind == "leaf" else None
        if leaf is None or "retryStrategy" in leaf.body or q.final:
            return None
        return leaf.timeout

    def halt(self, msg: str) -> None:
        """Stop early: kill running attempts, fail queued work; DAGs then start nothing new."""
        self.halted = msg
        for spec in self.running.values():
            spec.cancel.set()
        for q in list(self.queue):
            self.queue.remove(q)
            if q.node.kind == "leaf":  # a retry that never started is no attempt (Argo creates its node later)
                q.node.attempts = max(q.node.attempts, 1)
            self.ledger.set_phase(q.node, FAILED, msg)

    def wait(self, now: float) -> None:
        """Wait for finished attempts (at most until the next timer, or half a second) and process them."""
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

    # --- admission and attempts ----------------------------------------------------------------

    def admit(self, now: float) -> None:
        blocked: set[str] = set()
        for q in list(self.queue):
            if self.stopped() is not None:  # a signal may land mid-loop: start nothing after it
                return
            if q.not_before > now:
                continue
            if q.final is not None:  # the backoff Argo waits out before giving up is over
                self.queue.remove(q)
                self.ledger.set_phase(q.node, *q.final)
                continue
            owner = q.node.owner
            if owner is not None and owner.parallelism and owner.active >= owner.parallelism:
                continue
            if q.node.kind == "dag":
                self.queue.remove(q)
                self.start_dag(q.node)
                continue
            if self.running_leaves >= self.max_running:
                continue
            needs = q.node.leaf.needs
            if blocked.intersection(needs):
                continue
            if not self.pool.fits(needs):
                blocked.update(needs)  # FIFO: later tasks may not jump ahead on these resources
                continue
            self.queue.remove(q)
            self._start_attempt(q.node, q.attempt, q.enqueued)

    def _start_attempt(self, node: Node, attempt: int, enqueued: float) -> None:
        leaf = node.leaf
        node.attempts, node.created = attempt, enqueued
        if attempt == 1:
            node.first_created = enqueued
        attempt_dir = self.run_dir / node.id / f"attempt-{attempt}"
        node.log_path = attempt_dir / "stdout.log"
        # Counted from the process's start (see the module docstring): timeout, activeDeadlineSeconds, and the
        # absolute deadline that backoff.maxDuration gives a retry.
        limits = [x for x in (leaf.timeout, leaf.deadline) if x is not None]
        if node.exec_deadline is not None:
            limits.append(max(0.0, node.exec_deadline - time.time()))
        late = {**attempt_parameters(attempt, node.last_attempt), "pod.name": node.id, "node.name": node.name}
        extra_env = None
        if self.r.events_env and self.r.events_dir is not None:  # one progress-events file per attempt
            self.r.events_dir.mkdir(parents=True, exist_ok=True)
            extra_env = {self.r.events_env: str(self.r.events_dir / f"{node.id}.{attempt}.jsonl")}
        try:
            spec, node.files = attempt_spec(
                leaf, late, attempt_dir, env=self.r.env, secrets=self.r.secrets, extra_env=extra_env,
                node_name=node.display,
                template=node.template or "", attempt=attempt, timeout=min(limits) if limits else None,
                on_log=self.r.on_log,
            )
        except LocalRunnerError as exc:
            self.ledger.set_phase(node, ERROR, str(exc))
            return
        self.pool.acquire(leaf.needs)
        self.running_leaves += 1
        if node.owner is not None:
            node.owner.active += 1
        self.running[(node.name, attempt)] = spec
        self.ledger.set_phase(node, RUNNING)
        self.workers.submit(self._work, node, attempt, spec)

    def _work(self, node: Node, attempt: int, spec: TaskSpec) -> None:
        """On a worker thread: run the attempt, post its outcome."""
        try:
            outcome = self.r.handler.run(spec)
        except Exception as exc:  # a broken handler is a runner-side error
            outcome = TaskOutcome(ERROR, f"task handler raised {type(exc).__name__}: {exc}")
        self.done.put((node, attempt, spec, outcome))

    def _on_done(self, node: Node, attempt: int, spec: TaskSpec | None, outcome: TaskOutcome) -> None:
        """An attempt ended (``spec`` None: it never started): outputs, then retry or the node's final phase."""
        node.attempts = attempt
        if spec is not None:
            self.running.pop((node.name, attempt), None)
            self.pool.release(node.leaf.needs)
            self.running_leaves -= 1
            if node.owner is not None:
                node.owner.active -= 1
        node.exit_code = outcome.exit_code
        node.result = result_of(outcome.stdout) if spec is not None else None
        phase, message = outcome.phase, outcome.message
        if spec is not None:
            dest = self.r.workdir / "artifacts" / self.run_dir.name / node.id / f"attempt-{attempt}"
            node.outputs, node.artifacts, phase, message = collect_outputs(node.files, dest, phase, message)
        if self.halted and spec is not None and spec.cancel.is_set() and phase != SUCCEEDED:
            message = f"{message} ({self.halted})"
        now = time.time()
        body = node.leaf.body
        if phase in (FAILED, ERROR) and not self.halted and "retryStrategy" in body:
            node.last_attempt = Attempt(attempt, phase, message, outcome.exit_code, node.created or now, now)
            plan = plan_retry(body["retryStrategy"], node.last_attempt, node.first_created or now, now, self.seconds)
            if plan.retry or plan.wait > 0:
                self._schedule_retry(node, attempt, phase, message, plan, now)
                return
            phase, message = _retry_final(phase, message, plan)
        self.ledger.set_phase(node, phase, message)

    def _schedule_retry(self, node: Node, attempt: int, phase: str, message: str, plan: RetryPlan,
                        now: float) -> None:
        """Queue the next attempt after the backoff, or hold the node Pending for the backoff Argo waits out
        before it gives up; a retry's node is created after the backoff, so its timers start then."""
        node.phase = PENDING
        due = now + plan.wait
        if plan.retry:
            node.message = f"attempt {attempt} {phase.lower()}: {message}; retrying"
            node.exec_deadline = plan.deadline
            self.queue.append(_Queued(node, attempt + 1, due, not_before=due))
            self.ledger.emit("node-pending", node, attempt=attempt + 1)
        else:
            node.message = f"attempt {attempt} {phase.lower()}: {message}; backing off"
            final = _retry_final(phase, message, plan)
            self.queue.append(_Queued(node, attempt, due, not_before=due, final=final))


def _retry_final(phase: str, message: str, plan: RetryPlan) -> tuple[str, str]:
    """The phase and message a node ends with when it is not retried."""
    if plan.error:
        return ERROR, f"{message}; {plan.message}"
    return phase, message if plan.message in ("", message) else f"{message}; {plan.message}"
