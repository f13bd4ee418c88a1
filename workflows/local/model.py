"""Plain data types shared by the local runner modules (no behaviour here)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LocalRunnerError",
    "UnsupportedFeature",
    "WorkflowError",
    "NodeStatus",
    "RunResult",
    "Event",
    "TaskSpec",
    "TaskOutcome",
    "SUCCEEDED",
    "FAILED",
    "ERROR",
    "SKIPPED",
    "OMITTED",
    "PENDING",
    "RUNNING",
]

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
ERROR = "Error"
SKIPPED = "Skipped"
OMITTED = "Omitted"

#: Phases after which a node never changes again (Argo's "fulfilled").
FULFILLED = frozenset({SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED})
#: Fulfilled phases that count as "completed" for Argo's DAG branch assessment (Omitted is not).
COMPLETED = frozenset({SUCCEEDED, FAILED, ERROR, SKIPPED})


class LocalRunnerError(Exception):
    """Base class of every error the local runner raises before or instead of running."""


class UnsupportedFeature(LocalRunnerError):
    """The workflow uses an Argo feature the local runner does not implement."""


class WorkflowError(LocalRunnerError, ValueError):
    """The workflow is invalid or cannot run locally (bad reference, unknown parameter, no capacity...)."""


@dataclass(frozen=True)
class NodeStatus:
    """Final state of one node. ``outputs`` holds output parameters; ``result`` the stdout less one trailing
    newline; ``artifacts`` maps each stored output artifact's name to its file (or folder) in the local
    artifact repository (``<workdir>/artifacts/...``)."""

    phase: str
    template: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    message: str = ""
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    log_path: Path | None = None
    exit_code: int | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`LocalRunner.run`. ``nodes`` is keyed by node name without the workflow prefix."""

    phase: str
    nodes: dict[str, NodeStatus]
    message: str
    workflow_name: str
    uid: str
    run_dir: Path
    started: float
    finished: float

    @property
    def succeeded(self) -> bool:
        return self.phase == SUCCEEDED


@dataclass(frozen=True)
class Event:
    """Progress notification, always delivered on the thread that called ``run``.

    ``kind`` is one of ``run-started``, ``run-finished``, ``node-pending``, ``node-running``,
    ``node-succeeded``, ``node-failed``, ``node-error``, ``node-skipped``, ``node-omitted``,
    ``node-expanded`` (a withItems/withParam task learned its item count, in ``total``).
    ``leaf`` is true for nodes that run a process (container/script). For ``run-started``
    ``total`` is the number of leaf nodes when it is known without running anything.
    """

    kind: str
    time: float
    node: str | None = None
    template: str | None = None
    phase: str | None = None
    message: str = ""
    attempt: int = 0
    leaf: bool = False
    total: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One attempt of one leaf node, fully resolved: what a :class:`TaskHandler` must run."""

    node_name: str
    template: str
    argv: tuple[str, ...]
    #: Complete environment for the process (runner env + template env, secrets resolved).
    env: Mapping[str, str]
    attempt: int
    attempt_dir: Path
    log_path: Path
    working_dir: Path | None = None
    #: Seconds after which the handler must kill the process and report Failed.
    timeout: float | None = None
    #: Set by the runner when the attempt must stop (workflow deadline); handler kills the process.
    cancel: threading.Event = field(default_factory=threading.Event)
    on_log: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """What a handler reports. ``phase``: Succeeded, Failed (process failed) or Error (could not run)."""

    phase: str
    message: str = ""
    exit_code: int | None = None
    stdout: str = ""
    started: float | None = None
    finished: float | None = None
