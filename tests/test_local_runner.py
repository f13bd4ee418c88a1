"""LocalRunner: executes compiled Argo Workflow dicts with local processes.

Every container runs ``sys.executable -c "..."``; assertions are on real process effects
(files, timestamps, outputs), not on mocks.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.argo_support import FAIL, GPU, OK, PY, ctr, task, workflow
from workflows.local import (
    Event,
    LocalRunner,
    NodeStatus,
    SubprocessHandler,
    TaskHandler,
    UnsupportedFeature,
)
from workflows.local.expressions import eval_when, parse_depends, parse_duration
from workflows.local.model import WorkflowError

# A child process that appends its [start, end] interval to a JSON-lines file.
INTERVAL = (
    "import json,sys,time; t0=time.time(); time.sleep(float(sys.argv[2])); "
    "open(sys.argv[1],'a').write(json.dumps([t0, time.time()])+'\\n')"
)


def intervals(path: Path) -> list[tuple[float, float]]:
    return sorted(tuple(json.loads(line)) for line in path.read_text().splitlines())


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def fake_abs_path(name: str) -> str:
    """An absolute in-pod path that must never be touched on this machine."""
    return f"/kubescribe-local-test-{uuid.uuid4().hex[:8]}/{name}"


@pytest.fixture
def runner(tmp_path: Path) -> LocalRunner:
    return LocalRunner(tmp_path / "runs")


# --- data flow -----------------------------------------------------------------------------------


def test_fan_out_over_output_parameter_and_aggregate(tmp_path: Path) -> None:
    items_path, sq_path = fake_abs_path("items.json"), fake_abs_path("sq.txt")
    wf = workflow(
        [
            task("gen", "gen", args={"n": "{{workflow.parameters.n}}"}),
            task("square", "square", depends="gen", withParam="{{tasks.gen.outputs.parameters.items}}",
                 args={"x": "{{item}}"}),
            task("total", "total", depends="square", args={"values": "{{tasks.square.outputs.parameters.sq}}",
                                                           "results": "{{tasks.square.outputs.result}}"}),
        ],
        ctr("gen", "import json,sys; open(sys.argv[1],'w').write(json.dumps(list(range(int(sys.argv[2])))))",
            items_path, "{{inputs.parameters.n}}", inputs=["n"], outputs={"items": items_path}),
        ctr("square", "import sys; x=int(sys.argv[2]); open(sys.argv[1],'w').write(str(x*x)); print(x+100)",
            sq_path, "{{inputs.parameters.x}}", inputs=["x"], outputs={"sq": sq_path}),
        ctr("total", "import json,sys; print(sum(map(int, json.loads(sys.argv[1]))), json.loads(sys.argv[2]))",
            "{{inputs.parameters.values}}", "{{inputs.parameters.results}}", inputs=["values", "results"]),
        params={"n": "4"},
    )
    events: list[Event] = []
    result = LocalRunner(tmp_path / "runs", on_event=events.append).run(wf)

    assert result.phase == "Succeeded", result.message
    assert result.nodes["gen"].outputs == {"items": "[0, 1, 2, 3]"}
    children = [f"square({i}:{i})" for i in range(4)]
    assert [n for n in result.nodes if n.startswith("square(")] == children
    assert [result.nodes[c].outputs["sq"] for c in children] == ["0", "1", "4", "9"]
    assert result.nodes["square"].phase == "Succeeded"
    # Aggregated output parameters are a JSON list of STRINGS unless every value is a JSON object or list
    # (argo-workflows v4.1.2 workflow/controller/operator.go aggregatedJSONValueList; dag_test.go
    # TestDAGReferTaskAggregatedOutputs expects ["1","2"]). The aggregate node carries the list too.
    assert result.nodes["square"].outputs == {"sq": '["0","1","4","9"]'}
    # aggregated outputs.result: a list of each child's result decoded as JSON (processAggregateNodeOutputs)
    assert result.nodes["total"].result == "14 [100, 101, 102, 103]"
    # private output paths: the in-pod path was rewritten, never created on this machine
    assert not Path(items_path).parent.exists() and not Path(sq_path).parent.exists()
    # work dir layout: <workdir>/<wf-name>/<node-id>/attempt-1/{stdout.log,fs/<in-pod output path>}
    log = result.nodes["square(2:2)"].log_path
    assert log is not None and log.name == "stdout.log" and log.parent.name == "attempt-1"
    assert log.parent.parent.parent == result.run_dir == tmp_path / "runs" / result.workflow_name
    assert (log.parent / "fs" / sq_path.lstrip("/")).read_text() == "4"
    assert log.read_text().strip() == "102"
    kinds = [e.kind for e in events]
    assert kinds[0] == "run-started" and events[0].total is None  # withParam: count unknown up front
    assert kinds[-1] == "run-finished" and events[-1].total == 6 and events[-1].phase == "Succeeded"
    assert any(e.kind == "node-expanded" and e.node == "square" and e.total == 4 for e in events)
    assert sum(1 for e in events if e.kind == "node-succeeded" and e.leaf) == 6


def test_with_items_objects_when_and_workflow_variables(runner: LocalRunner) -> None:
    wf = workflow(
        [
            task("each", "echo", withItems=[{"name": "a", "n": 1}, {"name": "b", "n": 2}, {"name": "c", "n": 3}],
                 when="{{item.n}} != 2", args={"msg": "{{item.name}}-{{item.n}}:{{item}}"}),
            task("after", "echo", depends="each", args={"msg": "{{workflow.name}}/{{tasks.each.status}}"}),
        ],
        ctr("echo", "import sys; print(sys.argv[1])", "{{ inputs.parameters.msg }}", inputs=["msg"]),
    )
    result = runner.run(wf)
    assert result.phase == "Succeeded", result.message
    assert result.nodes["each(0:n:1,name:a)"].result == 'a-1:{"n":1,"name":"a"}'
    skipped = result.nodes["each(1:n:2,name:b)"]
    assert skipped.phase == "Skipped" and "evaluated false" in skipped.message and skipped.attempts == 0
    assert result.nodes["each(2:n:3,name:c)"].phase == "Succeeded"
    assert result.nodes["after"].result == f"{result.workflow_name}/Succeeded"


def test_nested_dag_outputs_and_script_template(runner: LocalRunner) -> None:
    inner = {
        "name": "inner",
        "inputs": {"parameters": [{"name": "word"}]},
        "dag": {"tasks": [task("shout", "shout", args={"word": "{{inputs.parameters.word}}"})]},
        "outputs": {"parameters": [{"name": "loud", "valueFrom": {"parameter": "{{tasks.shout.outputs.result}}"}}]},
    }
    shout = {
        "name": "shout",
        "inputs": {"parameters": [{"name": "word"}]},
        "script": {"image": "python:3.12", "command": [PY], "source": "print('{{inputs.parameters.word}}'.upper())"},
    }
    wf = workflow(
        [task("outer", "inner", args={"word": "hello"}),
         task("use", "echo", depends="outer", args={"msg": "{{tasks.outer.outputs.parameters.loud}}!"})],
        inner, shout, ctr("echo", "import sys; print(sys.argv[1])", "{{inputs.parameters.msg}}", inputs=["msg"]),
    )
    result = runner.run(wf)
    assert result.phase == "Succeeded", result.message
    assert result.nodes["outer.shout"].result == "HELLO"
    assert result.nodes["outer"].outputs == {"loud": "HELLO"}
    assert result.nodes["use"].result == "HELLO!"


def test_hera_built_workflow_and_workflow_template_parameters(tmp_path: Path) -> None:
    from hera.workflows import DAG, Container, Parameter, Workflow, WorkflowTemplate
    from hera.workflows.models import ValueFrom

    out = fake_abs_path("word.txt")
    lines: list[tuple[str, str]] = []

    def build(cls: type) -> dict[str, Any]:
        with cls(name="hera-local", entrypoint="main", arguments={"word": "hi"}) as w:
            make = Container(
                name="make", image="python:3.12", command=[PY, "-c"],
                args=["import sys; open(sys.argv[1],'w').write(sys.argv[2]*2); print('made', file=sys.stderr)",
                      out, "{{inputs.parameters.word}}"],
                inputs=[Parameter(name="word")],
                outputs=[Parameter(name="twice", value_from=ValueFrom(path=out))],
            )
            show = Container(name="show", image="python:3.12", command=[PY, "-c", "import sys; print(sys.argv[1])"],
                             args=["{{inputs.parameters.text}}"], inputs=[Parameter(name="text")])
            with DAG(name="main"):
                a = make(name="a", arguments={"word": "{{workflow.parameters.word}}"})
                b = show(name="b", arguments={"text": a.get_parameter("twice")})
                a >> b
        return w.to_dict()

    wf = build(Workflow)
    assert wf["spec"]["templates"][-1]["dag"]["tasks"][1]["depends"] == "a"
    runner = LocalRunner(tmp_path / "runs", on_log=lambda node, line: lines.append((node, line)))
    result = runner.run(wf)
    assert result.phase == "Succeeded", result.message
    assert result.workflow_name == "hera-local" and result.nodes["b"].result == "hihi"
    assert ("a", "made") in lines and ("b", "hihi") in lines
    assert "made" in result.nodes["a"].log_path.read_text()  # stderr goes to the log too
    assert result.nodes["a"].result == ""  # ...but not into outputs.result

    template = build(WorkflowTemplate)
    assert template["kind"] == "WorkflowTemplate"
    result = runner.run(template, parameters={"word": "yo"})
    assert result.phase == "Succeeded", result.message
    assert result.workflow_name.startswith("hera-local-") and result.nodes["b"].result == "yoyo"
    with pytest.raises(WorkflowError, match="unknown workflow parameter.*nope"):
        runner.run(template, parameters={"nope": "x"})


# --- control flow --------------------------------------------------------------------------------


def test_depends_failed_branches(runner: LocalRunner) -> None:
    wf = workflow(
        [
            task("A", "fail"),
            task("on-fail", "ok", depends="A.Failed"),
            task("on-ok", "ok", depends="A"),
            task("either", "ok", depends="(A.Succeeded || A.Failed) && !A.Errored"),
            task("after-omitted", "ok", depends="on-ok.Omitted"),
        ],
        OK, FAIL,
    )
    result = runner.run(wf)
    phases = {k: v.phase for k, v in result.nodes.items() if k != result.workflow_name}
    assert phases == {"A": "Failed", "on-fail": "Succeeded", "on-ok": "Omitted", "either": "Succeeded",
                      "after-omitted": "Succeeded"}
    assert result.nodes["A"].message == "Error (exit code 3)" and result.nodes["A"].exit_code == 3
    assert result.phase == "Succeeded"  # every target's branch handled the failure

    # A target omitted because of a failure inherits the failure (Argo's branch phase)
    wf = workflow([task("A", "fail"), task("on-ok", "ok", depends="A")], OK, FAIL)
    result = runner.run(wf)
    assert result.phase == "Failed" and result.nodes["on-ok"].phase == "Omitted"
    assert "A failed: Error (exit code 3)" in result.message


def test_any_succeeded_all_failed(runner: LocalRunner) -> None:
    flaky = ctr("maybe", "import sys; sys.exit(int(sys.argv[1]))", "{{inputs.parameters.code}}", inputs=["code"])
    wf = workflow(
        [
            task("mixed", "maybe", withItems=["0", "1"], args={"code": "{{item}}"}, continueOn={"failed": True}),
            task("bad", "maybe", withItems=[1, 2], args={"code": "{{item}}"}, continueOn={"failed": True}),
            task("any", "ok", depends="mixed.AnySucceeded"),
            task("all-failed", "ok", depends="bad.AllFailed && !mixed.AllFailed"),
            task("mixed-ok", "ok", depends="mixed"),
        ],
        OK, flaky,
    )
    result = runner.run(wf)
    assert result.nodes["mixed"].phase == "Failed" and result.nodes["mixed(0:0)"].phase == "Succeeded"
    assert result.nodes["any"].phase == "Succeeded" and result.nodes["all-failed"].phase == "Succeeded"
    assert result.nodes["mixed-ok"].phase == "Succeeded"  # bare name + continueOn.failed accepts Failed
    assert result.phase == "Succeeded", result.message


def test_dependencies_omit_on_failure_unless_continue_on(runner: LocalRunner) -> None:
    wf = workflow([task("A", "fail"), task("B", "ok", dependencies=["A"]), task("C", "ok", dependencies=["B"])],
                  OK, FAIL)
    result = runner.run(wf)
    assert [result.nodes[t].phase for t in "ABC"] == ["Failed", "Omitted", "Omitted"]
    assert result.phase == "Failed"

    wf = workflow([task("A", "fail", continueOn={"failed": True}), task("B", "ok", dependencies=["A"])], OK, FAIL)
    result = runner.run(wf)
    assert [result.nodes[t].phase for t in "AB"] == ["Failed", "Succeeded"]
    assert result.phase == "Succeeded"

    # continueOn on a target task keeps the DAG green
    result = runner.run(workflow([task("A", "fail", continueOn={"failed": True})], FAIL))
    assert result.phase == "Succeeded" and result.nodes["A"].phase == "Failed"


# --- retries, timeouts ------------------------------------------------------------------------


def test_retry_succeeds_on_second_attempt_with_backoff(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    code = ("import sys,pathlib; p=pathlib.Path(sys.argv[1]); n=int(p.read_text()) if p.exists() else 0; "
            "p.write_text(str(n+1)); print('attempt', n+1, '{{retries}}'); sys.exit(1 if n == 0 else 0)")
    # maxDuration is also the retry's deadline (from the first attempt's start): 5m scaled is 3 s, room to spare
    wf = workflow([task("flaky", "flaky")],
                  ctr("flaky", code, str(counter),
                      retryStrategy={"limit": "3", "backoff": {"duration": "20s", "factor": 2, "maxDuration": "5m"}}))
    events: list[Event] = []
    result = LocalRunner(tmp_path / "runs", on_event=events.append, time_scale=0.01).run(wf)
    node = result.nodes["flaky"]
    assert result.phase == "Succeeded" and node.phase == "Succeeded" and node.attempts == 2
    assert counter.read_text() == "2" and node.result == "attempt 2 1"
    assert (node.log_path.parent.parent / "attempt-1" / "stdout.log").read_text().strip() == "attempt 1 0"
    starts = [e.time for e in events if e.kind == "node-running" and e.node == "flaky"]
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.19  # 20s backoff scaled by 0.01
    assert [e.attempt for e in events if e.kind == "node-pending" and e.node == "flaky"] == [1, 2]


def test_retry_limit_exhausted_and_policies(tmp_path: Path) -> None:
    runner = LocalRunner(tmp_path / "runs", time_scale=0.01)
    result = runner.run(workflow([task("f", "fail")], {**FAIL, "retryStrategy": {"limit": 2}}))
    node = result.nodes["f"]
    # the last attempt's message, then processNodeRetries' own (argo-workflows v4.1.2 workflow/controller/operator.go)
    assert result.phase == "Failed" and node.attempts == 3
    assert node.message == "Error (exit code 3); No more retries left"
    assert sorted(p.name for p in node.log_path.parent.parent.iterdir()) == ["attempt-1", "attempt-2", "attempt-3"]

    # OnError does not retry a process failure ...
    result = runner.run(workflow([task("f", "fail")], {**FAIL, "retryStrategy": {"limit": 2, "retryPolicy": "OnError"}}))
    assert result.nodes["f"].attempts == 1 and result.nodes["f"].phase == "Failed"
    # ... but does retry a runner-side error (missing executable = Error)
    missing = {"name": "missing", "container": {"image": "x", "command": ["no-such-binary-kubescribe"]},
               "retryStrategy": {"limit": 1, "retryPolicy": "OnError"}}
    result = runner.run(workflow([task("m", "missing")], missing))
    assert result.phase == "Error" and result.nodes["m"].phase == "Error" and result.nodes["m"].attempts == 2
    assert "no-such-binary-kubescribe" in result.nodes["m"].message
    # maxDuration stops retrying when the next backoff would not fit
    rs = {"limit": 5, "backoff": {"duration": "20s", "maxDuration": "10s"}}
    result = LocalRunner(tmp_path / "runs").run(workflow([task("f", "fail")], {**FAIL, "retryStrategy": rs}))
    assert result.nodes["f"].attempts == 1 and "Backoff would exceed max duration limit" in result.nodes["f"].message


def test_timeout_kills_process(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    slow = ctr("slow", "import sys,time; time.sleep(30); open(sys.argv[1],'w').write('x')", str(marker),
               activeDeadlineSeconds=1)
    also = ctr("also", "import time; time.sleep(30)", timeout="300ms")
    t0 = time.time()
    result = LocalRunner(tmp_path / "runs", time_scale=0.3).run(
        workflow([task("slow", "slow"), task("also", "also")], slow, also))
    assert time.time() - t0 < 5
    assert result.phase == "Failed"
    for name in ("slow", "also"):
        assert result.nodes[name].phase == "Failed" and "timeout" in result.nodes[name].message
    assert not marker.exists()


def test_workflow_active_deadline(tmp_path: Path) -> None:
    wf = workflow([task("slow", "slow"), task("next", "ok", depends="slow")],
                  ctr("slow", "import time; time.sleep(30)"), OK, activeDeadlineSeconds=2)
    t0 = time.time()
    result = LocalRunner(tmp_path / "runs", time_scale=0.2).run(wf)
    assert time.time() - t0 < 5
    assert result.phase == "Failed" and "deadline" in result.message
    assert result.nodes["slow"].phase == "Failed" and "next" not in result.nodes


# --- concurrency and admission ----------------------------------------------------------------


def test_workflow_parallelism_bounds_concurrency(tmp_path: Path) -> None:
    log = tmp_path / "spans.jsonl"
    wf = workflow([task(f"t{i}", "span") for i in range(4)], ctr("span", INTERVAL, str(log), "0.25"), parallelism=2)
    result = LocalRunner(tmp_path / "runs").run(wf)
    assert result.phase == "Succeeded", result.message
    spans = intervals(log)
    assert len(spans) == 4 and max_overlap(spans) <= 2


def test_dag_parallelism_bounds_fan_out(tmp_path: Path) -> None:
    log = tmp_path / "spans.jsonl"
    wf = workflow([task("fan", "span", withItems=[1, 2, 3])], ctr("span", INTERVAL, str(log), "0.15"),
                  dag_extra={"parallelism": 1})
    result = LocalRunner(tmp_path / "runs").run(wf)
    assert result.phase == "Succeeded", result.message
    spans = intervals(log)
    assert len(spans) == 3 and max_overlap(spans) == 1


def test_capacity_admission_serialises_gpu_tasks(tmp_path: Path) -> None:
    log = tmp_path / "spans.jsonl"
    gpu = ctr("gpu", INTERVAL, str(log), "0.2", resources={"limits": {GPU: "1"}, "requests": {"cpu": "2"}},
              metadata={"labels": {"kueue.x-k8s.io/queue-name": "gpu"}})
    wf = workflow([task("a", "gpu"), task("b", "gpu")], gpu)
    result = LocalRunner(tmp_path / "runs", capacity={GPU: 1}).run(wf)
    assert result.phase == "Succeeded", result.message
    assert max_overlap(intervals(log)) == 1


def test_capacity_admits_concurrently_when_it_fits(tmp_path: Path) -> None:
    # Each task waits (up to 5 s) for the other to have started: only true concurrency passes.
    barrier = ("import sys,time,pathlib; d=pathlib.Path(sys.argv[1]); (d/sys.argv[2]).touch(); t=time.time()\n"
               "while len(list(d.iterdir())) < 2 and time.time()-t < 5: time.sleep(0.02)\n"
               "sys.exit(0 if len(list(d.iterdir())) == 2 else 1)")
    (tmp_path / "barrier").mkdir()
    gpu = ctr("gpu", barrier, str(tmp_path / "barrier"), "{{inputs.parameters.me}}", inputs=["me"],
              resources={"limits": {GPU: 1}})
    wf = workflow([task("a", "gpu", args={"me": "a"}), task("b", "gpu", args={"me": "b"})], gpu)
    result = LocalRunner(tmp_path / "runs", capacity={GPU: 2}).run(wf)
    assert result.phase == "Succeeded", result.message


def test_missing_capacity_is_a_clear_error_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    wf = workflow([task("first", "touch"), task("gpu", "gpu", depends="first")],
                  ctr("touch", "import sys; open(sys.argv[1],'w')", str(marker)),
                  ctr("gpu", "pass", resources={"limits": {GPU: 1}}))
    with pytest.raises(WorkflowError, match=r"no local capacity for nvidia\.com/mig-1g\.10gb; .*spec\.templates\[gpu\]"):
        LocalRunner(tmp_path / "runs", capacity={"nvidia.com/gpu": 1}).run(wf)
    with pytest.raises(WorkflowError, match="capacity for nvidia.com/mig-1g.10gb is 1 but the task asks for 2"):
        LocalRunner(tmp_path / "runs", capacity={GPU: 1}).run(
            workflow([task("gpu", "gpu")], ctr("gpu", "pass", resources={"limits": {GPU: 2}})))
    assert not marker.exists()


# --- environment and secrets ----------------------------------------------------------------------


def test_env_secrets_and_path(tmp_path: Path) -> None:
    code = ("import os,sys; print(os.environ['TOKEN'], os.environ['PLAIN'], os.environ['BASE'], "
            "os.environ['PATH'].split(os.pathsep)[0] == os.path.dirname(sys.executable))")
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
           {"name": "PLAIN", "value": "{{workflow.parameters.p}}"}]
    wf = workflow([task("show", "show")], ctr("show", code, env=env), params={"p": "pv"})
    runner = LocalRunner(tmp_path / "runs", secrets={("hf", "token"): "s3cret"},
                         env={"BASE": "b", "PATH": os.environ.get("PATH", "")})
    result = runner.run(wf)
    assert result.nodes["show"].result == "s3cret pv b True"

    with pytest.raises(WorkflowError, match=r"secret 'hf' key 'token'.*env\[TOKEN\]|env\[TOKEN\].*secret 'hf' key 'token'"):
        LocalRunner(tmp_path / "runs").run(wf)


# --- refusals and errors ------------------------------------------------------------------------


def test_unsupported_fields_are_named_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    first = ctr("first", "import sys; open(sys.argv[1],'w')", str(marker))
    transcribe = ctr("transcribe", "pass")
    transcribe["container"]["lifecycle"] = {"preStop": {}}
    runner = LocalRunner(tmp_path / "runs")
    with pytest.raises(UnsupportedFeature) as exc:
        runner.run(workflow([task("first", "first"), task("t", "transcribe", depends="first")], first, transcribe))
    assert str(exc.value) == "spec.templates[transcribe].container.lifecycle is not supported by the local runner"
    assert not marker.exists()

    cases = {
        "spec.templates[s].steps": {"name": "s", "steps": [[{"name": "x", "template": "first"}]]},
        "spec.templates[art].inputs.artifacts": {**ctr("art", "pass"), "inputs": {"artifacts": [{"name": "a"}]}},
        "spec.templates[main].dag.tasks[first].onExit": None,
        "spec.onExit": None,
        "{{=": None,
        "when": None,
    }
    for needle, extra in cases.items():
        tasks = [task("first", "first")]
        spec: dict[str, Any] = {}
        templates = [first]
        if extra is not None:
            templates.append(extra)
        if needle.endswith("onExit") and "tasks" in needle:
            tasks[0]["onExit"] = "first"
        elif needle == "spec.onExit":
            spec["onExit"] = "first"
        elif needle == "{{=":
            tasks[0]["arguments"] = {"parameters": [{"name": "x", "value": "{{=sprig.upper('a')}}"}]}
        elif needle == "when":
            tasks[0]["when"] = "{{workflow.name}} =~ '^t'"
        with pytest.raises(UnsupportedFeature, match=re.escape(needle)):
            runner.run(workflow(tasks, *templates, **spec))
    assert not marker.exists()


def test_unresolved_references_are_clear_errors(runner: LocalRunner) -> None:
    gen = ctr("gen", "print('x')")
    echo = ctr("echo", "import sys; print(sys.argv[1])", "{{inputs.parameters.msg}}", inputs=["msg"])
    wf = workflow([task("gen", "gen"),
                   task("use", "echo", depends="gen", args={"msg": "{{ tasks.gen.outputs.parameters.nope }}"})],
                  gen, echo)
    result = runner.run(wf)
    assert result.phase == "Error"
    assert result.nodes["use"].phase == "Error"
    assert "{{tasks.gen.outputs.parameters.nope}}" in result.nodes["use"].message
    assert "task 'use'" in result.nodes["use"].message
    assert "{{tasks.gen.outputs.parameters.nope}}" in result.message

    bad = ctr("bad", "print(1)", "{{inputs.parameters.typo}}", inputs=["msg"])
    result = runner.run(workflow([task("b", "bad", args={"msg": "m"})], bad))
    assert result.nodes["b"].phase == "Error" and "{{inputs.parameters.typo}}" in result.nodes["b"].message
    assert "task 'b'" in result.nodes["b"].message

    result = runner.run(workflow([task("b", "echo")], echo))
    assert result.nodes["b"].phase == "Error" and "missing required input parameter 'msg'" in result.nodes["b"].message


def test_output_parameter_default_and_missing_file(runner: LocalRunner) -> None:
    path = fake_abs_path("never")
    silent = ctr("silent", "pass", outputs={"v": path})
    with_default = {**silent, "name": "dflt",
                    "outputs": {"parameters": [{"name": "v", "valueFrom": {"path": path, "default": "fallback"}}]}}
    result = runner.run(workflow([task("a", "silent"), task("b", "dflt")], silent, with_default))
    assert result.nodes["b"].phase == "Succeeded" and result.nodes["b"].outputs == {"v": "fallback"}
    a = result.nodes["a"]
    assert a.phase == "Error" and "output parameter 'v'" in a.message and path in a.message


def test_custom_handler_receives_resolved_spec(tmp_path: Path) -> None:
    from workflows.local import TaskOutcome, TaskSpec

    seen: list[TaskSpec] = []

    class Recorder:
        def run(self, task: TaskSpec) -> TaskOutcome:
            seen.append(task)
            out = next(a for a in task.argv if a.startswith("--out="))
            Path(out.removeprefix("--out=")).write_text("handled")
            return TaskOutcome("Succeeded", stdout="done\n")

    path = fake_abs_path("v")
    wf = workflow([task("x", "x")], ctr("x", "unused", f"--out={path}", outputs={"v": path}))
    handler = Recorder()
    assert isinstance(handler, TaskHandler) and isinstance(SubprocessHandler(), TaskHandler)
    result = LocalRunner(tmp_path / "runs", handler=handler).run(wf)
    assert result.nodes["x"] == NodeStatus(
        phase="Succeeded", template="x", outputs={"v": "handled"}, result="done", attempts=1,
        started=result.nodes["x"].started, finished=result.nodes["x"].finished,
        log_path=result.nodes["x"].log_path,
    )
    assert seen[0].argv[-1] == f"--out={seen[0].attempt_dir / 'fs' / path.lstrip('/')}"


# --- expression helpers ---------------------------------------------------------------------------


def test_expression_helpers() -> None:
    assert eval_when("3 > 2 && (a == a || 'x' != 'x')") is True
    assert eval_when("'10' == 10") is False and eval_when("1.5 >= 1.5") is True
    with pytest.raises(UnsupportedFeature):
        eval_when("a =~ b")
    with pytest.raises(WorkflowError, match="task result 'Done'"):
        parse_depends("A.Done")
    assert parse_duration("1m30s") == 90 and parse_duration("250ms") == 0.25 and parse_duration("7") == 7
    with pytest.raises(WorkflowError):
        parse_duration("soon")
