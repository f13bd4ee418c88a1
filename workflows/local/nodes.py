"""Node bookkeeping: the run's nodes, the DAG instances they belong to, their phases and the events they emit.

Every phase change goes through :meth:`Ledger.set_phase`, so a node's phase, its timestamps and the
``node-*`` event it emits cannot disagree. Node names follow Argo (``<wf>.<task>``, ``<wf>.<task>(0:item)``,
``<wf>.<outer>.<inner>``); results and events use the name without the leading ``<wf>.`` (``display``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import FULFILLED, PENDING, RUNNING, Event, NodeStatus
from .retries import Attempt

if TYPE_CHECKING:
    from .templates import AttemptFiles, Leaf

__all__ = ["Node", "Dag", "Ledger", "iso", "node_id"]


def iso(ts: float | None) -> str:
    """Argo's timestamp format (``2024-01-02T03:04:05Z``); empty for None."""
    return "" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(name: str) -> str:
    """A file-name-safe, unique id for a node (``{{pod.name}}``, the node's folder under the run dir)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "node"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


@dataclass(eq=False)
class Node:
    name: str
    display: str
    template: str | None
    kind: str  # "leaf" | "dag" | "group" | "none" (skipped/omitted/error before running)
    owner: Dag | None
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
    children: list[Node] = field(default_factory=list)  # group only: the fanned-out items
    # leaf only: what runs, the current attempt's declared output files, queued time of the current and the first
    # attempt, the last one's outcome, the deadline retryStrategy.backoff.maxDuration gives the next attempts
    leaf: Leaf | None = None
    files: AttemptFiles | None = None
    created: float = 0.0
    first_created: float = 0.0
    last_attempt: Attempt | None = None
    exec_deadline: float | None = None
    # dag only
    dag: Dag | None = None

    @property
    def id(self) -> str:
        return node_id(self.display)

    @property
    def fulfilled(self) -> bool:
        return self.phase in FULFILLED


@dataclass(eq=False)
class Dag:
    """One running instance of a dag template: its tasks, their parsed ``depends`` and the nodes created so far."""

    node: Node
    template: dict[str, Any]
    scope: dict[str, str]
    tasks: list[dict[str, Any]]
    deps: dict[str, list[str]]
    depends: dict[str, Any]
    parallelism: int | None
    task_nodes: dict[str, Node] = field(default_factory=dict)
    active: int = 0  # running attempts and DAGs directly under it, for its parallelism


class Ledger:
    """Every node of one run, in creation order, and the events they emit through ``on_event``."""

    def __init__(self, workflow_name: str, on_event: Callable[[Event], None] | None) -> None:
        self.prefix = workflow_name + "."
        self.on_event = on_event
        self.nodes: dict[str, Node] = {}

    def emit(self, kind: str, node: Node | None = None, **kw: Any) -> None:
        if self.on_event is None:
            return
        if node is not None:
            kw.setdefault("node", node.display)
            kw.setdefault("template", node.template)
            kw.setdefault("phase", node.phase)
            kw.setdefault("message", node.message)
            kw.setdefault("attempt", node.attempts)
            kw.setdefault("leaf", node.kind == "leaf")
        self.on_event(Event(kind=kind, time=time.time(), **kw))

    def set_phase(self, node: Node, phase: str, message: str | None = None, **event: Any) -> None:
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
        self.emit(f"node-{phase.lower()}", node, **event)

    def new(self, name: str, template: str | None, kind: str, owner: Dag | None) -> Node:
        display = name[len(self.prefix):] if name.startswith(self.prefix) else name
        node = Node(name=name, display=display, template=template, kind=kind, owner=owner)
        self.nodes[name] = node
        return node

    def finished(self, name: str, template: str | None, owner: Dag | None, phase: str, message: str) -> Node:
        """A node that ends as it is created (skipped, omitted, or an error before anything ran)."""
        node = self.new(name, template, "none", owner)
        self.set_phase(node, phase, message)
        return node

    def leaves(self) -> int:
        return sum(1 for n in self.nodes.values() if n.kind == "leaf")

    def statuses(self) -> dict[str, NodeStatus]:
        return {
            n.display: NodeStatus(
                phase=n.phase, template=n.template, outputs=dict(n.outputs), result=n.result, message=n.message,
                attempts=n.attempts, started=n.started, finished=n.finished, log_path=n.log_path,
                exit_code=n.exit_code, artifacts=dict(n.artifacts),
            )
            for n in self.nodes.values()
        }
