"""Conformance of the local runner with Argo Workflows, one behaviour per test.

Each test runs a small workflow with real processes (``python -c``) and asserts node phases and outputs as
Argo would produce them. Upstream is argo-workflows v4.1.2; every test names the file (and function, example or
test) its expectation comes from.
"""

from __future__ import annotations

import json
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.argo_support import GPU, OK, ctr, task, workflow
from workflows.local import Event, LocalRunner, UnsupportedFeature, WorkflowError
from workflows.local.durations import parse_duration
from workflows.local.exprlang import ExprError, evaluate_bool
from workflows.local.retries import is_transient

# Exits with the n-th of the comma-separated codes in argv[2] on its n-th run (counted in the file argv[1]); prints
# argv[3:] first. A code "s" sleeps 60 s instead.
SEQ = (
    "import sys,time,pathlib; p=pathlib.Path(sys.argv[1]); n=int(p.read_text()) if p.exists() else 0; "
    "p.write_text(str(n+1)); print(*sys.argv[3:]); c=sys.argv[2].split(',')[min(n, len(sys.argv[2].split(','))-1)]; "
    "time.sleep(60) if c == 's' else sys.exit(int(c))"
)


def seq(tmp_path: Path, codes: str, *show: str, name: str = "step", **extra: Any) -> dict[str, Any]:
    counter = tmp_path / f"counter-{uuid.uuid4().hex[:6]}"
    return ctr(name, SEQ, str(counter), codes, *show, **extra)


def run_one(tmp_path: Path, template: dict[str, Any], time_scale: float = 1.0, **runner: Any):
    events: list[Event] = []
    result = LocalRunner(tmp_path / "runs", on_event=events.append, time_scale=time_scale, **runner).run(
        workflow([task("step", template["name"])], template))
    return result, result.nodes["step"], events


def starts(events: list[Event], node: str = "step") -> list[float]:
    return [e.time for e in events if e.kind == "node-running" and e.node == node]


def private_tmp(name: str) -> str:
    """An in-pod path under /tmp that must never be touched on this machine."""
    return f"/tmp/kubescribe-conformance-{uuid.uuid4().hex[:8]}/{name}"


# --- retries: workflow/controller/operator.go processNodeRetries ----------------------------------------------


def test_retry_expression_sees_the_exit_code_as_a_string(tmp_path: Path) -> None:
    """processNodeRetries evaluates retryStrategy.expression over buildRetryStrategyLocalScope, where
    lastRetry.exitCode is a string (docs/variables.md: "These variables evaluate to a string type"):
    ``lastRetry.exitCode == "2"`` retries an exit 2, not an exit 1, and ``== 2`` (a number) never matches."""
    strategy = {"limit": 3, "retryPolicy": "OnFailure", "expression": 'lastRetry.exitCode == "2"'}
    result, node, _ = run_one(tmp_path, seq(tmp_path, "2,0", retryStrategy=strategy))
    assert result.phase == "Succeeded" and node.phase == "Succeeded" and node.attempts == 2

    result, node, _ = run_one(tmp_path, seq(tmp_path, "1,0", retryStrategy=strategy))
    assert node.phase == "Failed" and node.attempts == 1
    assert node.message == "Error (exit code 1); retryStrategy.expression evaluated to false"

    numeric = {**strategy, "expression": "lastRetry.exitCode == 2"}
    _, node, _ = run_one(tmp_path, seq(tmp_path, "2,0", retryStrategy=numeric))
    assert node.phase == "Failed" and node.attempts == 1


def test_retry_expression_scope_and_attempt_variables(tmp_path: Path) -> None:
    """buildRetryStrategyLocalScope: retries, lastRetry.{exitCode,status,duration,message}; executeTemplate
    substitutes {{retries}} and {{lastRetry.*}} into each attempt (first attempt: "0", "0", "")."""
    strategy = {"limit": 5, "expression": 'retries == "0" && lastRetry.status == "Failed" && '
                "lastRetry.message matches 'exit code [0-9]' && asFloat(lastRetry.duration) >= 0"}
    result, node, _ = run_one(tmp_path, seq(tmp_path, "3", "{{retries}}", "{{lastRetry.exitCode}}",
                                            "[{{lastRetry.status}}]", retryStrategy=strategy))
    assert node.phase == "Failed" and node.attempts == 2  # retries == "1" on the second: expression false
    logs = [(node.log_path.parent.parent / f"attempt-{i}" / "stdout.log").read_text().strip() for i in (1, 2)]
    assert logs == ["0 0 []", "1 3 [Failed]"]


def test_expression_without_policy_means_always(tmp_path: Path) -> None:
    """workflow_types.go RetryPolicyActual: with an expression and no retryPolicy the policy is Always, so an
    Error (here: the executable does not exist, no exit code: lastRetry.exitCode is "-1") is retried too. An
    expression that fails to evaluate makes the node Error (processNodeRetries returns the error)."""
    missing = {"name": "missing", "container": {"image": "x", "command": ["no-such-binary-kubescribe"]},
               "retryStrategy": {"limit": 1, "expression": 'lastRetry.status == "Error" && lastRetry.exitCode == "-1"'}}
    _, node, _ = run_one(tmp_path, missing)
    assert node.phase == "Error" and node.attempts == 2 and node.message.endswith("No more retries left")

    broken = seq(tmp_path, "1", retryStrategy={"limit": 2, "expression": "lastRetry.exitCode > 1"})
    _, node, _ = run_one(tmp_path, broken)
    assert node.phase == "Error" and node.attempts == 1 and "mismatched types" in node.message


def test_on_transient_error_retries_failed_nodes_with_a_transient_message(tmp_path: Path, monkeypatch) -> None:
    """processNodeRetries, RetryPolicyOnTransientError: a Failed or Error attempt is retried when
    util/errors/errors.go isTransientErr matches its message, including the controller's
    TRANSIENT_ERROR_PATTERN (here the runner's environment)."""
    strategy = {"limit": 2, "retryPolicy": "OnTransientError"}
    monkeypatch.setenv("TRANSIENT_ERROR_PATTERN", "exit code 7")
    _, node, _ = run_one(tmp_path, seq(tmp_path, "7,0", retryStrategy=strategy))
    assert node.phase == "Succeeded" and node.attempts == 2
    _, node, _ = run_one(tmp_path, seq(tmp_path, "5,0", retryStrategy=strategy))
    assert node.phase == "Failed" and node.attempts == 1
    assert is_transient("dial tcp 10.0.0.1:443: connect: connection refused", pattern="")
    assert is_transient("etcdserver: leader changed", pattern="") and not is_transient("Error (exit code 1)", "")


def test_empty_retry_strategy_retries_failures_without_limit(tmp_path: Path) -> None:
    """retryStrategy: {} is a strategy: no limit (Limit nil), policy OnFailure (RetryPolicyActual), so failures
    are retried until one succeeds, and an Error is not retried."""
    _, node, _ = run_one(tmp_path, seq(tmp_path, "1,1,1,0", retryStrategy={}))
    assert node.phase == "Succeeded" and node.attempts == 4
    missing = {"name": "missing", "container": {"image": "x", "command": ["no-such-binary-kubescribe"]},
               "retryStrategy": {}}
    _, node, _ = run_one(tmp_path, missing)
    assert node.phase == "Error" and node.attempts == 1


def test_backoff_factor_and_cap(tmp_path: Path) -> None:
    """processNodeRetries: wait = duration * factor^(attempts-1), capped by backoff.cap."""
    strategy = {"limit": 5, "backoff": {"duration": "1s", "factor": 10, "cap": "2s"}}
    _, node, events = run_one(tmp_path, seq(tmp_path, "1,1,1,0", retryStrategy=strategy), time_scale=0.2)
    assert node.phase == "Succeeded" and node.attempts == 4
    t = starts(events)
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39 and gaps[2] >= 0.39  # 0.2 s, then capped at 0.4 s
    assert gaps[2] < 1.9  # uncapped it would be 20 s


def test_backoff_is_not_waited_without_a_limit(tmp_path: Path) -> None:
    """processNodeRetries requeues for the backoff only when ``retryStrategy.Limit != nil``: without a limit
    the next attempt starts at once."""
    t0 = time.monotonic()
    _, node, _ = run_one(tmp_path, seq(tmp_path, "1,0", retryStrategy={"backoff": {"duration": "20s"}}))
    assert node.phase == "Succeeded" and node.attempts == 2 and time.monotonic() - t0 < 15


def test_max_duration_is_the_deadline_of_retries(tmp_path: Path) -> None:
    """processNodeRetries: maxDuration counts from the FIRST attempt's start; it becomes the retry's execution
    deadline (ARGO_DEADLINE, executor.go monitorDeadline kills the main container) and past it no retry is
    started ("Max duration limit exceeded")."""
    strategy = {"limit": 5, "backoff": {"duration": "1s", "maxDuration": "40s"}}
    t0 = time.monotonic()
    _, node, _ = run_one(tmp_path, seq(tmp_path, "1,s", retryStrategy=strategy), time_scale=0.1)
    assert time.monotonic() - t0 < 30  # the second attempt sleeps 60 s: it was killed at the 4 s deadline
    assert node.phase == "Failed" and node.attempts == 2
    assert node.message.startswith("timeout") and node.message.endswith("; Max duration limit exceeded")


def test_backoff_without_duration_is_refused(tmp_path: Path) -> None:
    """processNodeRetries: a backoff object without duration is "no base duration specified for retryStrategy"."""
    with pytest.raises(WorkflowError, match=r"retryStrategy\.backoff\.duration is required"):
        run_one(tmp_path, seq(tmp_path, "0", retryStrategy={"limit": 1, "backoff": {}}))


def test_expressions_follow_expr_lang() -> None:
    """util/expr/argoexpr/eval.go EvalBool with util/expr/env/env.go GetFuncMap (asInt/asFloat are expr's
    int/float: expr builtin/lib.go Int uses strconv.Atoi, so asInt("1.5") fails, as it does in Argo)."""
    scope = {"retries": "0", "lastRetry": {"exitCode": "2", "status": "Failed", "duration": "1.5", "message": "m"}}
    assert evaluate_bool('lastRetry.exitCode == "2" and not (lastRetry.status in ["Error"])', scope)
    assert evaluate_bool("asInt(lastRetry.exitCode) > 1 && asFloat(lastRetry.duration) < 120", scope)
    assert not evaluate_bool("lastRetry.exitCode == 2", scope)
    for bad in ("asInt(lastRetry.duration) < 120", "lastRetry.exitCode > 1", "lastRetry.exitCode"):
        with pytest.raises(ExprError):
            evaluate_bool(bad, scope)


def test_durations_follow_go() -> None:
    """pkg/apis/workflow/v1alpha1/utils.go ParseStringToDuration: Atoi seconds, else Go's time.ParseDuration."""
    assert [parse_duration(v) for v in ("30", "1m30s", "1.5h", ".5s", "250ms", "0", "+5", "-1s")] == [
        30, 90, 5400, 0.5, 0.25, 0, 5, -1]
    for bad in ("1.5", "1d", "10 s", "", "s", "1h-5m"):
        with pytest.raises(WorkflowError):
            parse_duration(bad)


# --- timers: operator.go checkTemplateTimeouts, workflowpod.go activeDeadlineSeconds --------------------------


def test_template_timeout_bounds_queue_time_only_without_retry_strategy(tmp_path: Path) -> None:
    """operator.go checkTemplateTimeouts fails a Pending node past StartedAt + timeout ("timeout"); for a retried
    template it checks the Running retry node instead, so only the pod's activeDeadlineSeconds (workflowpod.go,
    counted by the kubelet from the pod's start) remains. Here a GPU-bound task holds the only slot for 4 s."""
    hog = ctr("hog", "import time; time.sleep(4)", resources={"limits": {GPU: 1}})
    waiter = ctr("waiter", "print('ran')", resources={"limits": {GPU: 1}}, timeout="2s")
    patient = {**waiter, "name": "patient", "retryStrategy": {"limit": 0}}
    wf = workflow([task("hog", "hog"), task("waiter", "waiter"), task("patient", "patient")], hog, waiter, patient)
    result = LocalRunner(tmp_path / "runs", capacity={GPU: 1}).run(wf)
    waited = result.nodes["waiter"]
    assert waited.phase == "Failed" and waited.message.startswith("timeout") and waited.attempts == 1
    assert waited.log_path is None  # never started
    patient_node = result.nodes["patient"]  # queued 4 s > timeout, then ran within its timeout
    assert patient_node.phase == "Succeeded" and patient_node.result == "ran"


def test_active_deadline_seconds_is_per_attempt_from_its_start(tmp_path: Path) -> None:
    """workflowpod.go: template activeDeadlineSeconds is the pod's, counted from the pod's start: each attempt
    gets it in full (queue time not counted), and a killed attempt is Failed, so it is retried."""
    slow = ctr("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1,
               retryStrategy={"limit": 1, "retryPolicy": "OnFailure"})
    t0 = time.monotonic()
    _, node, _ = run_one(tmp_path, slow, time_scale=0.5)
    assert time.monotonic() - t0 < 20
    assert node.phase == "Failed" and node.attempts == 2 and node.message.startswith("timeout")

    hog = ctr("hog", "import time; time.sleep(3)", resources={"limits": {GPU: 1}})
    quick = ctr("quick", "print('ran')", resources={"limits": {GPU: 1}}, activeDeadlineSeconds=2)
    result = LocalRunner(tmp_path / "runs", capacity={GPU: 1}).run(
        workflow([task("hog", "hog"), task("quick", "quick")], hog, quick))
    assert result.nodes["quick"].phase == "Succeeded"


def test_workflow_deadline_stops_retries(tmp_path: Path) -> None:
    """spec.activeDeadlineSeconds bounds the whole run: past it no retry starts (processNodeRetries: "retry
    exceeded workflow deadline") and pending nodes fail (operator.go failNodesWithoutCreatedPodsAfterDeadline...:
    "Step exceeded its deadline")."""
    step = seq(tmp_path, "1", retryStrategy={"limit": 5, "backoff": {"duration": "30s"}})
    t0 = time.monotonic()
    result = LocalRunner(tmp_path / "runs").run(workflow([task("step", "step")], step, activeDeadlineSeconds=2))
    assert time.monotonic() - t0 < 20
    node = result.nodes["step"]
    assert result.phase == "Failed" and node.phase == "Failed" and node.attempts == 1
    assert "Step exceeded its deadline" in node.message and "Step exceeded its deadline" in result.message


# --- data flow --------------------------------------------------------------------------------------------


def test_aggregated_output_parameters_are_lists_of_strings(tmp_path: Path) -> None:
    """operator.go processAggregateNodeOutputs / aggregatedJSONValueList, as dag_test.go
    TestDAGReferTaskAggregatedOutputs (parameter-aggregation-dag) expects: ``["1","2"]`` and ``["odd","even"]``;
    decoded values only when every value is a JSON object or list."""
    num, even, obj = fake = [private_tmp(n) for n in ("num", "even", "obj")]
    odd_or_even = ctr(
        "odd-or-even",
        "import json,sys; n=int(sys.argv[4]); open(sys.argv[1],'w').write(str(n)); "
        "open(sys.argv[2],'w').write('even' if n % 2 == 0 else 'odd'); "
        "open(sys.argv[3],'w').write(json.dumps({'n': n}))",
        num, even, obj, "{{inputs.parameters.num}}", inputs=["num"],
        outputs={"num": num, "evenness": even, "obj": obj},
    )
    wf = workflow([task("odd-or-even", "odd-or-even", withItems=[1, 2], args={"num": "{{item}}"})], odd_or_even)
    wf["spec"]["templates"][0]["outputs"] = {"parameters": [
        {"name": n, "valueFrom": {"parameter": "{{tasks.odd-or-even.outputs.parameters.%s}}" % n}}
        for n in ("num", "evenness", "obj")]}
    result = LocalRunner(tmp_path / "runs").run(wf)
    assert result.phase == "Succeeded", result.message
    assert result.nodes[result.workflow_name].outputs == {
        "num": '["1","2"]', "evenness": '["odd","even"]', "obj": '[{"n":1},{"n":2}]'}
    assert not any(Path(p).parent.exists() for p in fake)


@pytest.mark.parametrize("fail_fast", [None, False])
def test_fail_fast_does_not_stop_tasks_whose_dependencies_complete(tmp_path: Path, fail_fast: bool | None) -> None:
    """dag.go executeDAG creates every task whose dependencies are complete (executeDAGTask) before
    assessDAGPhase, and assessDAGPhase reports Running while any node of the DAG is unfulfilled; so with the
    default failFast, C (after B, which still runs when A fails) is created and runs. A maintainer confirmed this
    and left it (argoproj/argo-workflows#5227: "as long as a node is running new nodes will be able to be
    created"; open issue #10312). The DAG then fails. The template-level ``failFast`` (operator.go
    checkParallelism), which does stop new pods, is refused by the local runner."""
    wf = workflow([task("A", "fail"), task("B", "slow"), task("C", "ok", depends="B")],
                  ctr("fail", "import sys; sys.exit(1)"), ctr("slow", "import time; time.sleep(1)"), OK)
    if fail_fast is not None:
        wf["spec"]["templates"][0]["dag"]["failFast"] = fail_fast
    result = LocalRunner(tmp_path / "runs").run(wf)
    assert [result.nodes[t].phase for t in "ABC"] == ["Failed", "Succeeded", "Succeeded"]
    assert result.phase == "Failed"

    wf["spec"]["templates"][0]["failFast"] = True
    with pytest.raises(UnsupportedFeature, match=r"spec\.templates\[main\]\.failFast"):
        LocalRunner(tmp_path / "runs").run(wf)


def test_empty_with_param_is_skipped(tmp_path: Path) -> None:
    """dag.go executeDAGTask: a withParam/withItems task with no items is Skipped, "Skipped, empty params"; a bare
    ``depends`` on it is satisfied (Succeeded || Skipped || Daemoned), ``.Succeeded`` is not."""
    items = private_tmp("items.json")
    gen = ctr("gen", "import sys; open(sys.argv[1],'w').write('[]')", items, outputs={"items": items})
    echo = ctr("echo", "import sys; print(sys.argv[1])", "{{inputs.parameters.x}}", inputs=["x"])
    wf = workflow(
        [task("gen", "gen"),
         task("fan", "echo", depends="gen", withParam="{{tasks.gen.outputs.parameters.items}}", args={"x": "{{item}}"}),
         task("none", "echo", withItems=[], args={"x": "{{item}}"}),
         task("bare", "ok", depends="fan && none"),
         task("on-succeeded", "ok", depends="fan.Succeeded"),
         task("on-skipped", "ok", depends="fan.Skipped")],
        gen, echo, OK,
    )
    result = LocalRunner(tmp_path / "runs").run(wf)
    for t in ("fan", "none"):
        assert result.nodes[t].phase == "Skipped" and result.nodes[t].message == "Skipped, empty params"
    assert not any(n.startswith("fan(") for n in result.nodes)
    phases = [result.nodes[t].phase for t in ("bare", "on-succeeded", "on-skipped")]
    assert phases == ["Succeeded", "Omitted", "Succeeded"]
    assert result.phase == "Succeeded", result.message


def test_skipped_and_omitted_outputs_resolve_to_their_default(tmp_path: Path) -> None:
    """scope.go addSkippedNodeOutputsToScope: a Skipped or Omitted task's declared output parameters resolve to
    their valueFrom.default (without one the reference stays unresolved: an error)."""
    out = private_tmp("p")
    maybe = {**ctr("maybe", "print('never')"),
             "outputs": {"parameters": [{"name": "p", "valueFrom": {"path": out, "default": "fallback"}}]}}
    echo = ctr("echo", "import sys; print(sys.argv[1])", "{{inputs.parameters.x}}", inputs=["x"])
    wf = workflow(
        [task("skipped", "maybe", when="1 == 2"),
         task("use-skipped", "echo", depends="skipped", args={"x": "{{tasks.skipped.outputs.parameters.p}}"}),
         task("first", "ok"),
         task("omitted", "maybe", depends="first.Failed"),
         task("use-omitted", "echo", depends="omitted.Omitted", args={"x": "{{tasks.omitted.outputs.parameters.p}}"})],
        maybe, echo, OK,
    )
    result = LocalRunner(tmp_path / "runs").run(wf)
    assert result.nodes["skipped"].phase == "Skipped" and result.nodes["omitted"].phase == "Omitted"
    assert result.nodes["use-skipped"].result == "fallback" and result.nodes["use-omitted"].result == "fallback"
    assert result.phase == "Succeeded", result.message


def test_outputs_lose_exactly_one_trailing_newline(tmp_path: Path) -> None:
    """executor.go SaveParameters (strings.TrimSuffix(output, "\\n")) and CaptureScriptResult (one '\\n' off)."""
    p, q = private_tmp("p"), private_tmp("q")
    step = ctr("step", "import sys; open(sys.argv[1],'w').write('a\\n\\n'); open(sys.argv[2],'w').write('  b  '); "
               "print(' x\\n')", p, q, outputs={"p": p, "q": q})
    _, node, _ = run_one(tmp_path, step)
    assert node.outputs == {"p": "a\n", "q": "  b  "} and node.result == " x\n"


def test_volumes_other_than_scratch_tmp_and_pod_spec_patch_are_refused(tmp_path: Path) -> None:
    """Fields that change what a step sees and have no local meaning are refused with their path. The pipeline's
    emptyDir at /tmp (workflows/pipeline.py) is accepted; a folder under it that holds a declared output is
    private to the attempt (as an emptyDir is to its pod), also where it is passed as a folder."""
    out = private_tmp("value.txt")
    folder = str(Path(out).parent)
    mount = {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    step = ctr("step", "import sys,pathlib; (pathlib.Path(sys.argv[1]) / 'value.txt').write_text('v')", folder,
               outputs={"value": out})
    step["container"].update(mount)
    scratch = {"volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]}
    result = LocalRunner(tmp_path / "runs").run(workflow([task("step", "step")], step, **scratch))
    assert result.nodes["step"].outputs == {"value": "v"} and not Path(folder).exists()

    def refused(spec_extra: dict[str, Any], container_extra: dict[str, Any], template_extra: dict[str, Any]) -> str:
        t = ctr("step", "pass")
        t["container"].update(container_extra)
        t.update(template_extra)
        with pytest.raises(UnsupportedFeature) as exc:
            LocalRunner(tmp_path / "runs").run(workflow([task("step", "step")], t, **spec_extra))
        return str(exc.value)

    host = {"volumes": [{"name": "data", "hostPath": {"path": "/data"}}]}
    assert refused(host, {}, {}).startswith("spec.volumes[data].hostPath is not supported")
    assert refused({}, {}, host).startswith("spec.templates[step].volumes[data].hostPath is not supported")
    assert refused(scratch, {"volumeMounts": [{"name": "tmp", "mountPath": "/data"}]}, {}).startswith(
        "spec.templates[step].container.volumeMounts[tmp].mountPath='/data' is not supported")
    assert refused({"podSpecPatch": "{}"}, {}, {}).startswith("spec.podSpecPatch is not supported")
    assert refused({}, {}, {"podSpecPatch": "{}"}).startswith("spec.templates[step].podSpecPatch is not supported")
    assert refused(scratch, {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp", "subPath": "x"}]}, {}).startswith(
        "spec.templates[step].container.volumeMounts[tmp].subPath is not supported")


# --- output artifacts: executor.go SaveArtifacts / saveArtifact / stageArchiveFile ----------------------------


def report_step(folder: str, code: str, **artifacts: dict[str, Any]) -> dict[str, Any]:
    step = ctr("report", code, folder)
    step["container"]["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    step["outputs"] = {"artifacts": [{"name": k, **v} for k, v in artifacts.items()]}
    return step


def test_output_artifacts_are_stored_in_the_local_repository(tmp_path: Path) -> None:
    """saveArtifact: ``archive: {none: {}}`` stores the file under its base name, the default archive a
    ``<name>.tgz`` whose entry starts with the base name; an optional missing artifact is skipped. Only the
    folder is passed to the step (like the pipeline's ``--artifacts-dir /tmp/outputs``)."""
    folder = str(Path(private_tmp("x")).parent)
    write = ("import sys,pathlib; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True); "
             "(d/'report.json').write_text('{\"ok\": true}'); (d/'sub').mkdir(); (d/'sub'/'a.txt').write_text('a')")
    step = report_step(folder, write,
                       report={"path": f"{folder}/report.json", "archive": {"none": {}}},
                       summary={"path": f"{folder}/summary.md", "archive": {"none": {}}, "optional": True},
                       bundle={"path": f"{folder}/sub"})
    result = LocalRunner(tmp_path / "runs").run(
        workflow([task("report", "report")], step, volumes=[{"name": "tmp", "emptyDir": {}}]))
    node = result.nodes["report"]
    assert node.phase == "Succeeded", node.message
    repo = tmp_path / "runs" / "artifacts" / result.workflow_name / node.log_path.parent.parent.name / "attempt-1"
    assert node.artifacts == {"report": repo / "report.json", "bundle": repo / "bundle.tgz"}
    assert json.loads(node.artifacts["report"].read_text()) == {"ok": True}
    with tarfile.open(node.artifacts["bundle"]) as tar:
        assert sorted(tar.getnames()) == ["sub", "sub/a.txt"]
    assert not Path(folder).exists()


def test_missing_output_artifact_fails_the_attempt_unless_optional(tmp_path: Path) -> None:
    """saveArtifact: a missing non-optional artifact is an error of the attempt (a Succeeded main container
    becomes Error); PostMain saves artifacts whatever the main container's exit status."""
    folder = str(Path(private_tmp("x")).parent)
    step = report_step(folder, "pass", report={"path": f"{folder}/report.json", "archive": {"none": {}}})
    result = LocalRunner(tmp_path / "runs").run(
        workflow([task("report", "report")], step, volumes=[{"name": "tmp", "emptyDir": {}}]))
    node = result.nodes["report"]
    assert node.phase == "Error" and node.artifacts == {}
    assert node.message.startswith(f"output artifact 'report': {folder}/report.json no such file or directory")

    write_then_fail = ("import sys,pathlib; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True); "
                       "(d/'report.json').write_text('partial'); sys.exit(3)")
    step = report_step(folder, write_then_fail, report={"path": f"{folder}/report.json", "archive": {"none": {}}},
                       other={"path": f"{folder}/missing"})
    result = LocalRunner(tmp_path / "runs").run(
        workflow([task("report", "report")], step, volumes=[{"name": "tmp", "emptyDir": {}}]))
    node = result.nodes["report"]
    assert node.phase == "Failed" and node.message == "Error (exit code 3)"
    assert node.artifacts["report"].read_text() == "partial"


def test_unimplemented_artifact_features_are_refused(tmp_path: Path) -> None:
    """Input artifacts, artifact locations (s3, git, http...), zip archives, artifactGC, globalName and DAG-level
    output artifacts are refused up front, with the field's path."""
    def refused(art: dict[str, Any] | None = None, **spec: Any) -> str:
        step = ctr("step", "pass")
        if art is not None:
            step["outputs"] = {"artifacts": [{"name": "a", "path": "/tmp/a", **art}]}
        with pytest.raises(UnsupportedFeature) as exc:
            LocalRunner(tmp_path / "runs").run(workflow([task("step", "step")], step, **spec))
        return str(exc.value)

    assert refused({"s3": {"key": "k"}}).startswith("spec.templates[step].outputs.artifacts[a].s3 is not supported")
    assert refused({"archive": {"zip": {}}}).startswith("spec.templates[step].outputs.artifacts[a].archive.zip")
    assert refused({"artifactGC": {"strategy": "OnWorkflowDeletion"}}).startswith(
        "spec.templates[step].outputs.artifacts[a].artifactGC")
    assert refused({"globalName": "g"}).startswith("spec.templates[step].outputs.artifacts[a].globalName")
    assert refused(artifactGC={"strategy": "OnWorkflowDeletion"}).startswith("spec.artifactGC")
    step = {**ctr("step", "pass"), "inputs": {"artifacts": [{"name": "i", "path": "/tmp/i"}]}}
    with pytest.raises(UnsupportedFeature, match=r"spec\.templates\[step\]\.inputs\.artifacts"):
        LocalRunner(tmp_path / "runs").run(workflow([task("step", "step")], step))
    wf = workflow([task("step", "ok")], OK)
    wf["spec"]["templates"][0]["outputs"] = {"artifacts": [{"name": "a", "from": "{{tasks.step.outputs.artifacts.x}}"}]}
    with pytest.raises(UnsupportedFeature, match=r"spec\.templates\[main\]\.outputs\.artifacts"):
        LocalRunner(tmp_path / "runs").run(wf)
