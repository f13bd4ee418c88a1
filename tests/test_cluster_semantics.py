"""What the manifests do on a real cluster (issue 7), checked offline on the hera output and the rendered chart.

Each block names the upstream source its behaviour comes from; the rendered objects are also validated against the
saved upstream schemas (Argo v4.1.2, Kueue v0.19.2 CRDs, llm-d InferenceObjective CRD) like tests/test_chart.py.

* retries: argoproj/argo-workflows v4.1.2 ``workflow/controller/operator.go`` ``processNodeRetries`` and
  ``buildRetryStrategyLocalScope``, ``docs/retries.md``; ``workflowpod.go`` ``getDeadline``; ``workflow/executor/
  executor.go`` ``monitorDeadline``.
* run deadline: ``operator.go`` ``getWorkflowDeadline``, ``checkTemplateTimeouts``,
  ``failNodesWithoutCreatedPodsAfterDeadlineOrShutdown``; ``workflow/controller/exec_control.go``.
* pod security: ``workflowpod.go`` ``newExecContainer`` (init/wait get only ``executor.securityContext``).
* gateway priority: llm-d/llm-d-inference-scheduler @520af47 ``pkg/epp/util/request/sheddable.go``,
  ``pkg/epp/requestcontrol/admission.go``.
* report outputs: ``workflowpod.go`` ``addArchiveLocation``; ``executor.go`` ``SaveParameters``, ``saveArtifact``.
* Kueue/DAS: kubernetes-sigs/kueue v0.19.2 ``apis/kueue/v1beta2/clusterqueue_types.go`` (preemption defaults),
  ``pkg/workload/resources.go``; openshift/instaslice-operator next@9f4fc07 ``pkg/webhook/webhook.go``.
"""

from __future__ import annotations

import re
from pathlib import Path

import helm_python
import pytest
import yaml

from tests.chart_support import NAMESPACE, RELEASE, SCENARIO_FILES, diff, hera_workflowtemplate, render
from tests.schemas import validate as V
from tools.chart import CHART_DIR
from tools.chart_values import report_artifacts_enabled
from workflows.cron import build_cron_workflow
from workflows.pipeline import (
    OUTPUTS_DIR,
    REPORT_FILE,
    RESULT_FILE,
    SUMMARY_FILE,
    build_workflow,
    build_workflow_template,
)
from steps.cli import EXIT_CONFIG, EXIT_RETRYABLE
from workflows.local.durations import parse_duration
from workflows.local.retries import Attempt, plan_retry
from workflows.settings import PipelineSettings

ROOT = Path(__file__).resolve().parents[1]


def _templates(obj: dict) -> dict[str, dict]:
    return {t["name"]: t for t in obj["spec"]["templates"]}


def _scenario_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


# ---------------------------------------------------------------------------------------------------------------
# 1. Retries that actually retry


def argo_retries(strategy: dict | None, phase: str, exit_code: str) -> bool:
    """Whether Argo v4.1.2 starts another attempt after one that ended in ``phase`` (limit not yet reached), as
    decided by the local runner's port of operator.go processNodeRetries (workflows/local/retries.py, one owner
    of those semantics, with its own conformance tests)."""
    if not strategy:
        return False
    last = Attempt(number=1, phase=phase, message="", exit_code=None if exit_code == "-1" else int(exit_code),
                   created=0.0, finished=1.0)
    decision = {k: v for k, v in strategy.items() if k != "limit"}  # the limit only caps how often
    return plan_retry(decision, last, first_created=0.0, now=1.0, seconds=lambda v, _: parse_duration(v)).retry


# (template, phase of the failed attempt, lastRetry.exitCode, retried?)
RETRY_CASES = [
    # steps/cli.py: exit 2 = infrastructure error (store or endpoint unreachable) that Argo retries
    ("plan", "Failed", "2", True),
    ("summarize", "Failed", "2", True),
    # a usage or configuration error (exit 3) and a real failure are final
    ("plan", "Failed", "3", False),
    ("summarize", "Failed", "3", False),
    ("plan", "Failed", "1", False),
    ("summarize", "Failed", "1", False),
    ("summarize", "Failed", "137", False),
    # pod deleted (Kueue preemption, eviction) / init or wait container failed: Error, no exit code
    ("plan", "Error", "-1", True),
    ("summarize", "Error", "-1", True),
    # Whisper: everything (preemption, DAS UnexpectedAdmissionError without an exit code, OOM, exit 2)
    ("transcribe", "Error", "-1", True),
    ("transcribe", "Failed", "-1", True),
    ("transcribe", "Failed", "137", True),
    ("transcribe", "Failed", "2", True),
    # the report is not retried (exit 1 means "the report found failed files")
    ("report", "Failed", "1", False),
]


@pytest.mark.parametrize("template,phase,exit_code,expected", RETRY_CASES)
def test_retry_decisions_follow_the_exit_code_contract(template, phase, exit_code, expected):
    strategy = _templates(build_workflow_template().to_dict())[template].get("retryStrategy")
    assert argo_retries(strategy, phase, exit_code) is expected, strategy


def test_the_retryable_exit_code_is_the_steps_contract():
    assert (EXIT_RETRYABLE, EXIT_CONFIG) == (2, 3)
    for name in ("plan", "summarize"):
        expression = _templates(build_workflow_template().to_dict())[name]["retryStrategy"]["expression"]
        # Argo passes the exit code as a string: comparing with the number 2 would never match.
        assert f'lastRetry.exitCode == "{EXIT_RETRYABLE}"' in expression


def _no_max_duration(obj: dict) -> None:
    for t in obj["spec"]["templates"]:
        backoff = (t.get("retryStrategy") or {}).get("backoff")
        if backoff:
            # maxDuration runs from the FIRST attempt's start (queue time included) and becomes every retry pod's
            # ARGO_DEADLINE: operator.go processNodeRetries -> opts.executionDeadline -> workflowpod.go getDeadline
            assert "maxDuration" not in backoff, f"{t['name']}: backoff.maxDuration kills retries after a queue wait"
            assert backoff.get("cap"), f"{t['name']}: cap the backoff instead"


def test_no_backoff_max_duration_in_hera():
    _no_max_duration(build_workflow_template().to_dict())
    assert _templates(build_workflow_template().to_dict())["transcribe"]["retryStrategy"]["backoff"]["cap"] == "5m"


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_no_backoff_max_duration_in_the_chart(chart, path):
    r = render(chart, _scenario_values(path))
    wt = r.one("WorkflowTemplate")
    _no_max_duration(wt)
    templates = _templates(wt)
    for name, phase, exit_code, expected in RETRY_CASES:  # the decision; the limit (pipeline.retries) caps how often
        assert argo_retries(templates[name].get("retryStrategy"), phase, exit_code) is expected, (r.name, name)
    assert V.validation_errors(wt, strict=True) == []


# ---------------------------------------------------------------------------------------------------------------
# 2. Time limits that hold while queued


def test_run_deadline_bounds_every_run():
    s = PipelineSettings()
    assert s.active_deadline_seconds == 24 * 3600
    for obj in (build_workflow_template(s).to_dict(), build_workflow(s).to_dict()):
        assert obj["spec"]["activeDeadlineSeconds"] == 24 * 3600
    cron = build_cron_workflow(PipelineSettings(active_deadline_seconds=7200)).to_dict()
    assert cron["spec"]["workflowSpec"]["activeDeadlineSeconds"] == 7200
    assert V.validation_errors(cron, strict=True) == []
    with pytest.raises(ValueError):
        PipelineSettings(active_deadline_seconds=0)


def test_chart_run_deadline(chart):
    r = render(chart, {"cron": {"enabled": True}})
    assert r.one("WorkflowTemplate")["spec"]["activeDeadlineSeconds"] == 86400
    assert r.one("CronWorkflow")["spec"]["workflowSpec"]["activeDeadlineSeconds"] == 86400
    r = render(chart, {"cron": {"enabled": True}, "pipeline": {"activeDeadlineSeconds": 3 * 3600}})
    assert r.one("WorkflowTemplate")["spec"]["activeDeadlineSeconds"] == 3 * 3600
    assert r.one("CronWorkflow")["spec"]["workflowSpec"]["activeDeadlineSeconds"] == 3 * 3600
    assert r.one("WorkflowTemplate") == hera_workflowtemplate(r)
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)[f"{chart.name}/templates/NOTES.txt"]
    assert "Run deadline:     86400s per run" in notes


@pytest.mark.parametrize("value", [0, 59, "24h", None, 1.5])
def test_chart_run_deadline_schema(chart, value):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.render({"pipeline": {"activeDeadlineSeconds": value}}, name=RELEASE, namespace=NAMESPACE)
    assert "/pipeline" in str(err.value)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    level = heading.split(" ")[0]
    rest = text[start + len(heading):]
    m = re.search(rf"^{level} ", rest, re.M)
    return rest[: m.start()] if m else rest


def test_time_limits_are_documented_precisely():
    deploy = _section((ROOT / "README.md").read_text(), "## Deploy on a cluster")
    chart_readme = (CHART_DIR / "README.md").read_text()
    for text in (deploy, chart_readme):
        for needle in ("activeDeadlineSeconds", "timeout", "maxDuration", "cap", "queue"):
            assert needle in text, needle
    values_text = (CHART_DIR / "values.yaml").read_text()
    wrong = "includes the time the pod waits in the Kueue queue"  # not for a retried template (checkTemplateTimeouts)
    assert wrong not in values_text and "timeout includes time queued in Kueue" not in chart_readme
    assert "NOT counted" in values_text


# ---------------------------------------------------------------------------------------------------------------
# 3. Pods that OpenShift and restricted namespaces admit


def test_no_fixed_ids_by_default_opt_in_when_asked():
    pod = build_workflow_template().to_dict()["spec"]["securityContext"]
    assert pod == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    pinned = build_workflow_template(PipelineSettings(run_as_user=1000, run_as_group=2000, fs_group=3000)).to_dict()
    assert {k: pinned["spec"]["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {
        "runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000}
    with pytest.raises(ValueError):
        PipelineSettings(run_as_user=0)


@pytest.mark.parametrize("ids", [{}, {"runAsUser": 65532}, {"fsGroup": 1000}, {"runAsGroup": 5, "fsGroup": 6},
                                 {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}])
def test_chart_pod_ids(chart, ids):
    r = render(chart, {"podSecurityContext": ids})
    wt = r.one("WorkflowTemplate")
    assert wt == hera_workflowtemplate(r), diff(hera_workflowtemplate(r), wt, "WorkflowTemplate")
    pod = wt["spec"]["securityContext"]
    assert {k: v for k, v in pod.items() if k in ("runAsUser", "runAsGroup", "fsGroup")} == ids
    assert pod["runAsNonRoot"] is True
    assert V.validation_errors(wt, strict=True) == []


@pytest.mark.parametrize("ids", [{"runAsUser": 0}, {"fsGroup": "65532"}, {"runAsUid": 1}])
def test_chart_pod_ids_schema(chart, ids):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.render({"podSecurityContext": ids}, name=RELEASE, namespace=NAMESPACE)
    assert "/podSecurityContext" in str(err.value)


def test_executor_security_context_is_documented(chart):
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)[f"{chart.name}/templates/NOTES.txt"]
    chart_readme = (CHART_DIR / "README.md").read_text()
    for text in (notes, chart_readme):
        assert "workflow-controller-configmap" in text and "executor: |" in text
        block = text[text.index("executor: |"):]
        for needle in ("runAsNonRoot: true", "allowPrivilegeEscalation: false", "drop: [ALL]", "type: RuntimeDefault"):
            assert needle in block[:400], needle


# ---------------------------------------------------------------------------------------------------------------
# 4. Summaries queued, not dropped


def test_inference_objective_priority_is_not_sheddable(chart):
    # llm-d router: IsSheddable(priority) is priority < 0; the legacy admission controller (flow control off, the
    # default) answers those with 429 when the pool is saturated.
    assert chart.values["gateway"]["inferenceObjective"]["priority"] == 0
    r = render(chart, {"gateway": {"inferenceObjective": {"create": True, "name": "kubescribe-batch",
                                                          "poolRef": {"name": "pool"}}}})
    obj = r.one("InferenceObjective")
    assert obj["spec"]["priority"] >= 0
    assert V.validation_errors(obj, strict=True) == []
    readme = (CHART_DIR / "README.md").read_text()
    assert "sheddable" in readme and "429" in readme and "default `-1`" not in readme


# ---------------------------------------------------------------------------------------------------------------
# 5. Results in the Argo UI


def test_report_publishes_artifacts_and_result():
    report = _templates(build_workflow_template().to_dict())["report"]
    args = report["container"]["args"]
    assert args[args.index("--artifacts-dir") + 1] == OUTPUTS_DIR
    outputs = report["outputs"]
    assert outputs["artifacts"] == [
        {"archive": {"none": {}}, "name": "report", "optional": True, "path": REPORT_FILE},
        {"archive": {"none": {}}, "name": "summary", "optional": True, "path": SUMMARY_FILE},
    ]
    (result,) = outputs["parameters"]
    assert result["name"] == "result" and result["valueFrom"]["path"] == RESULT_FILE
    assert result["valueFrom"]["default"], "a report that fails before writing keeps its own error"
    # the files are on the /tmp emptyDir the wait container can read
    assert all(p.startswith("/tmp/") for p in (REPORT_FILE, SUMMARY_FILE, RESULT_FILE))
    assert {"name": "tmp", "mountPath": "/tmp"} in report["container"]["volumeMounts"]
    off = _templates(build_workflow_template(PipelineSettings(report_artifacts=False)).to_dict())["report"]
    assert "artifacts" not in off["outputs"] and off["outputs"]["parameters"] == outputs["parameters"]
    assert V.validation_errors(build_workflow_template().to_dict(), strict=True) == []


@pytest.mark.parametrize("report_artifacts,repository,expected", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False), (True, True, True)])
def test_chart_report_artifacts(chart, report_artifacts, repository, expected):
    overrides: dict = {"artifactRepository": {"enabled": repository}, "pipeline": {"reportArtifacts": report_artifacts}}
    r = render(chart, overrides)
    assert report_artifacts_enabled(r.values) is expected
    wt = r.one("WorkflowTemplate")
    assert wt == hera_workflowtemplate(r), diff(hera_workflowtemplate(r), wt, "WorkflowTemplate")
    outputs = _templates(wt)["report"]["outputs"]
    assert ([a["name"] for a in outputs.get("artifacts", [])] == ["report", "summary"]) is expected
    assert [p["name"] for p in outputs["parameters"]] == ["result"]
    assert V.validation_errors(wt, strict=True) == []
    assert len(r.of_kind("ConfigMap")) == (1 if repository else 0)


# ---------------------------------------------------------------------------------------------------------------
# 6. Docs that match the code; Kueue preemption; DAS


def test_cluster_queue_preemption_is_explicit(chart):
    cq = render(chart, {}).one("ClusterQueue")
    # The values equal Kueue's defaults (clusterqueue_types.go +kubebuilder:default=Never), rendered explicitly.
    assert cq["spec"]["preemption"] == {"withinClusterQueue": "Never", "reclaimWithinCohort": "Never",
                                        "borrowWithinCohort": {"policy": "Never"}}
    assert V.validation_errors(cq, strict=True) == []
    custom = {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any",
              "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": 50}}
    cq = render(chart, {"kueue": {"clusterQueue": {"preemption": custom}}}).one("ClusterQueue")
    assert cq["spec"]["preemption"] == custom
    assert V.validation_errors(cq, strict=True) == []


@pytest.mark.parametrize("preemption,where", [
    # Kueue's CEL rule: reclaimWithinCohort=Never and borrowWithinCohort.policy!=Never
    ({"reclaimWithinCohort": "Never", "borrowWithinCohort": {"policy": "LowerPriority"}}, "/kueue/clusterQueue/preemption"),
    ({"withinClusterQueue": "Sometimes"}, "/kueue/clusterQueue/preemption/withinClusterQueue"),
])
def test_cluster_queue_preemption_schema(chart, preemption, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.render({"kueue": {"clusterQueue": {"preemption": preemption}}}, name=RELEASE, namespace=NAMESPACE)
    assert where in str(err.value)


def test_das_quota_default_and_docs(chart):
    # DAS webhook (pkg/webhook/webhook.go mutatePod): nvidia.com/mig-<p> -> mig.das.com/<p> in limits AND requests;
    # Kueue builds the Workload from the stored pod, so the ClusterQueue counts the renamed resource.
    assert chart.values["das"]["enabled"] is True and chart.values["kueue"]["clusterQueue"]["quota"]["acceleratorResource"] == ""
    covered = render(chart, {}).one("ClusterQueue")["spec"]["resourceGroups"][0]["coveredResources"]
    assert covered == ["cpu", "memory", "mig.das.com/1g.10gb"]
    readme = (CHART_DIR / "README.md").read_text()
    assert "open question" not in readme.lower() and "OPEN QUESTION" not in (CHART_DIR / "values.yaml").read_text()
    das = " ".join(_section(readme, "## DAS and the Kueue quota").split())
    for needle in ("pkg/webhook/webhook.go", "limits` and `requests`", "das-scheduler", "nvidia-legacy",
                   "overhead", "handlePodOverhead", "init", "constructPodSet"):
        assert needle in das, needle


def test_docs_match_the_code():
    readme = (ROOT / "README.md").read_text()
    chart_readme = (CHART_DIR / "README.md").read_text()
    # Argo's 256 kB cap is for outputs.result (executor.go CaptureScriptResult), not for parameters.
    assert "256 KB parameter limit" not in readme and "outputs.result" in readme
    # The step pods do carry kubescribe labels (template metadata, POD_LABELS), which the NetworkPolicy selects.
    assert "Argo adds no kubescribe label" not in chart_readme
    assert "app.kubernetes.io/component: step" in _section(chart_readme, "## NetworkPolicy caveats")
    # spec.podMetadata reaches pods of Workflows made from the template too (util/merge.go JoinWorkflowSpec).
    pipeline_src = (ROOT / "workflows" / "pipeline.py").read_text()
    assert "unlike spec.podMetadata" not in pipeline_src
    kueue_tpl = (CHART_DIR / "templates" / "kueue.yaml").read_text()
    assert "Argo's init/wait containers count too" not in kueue_tpl and "init container" in kueue_tpl
    assert "## Kueue preemption" in chart_readme
