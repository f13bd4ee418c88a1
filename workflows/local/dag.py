"""The DAG walker: creates each task's node once its dependencies are fulfilled, and finishes DAGs.

Per task of every running DAG instance, in the template's task order (argo-workflows v4.1.2 ``dag.go``):

* ``depends`` (or ``dependencies``) is evaluated over the tasks' results (``Succeeded``, ``AnySucceeded``...;
  a bare name means Succeeded or Skipped, or Failed/Errored under ``continueOn``); false: the task is Omitted;
* its fields are substituted with the DAG's scope and its ancestors' outputs (skipped/omitted ones: declared
  defaults, ``scope.go``), then ``withItems``/``withParam`` fan it out into a group node of items (an empty list:
  Skipped), each with ``when`` evaluated, and its template executed (:meth:`Walker.execute_template`):
  a leaf is queued (:mod:`.scheduler`), a nested DAG starts (queued first, for its parent's ``parallelism``);
* a group ends once its items have, in the last failed item's phase, with the items' outputs aggregated
  (``operator.go`` ``processAggregateNodeOutputs``);
* a DAG ends once every task has: Succeeded unless a target task's branch failed (``assessDAGPhase``: an
  omitted task inherits its parents' outcome, ``continueOn`` forgives), then its output parameters resolve.

Creating tasks never waits: the walker advances every DAG to a fixpoint, and the scheduler runs what it queued.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .expressions import depends_tasks, eval_depends, eval_when, item_label, item_scope, parameter_string, substitute
from .model import COMPLETED, ERROR, FAILED, OMITTED, PENDING, RUNNING, SKIPPED, SUCCEEDED, LocalRunnerError
from .nodes import Dag, Ledger, Node, iso
from .outputs import aggregate, skipped_outputs
from .scheduler import Scheduler
from .templates import dag_outputs, input_scope, prepare_leaf, unresolved_message
from .validate import task_depends

__all__ = ["Walker", "count_leaves"]


def count_leaves(templates: Mapping[str, Mapping[str, Any]], name: str,
                 stack: frozenset[str] = frozenset()) -> int | None:
    """Leaf nodes a run of template ``name`` creates, when known without running anything (no withParam)."""
    tmpl = templates[name]
    if "dag" not in tmpl:
        return 1
    if name in stack:
        return None
    total = 0
    for task in tmpl["dag"]["tasks"]:
        if "withParam" in task:
            return None
        n = count_leaves(templates, task["template"], stack | {name})
        if n is None:
            return None
        total += n * (len(task["withItems"]) if "withItems" in task else 1)
    return total


def _aggregate(prefix: str, children: list[Node]) -> dict[str, str]:
    """Argo's aggregation of fanned-out outputs, over the Succeeded children (:func:`.outputs.aggregate`)."""
    return aggregate(prefix, [(c.outputs, c.result) for c in children if c.phase == SUCCEEDED]) if children else {}


def _ancestors(dag: Dag, task: str) -> list[str]:
    seen: list[str] = []
    stack = list(dag.deps[task])
    while stack:
        t = stack.pop(0)
        if t not in seen:
            seen.append(t)
            stack.extend(dag.deps[t])
    return seen


def _task(dag: Dag, name: str) -> dict[str, Any]:
    return next(t for t in dag.tasks if t["name"] == name)


class Walker:
    """The running DAG instances of one run."""

    def __init__(self, ledger: Ledger, scheduler: Scheduler, templates: Mapping[str, dict[str, Any]],
                 globals_: Mapping[str, str]) -> None:
        self.ledger = ledger
        self.scheduler = scheduler
        self.templates = templates
        self.globals = globals_
        self.dags: list[Dag] = []

    def execute_template(self, name: str, tmpl_name: str, args: Mapping[str, str], owner: Dag | None,
                         where: str) -> Node:
        """Create the node that runs ``tmpl_name`` with ``args`` (queued, started, or finished with an error)."""
        tmpl = self.templates[tmpl_name]
        scope, problem = input_scope(tmpl, tmpl_name, args, self.globals, where)
        if scope is None:
            return self.ledger.finished(name, tmpl_name, owner, ERROR, problem)
        if "dag" in tmpl:
            node = self.ledger.new(name, tmpl_name, "dag", owner)
            tasks = tmpl["dag"]["tasks"]
            depends = {t["name"]: task_depends(t) for t in tasks}
            parallelism = tmpl.get("parallelism")
            node.dag = Dag(
                node=node, template=tmpl, scope=scope, tasks=tasks, depends=depends,
                deps={k: depends_tasks(v) for k, v in depends.items()},
                parallelism=None if parallelism is None else int(parallelism),
            )
            if owner is None:
                self.start_dag(node)
            else:
                self.ledger.set_phase(node, PENDING)
                self.scheduler.enqueue(node, 0)
            return node
        try:
            leaf, unresolved = prepare_leaf(tmpl, scope, self.scheduler.seconds)
        except (LocalRunnerError, ValueError) as exc:
            node = self.ledger.new(name, tmpl_name, "leaf", owner)
            self.ledger.set_phase(node, ERROR, f"{exc} ({where})")
            return node
        if leaf is None:
            return self.ledger.finished(name, tmpl_name, owner, ERROR, unresolved_message(unresolved, where))
        node = self.ledger.new(name, tmpl_name, "leaf", owner)
        node.leaf = leaf
        self.ledger.set_phase(node, PENDING, attempt=1)
        self.scheduler.enqueue(node, 1)
        return node

    def start_dag(self, node: Node) -> None:
        assert node.dag is not None
        self.dags.append(node.dag)
        self.ledger.set_phase(node, RUNNING)
        if node.owner is not None:
            node.owner.active += 1

    def advance(self) -> bool:
        """Advance every running DAG until nothing changes; whether anything did."""
        any_change = False
        changed = True
        while changed:
            changed = False
            for dag in list(self.dags):
                if self._advance_dag(dag):
                    changed = any_change = True
        return any_change

    def _advance_dag(self, dag: Dag) -> bool:
        changed = False
        for task in dag.tasks:
            tname = task["name"]
            node = dag.task_nodes.get(tname)
            if node is not None:
                if node.kind == "group" and not node.fulfilled and all(c.fulfilled for c in node.children):
                    self._finish_group(node)
                    changed = True
                continue
            if self.scheduler.halted:
                continue
            deps = [dag.task_nodes.get(d) for d in dag.deps[tname]]
            if any(d is None or not d.fulfilled for d in deps):
                continue
            changed = True
            full = f"{dag.node.name}.{tname}"
            tree = dag.depends[tname]
            if tree is not None and not eval_depends(tree, lambda t, res: self._task_result(dag, t, res)):
                dag.task_nodes[tname] = self.ledger.finished(full, task["template"], dag, OMITTED,
                                                             "omitted: depends condition not met")
                continue
            dag.task_nodes[tname] = self._start_task(dag, task, full)
        if all(t["name"] in dag.task_nodes and dag.task_nodes[t["name"]].fulfilled for t in dag.tasks) or (
            self.scheduler.halted and all(n.fulfilled for n in dag.task_nodes.values())
        ):
            self._finish_dag(dag)
            changed = True
        return changed

    def _finish_group(self, node: Node) -> None:
        failed = [c for c in node.children if c.phase in (FAILED, ERROR)]
        phase = failed[-1].phase if failed else SUCCEEDED  # dag.go: the last failed child's phase
        msg = f"{len(failed)} of {len(node.children)} items failed" if failed else ""
        agg = _aggregate("", node.children)
        node.outputs = {k[len(".outputs.parameters."):]: v for k, v in agg.items()
                        if k.startswith(".outputs.parameters.")}
        node.result = agg.get(".outputs.result")
        self.ledger.set_phase(node, phase, msg)

    @staticmethod
    def _task_result(dag: Dag, task: str, result: str | None) -> bool:
        """``task.<result>`` in a depends expression (a bare ``task`` when ``result`` is None)."""
        node = dag.task_nodes[task]
        if result is None:
            ok = {SUCCEEDED, SKIPPED}
            cont = _task(dag, task).get("continueOn") or {}
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

    def _task_scope(self, dag: Dag, names: list[str]) -> dict[str, str]:
        """``{{tasks.<name>.*}}`` of the given tasks that have a node."""
        scope: dict[str, str] = {}
        for t in names:
            node = dag.task_nodes.get(t)
            if node is None:
                continue
            p = f"tasks.{t}"
            scope[f"{p}.status"] = node.phase
            scope[f"{p}.id"] = node.id
            if node.started is not None:
                scope[f"{p}.startedAt"] = iso(node.started)
            if node.finished is not None:
                scope[f"{p}.finishedAt"] = iso(node.finished)
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

    def _start_task(self, dag: Dag, task: dict[str, Any], full: str) -> Node:
        """The node of a task whose depends holds: one instance, or a group of withItems/withParam items."""
        tname = task["name"]
        where = f"task {tname!r}"
        scope = {**dag.scope, **self._task_scope(dag, _ancestors(dag, tname))}
        expands = "withItems" in task or "withParam" in task
        is_item = (lambda k: k == "item" or k.startswith("item.")) if expands else None
        resolved, unresolved = substitute({k: v for k, v in task.items() if k != "withItems"}, scope, keep=is_item)
        if unresolved:
            return self.ledger.finished(full, task["template"], dag, ERROR, unresolved_message(unresolved, where))
        if not expands:
            return self._run_instance(dag, resolved, full, where)
        if "withItems" in task:
            items, unresolved = substitute(task["withItems"], scope)
            if unresolved:
                return self.ledger.finished(full, task["template"], dag, ERROR,
                                            unresolved_message(unresolved, where))
        else:
            try:
                items = json.loads(resolved["withParam"])
            except ValueError:
                items = None
            if not isinstance(items, list):
                return self.ledger.finished(
                    full, task["template"], dag, ERROR,
                    f"withParam value could not be parsed as a JSON list: {resolved['withParam'].strip()[:200]} ({where})",
                )
        if not items:  # dag.go executeDAGTask: "DAG task with empty withParams list should be skipped"
            return self.ledger.finished(full, task["template"], dag, SKIPPED, "Skipped, empty params")
        group = self.ledger.new(full, task["template"], "group", dag)
        self.ledger.set_phase(group, RUNNING)
        self.ledger.emit("node-expanded", group, total=len(items))
        body = {k: v for k, v in resolved.items() if k not in ("withItems", "withParam")}
        for i, item in enumerate(items):
            child_name = f"{full}{item_label(i, item)}"
            child_where = f"task {tname + item_label(i, item)!r}"
            child_task, unresolved = substitute(body, item_scope(item))
            if unresolved:
                group.children.append(self.ledger.finished(child_name, task["template"], dag, ERROR,
                                                           unresolved_message(unresolved, child_where)))
                continue
            group.children.append(self._run_instance(dag, child_task, child_name, child_where))
        return group

    def _run_instance(self, dag: Dag, task: dict[str, Any], name: str, where: str) -> Node:
        when = task.get("when")
        if when:
            try:
                go = eval_when(str(when))
            except (ValueError, LocalRunnerError) as exc:
                return self.ledger.finished(name, task["template"], dag, ERROR, f"{exc} ({where})")
            if not go:
                return self.ledger.finished(name, task["template"], dag, SKIPPED, f"when '{when}' evaluated false")
        args = {p["name"]: parameter_string(p.get("value", ""))
                for p in (task.get("arguments") or {}).get("parameters") or []}
        return self.execute_template(name, task["template"], args, dag, where)

    def _finish_dag(self, dag: Dag) -> None:
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
                cont = _task(dag, t).get("continueOn") or {}
                if (p == FAILED and cont.get("failed")) or (p == ERROR and cont.get("error")):
                    continue
                phase, culprit = p, t
                break
        if phase != SUCCEEDED:
            self.ledger.set_phase(node, phase, self._failure_message(dag, culprit))
            return
        scope = {**dag.scope, **self._task_scope(dag, [t["name"] for t in dag.tasks])}
        outputs, problem = dag_outputs(dag.template, scope)
        if outputs is None:
            self.ledger.set_phase(node, ERROR, problem)
            return
        node.outputs = outputs
        self.ledger.set_phase(node, SUCCEEDED, "")

    def _failure_message(self, dag: Dag, culprit: str | None) -> str:
        if self.scheduler.halted:
            return self.scheduler.halted
        prefix = dag.node.name + "."
        for n in self.ledger.nodes.values():  # first failed leaf (in creation order) under this DAG
            if n.name.startswith(prefix) and n.kind in ("leaf", "none") and n.phase in (FAILED, ERROR):
                return f"{n.display} {n.phase.lower()}: {n.message}"
        return f"task {culprit!r} {FAILED.lower()}" if culprit else "failed"
