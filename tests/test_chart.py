"""Offline checks of charts/kubescribe (helm-python-sdk render + lint, upstream schemas, security invariants).

The key test, ``test_workflowtemplate_is_the_hera_render``: for every ``ci/*-values.yaml`` scenario (and every
combination of the value switches that change the DAG's shape) the WorkflowTemplate Helm renders equals
``build_workflow_template(settings_from_values(values)).to_dict()``, i.e. the chart's DAG *is* the hera one.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart_support import NAMESPACE, RELEASE, SCENARIO_FILES, Rendered, diff, hera_workflowtemplate, render
from tests.schemas import validate as schema_validate
from tools.chart import CHART_DIR, stale_chart_templates
from tools.chart_values import (
    cron_from_values,
    effective_objective,
    fullname,
    quota_resource_name,
)
from workflows.pipeline import PRIORITY_LABEL, QUEUE_LABEL
from workflows.render import to_yaml




V = schema_validate

REQUIRED_SCENARIOS = {"defaults", "cpu-only", "whole-gpu", "mig", "kueue-off", "cron", "inference-objective"}


@pytest.fixture(scope="module", params=SCENARIO_FILES, ids=lambda p: p.name.removesuffix("-values.yaml"))
def scenario(request, chart) -> Rendered:
    path: Path = request.param
    return render(chart, yaml.safe_load(path.read_text()) or {}, path.name.removesuffix("-values.yaml"))


def _containers(template: dict) -> list[dict]:
    found = [template[k] for k in ("container", "script") if k in template]
    for k in ("initContainers", "sidecars"):
        found += template.get(k) or []
    return found


def _transcribe(r: Rendered) -> dict:
    (t,) = [t for t in r.one("WorkflowTemplate")["spec"]["templates"] if t["name"] == "transcribe"]
    return t


# ---------------------------------------------------------------------------------------------------------------
# Generation and rendering


def test_generated_templates_are_fresh():
    stale = stale_chart_templates()
    assert not stale, "chart templates differ from a fresh hera render; run `make chart`:\n" + "\n".join(
        stale.values()
    )


def test_generator_refuses_what_it_cannot_template():
    from tools.chart import Feature, Knob, _hunks, _merge, _replace_knobs

    knob = Knob("input", "zzhelm-input", ".Values.pipeline.input")
    assert _replace_knobs("value: 'zzhelm-input'\n", [knob]) == "value: {{ .Values.pipeline.input | quote }}\n"
    with pytest.raises(ValueError, match="inside a longer value"):
        _replace_knobs("value: zzhelm-input\nargs: --in=zzhelm-input\n", [knob])
    with pytest.raises(ValueError, match="not found"):
        _replace_knobs("value: other\n", [knob])
    base = ["a: 1", "b: 2", "c: 3", "d: 4"]
    one = _hunks(base, ["a: 1", "d: 4"], Feature("f1", "$one"))
    two = _hunks(base, ["a: 1", "b: 2", "e: 5"], Feature("f2", "$two"))
    with pytest.raises(ValueError, match="overlap"):
        _merge(base, one + two)
    assert _merge(base, one) == ["a: 1", "{{- if $one }}", "b: 2", "c: 3", "{{- end }}", "d: 4"]


def test_ci_scenarios_cover_the_issue():
    names = {p.name.removesuffix("-values.yaml") for p in SCENARIO_FILES}
    assert REQUIRED_SCENARIOS <= names, f"missing ci scenarios: {sorted(REQUIRED_SCENARIOS - names)}"


def test_lint(scenario: Rendered):
    report = helm_python.lint(CHART_DIR, scenario.overrides, strict=True, namespace=NAMESPACE)
    problems = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, f"helm lint --strict ({scenario.name}):\n" + "\n".join(problems)


def test_workflowtemplate_is_the_hera_render(scenario: Rendered):
    expected = hera_workflowtemplate(scenario)
    actual = scenario.one("WorkflowTemplate")
    assert actual == expected, f"{scenario.name}: chart WorkflowTemplate != hera render\n" + diff(expected, actual, "WorkflowTemplate")


def test_cronworkflow_is_the_hera_render(scenario: Rendered):
    expected = cron_from_values(scenario.values, release_name=scenario.release, namespace=NAMESPACE)
    crons = scenario.of_kind("CronWorkflow")
    if expected is None:
        assert crons == [], f"{scenario.name}: cron.enabled is false but a CronWorkflow was rendered"
        return
    (actual,) = crons
    assert actual == expected, f"{scenario.name}: chart CronWorkflow != hera render\n" + diff(expected, actual, "CronWorkflow")
    assert actual["spec"]["concurrencyPolicy"] == "Forbid"
    args = {p["name"]: p["value"] for p in actual["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert args["only-new"] == "true"
    assert args["input"] == (scenario.values["cron"]["input"] or scenario.values["pipeline"]["input"])
    assert actual["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == scenario.one("WorkflowTemplate")["metadata"]["name"]


_KUEUE_STATES = {
    "kueue-off": {"kueue": {"enabled": False}},
    "queue-only": {"kueue": {"priorityClass": {"name": ""}}},
    "queue+priority": {},
}


@pytest.mark.parametrize("kueue,s3,llm_key,accelerator", list(itertools.product(
    _KUEUE_STATES, [True, False], [True, False], ["nvidia.com/mig-2g.20gb", "cpu"])))
def test_every_shape_combination_is_the_hera_render(chart, kueue, s3, llm_key, accelerator):
    """All combinations of the switches that add/remove parts of the DAG (the generator's if-blocks)."""
    overrides: dict[str, Any] = copy.deepcopy(_KUEUE_STATES[kueue])
    overrides["whisper"] = {"accelerator": accelerator}
    overrides["gateway"] = {"apiKeySecret": "llm-key" if llm_key else ""}
    if not s3:
        overrides |= {"s3": {"existingSecret": ""}, "artifactRepository": {"enabled": False}}
    r = render(chart, overrides)
    expected = hera_workflowtemplate(r)
    assert r.one("WorkflowTemplate") == expected, diff(expected, r.one("WorkflowTemplate"), "WorkflowTemplate")


@pytest.mark.parametrize("timezone,suspend,legacy,cron_input", list(itertools.product(
    ["", "America/Argentina/Buenos_Aires"], [False, True], [False, True], ["", "s3://audio/other"])))
def test_every_cron_combination_is_the_hera_render(chart, timezone, suspend, legacy, cron_input):
    cron = {"enabled": True, "timezone": timezone, "suspend": suspend, "legacySchedule": legacy, "input": cron_input,
            "schedules": ["15 3 * * *"] if legacy else ["15 3 * * *", "@hourly"]}
    r = render(chart, {"cron": cron})
    expected = cron_from_values(r.values, release_name=RELEASE, namespace=NAMESPACE)
    actual = r.one("CronWorkflow")
    assert actual == expected, diff(expected, actual, "CronWorkflow")
    argo_version = "v3.7.18" if legacy else "v4.1.2"
    assert V.validation_errors(actual, argo_version=argo_version) == []


@pytest.mark.parametrize("release", ["nightly", "kubescribe-prod", "x" * 70])
def test_names_follow_the_release(chart, release):
    r = render(chart, {}, release=release)
    wt = r.one("WorkflowTemplate")
    assert wt["metadata"]["name"] == fullname(r.values, release)
    assert len(wt["metadata"]["name"]) <= 63
    assert wt == hera_workflowtemplate(r), diff(hera_workflowtemplate(r), wt, "WorkflowTemplate")
    assert wt["spec"]["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]


# ---------------------------------------------------------------------------------------------------------------
# Schemas


def test_every_object_validates(scenario: Rendered):
    errors = []
    for obj in scenario.objects:
        legacy = obj["kind"] == "CronWorkflow" and "schedule" in obj["spec"]
        errors += V.validation_errors(obj, strict=True, argo_version="v3.7.18" if legacy else "v4.1.2")
    assert not errors, f"{scenario.name}:\n" + "\n".join(errors)


def test_legacy_schedule_is_for_argo_3(chart):
    """`schedule:` validates against Argo v3.7.18 and is rejected by v4.1.2, which requires `schedules`."""
    r = render(chart, {"cron": {"enabled": True, "legacySchedule": True, "schedules": ["@daily"]}})
    cron = r.one("CronWorkflow")
    assert cron["spec"]["schedule"] == "@daily" and "schedules" not in cron["spec"]
    assert V.validation_errors(cron, argo_version="v3.7.18") == []
    v4 = V.validation_errors(cron, argo_version="v4.1.2", strict=False)
    assert any("'schedules' is a required property" in e for e in v4), v4
    # The WorkflowTemplate hera 7 emits is valid for 3.7 controllers as well.
    assert V.validation_errors(r.one("WorkflowTemplate"), argo_version="v3.7.18") == []


def _typo(obj: dict, path: list, key: str) -> dict:
    obj = copy.deepcopy(obj)
    node = obj
    for step in path:
        node = node[step]
    node[key] = "oops"
    return obj


@pytest.mark.parametrize("kind,path,typo,json_path", [
    ("WorkflowTemplate", ["spec", "templates", 1, "container"], "imagePullPolcy", "$.spec.templates[1].container"),
    ("WorkflowTemplate", ["spec"], "entrypiont", "$.spec"),
    ("CronWorkflow", ["spec"], "concurrencyPolice", "$.spec"),
    ("ClusterQueue", ["spec"], "cohort", "$.spec"),  # the v1beta1 name of cohortName
    ("LocalQueue", ["spec"], "clusterQeue", "$.spec"),
    ("ConfigMap", ["metadata"], "lables", "$.metadata"),
    ("Role", ["rules", 0], "verb", "$.rules[0]"),
])
def test_strict_check_rejects_a_typo(chart, kind, path, typo, json_path):
    r = render(chart, {"cron": {"enabled": True}})
    obj = r.one(kind)
    assert V.validation_errors(obj, strict=True) == []
    bad = _typo(obj, path, typo)
    if kind not in ("ConfigMap", "Role"):  # upstream Argo/Kueue schemas let unknown keys through...
        assert V.validation_errors(bad, strict=False) == [], "the upstream schema now rejects unknown keys by itself"
    errors = V.validation_errors(bad, strict=True)  # ...the strict copy does not
    assert any(f"'{typo}' was unexpected" in e and f"at {json_path}:" in e for e in errors), errors
    assert errors[0].startswith(f"{kind}/{obj['metadata']['name']} ["), errors


def test_artifact_repository_configmap(scenario: Rendered):
    cms = [c for c in scenario.of_kind("ConfigMap") if c["metadata"]["name"] == "artifact-repositories"]
    if not scenario.values["artifactRepository"]["enabled"]:
        assert cms == []
        return
    (cm,) = cms
    key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    assert list(cm["data"]) == [key]
    repo = yaml.safe_load(cm["data"][key])
    errors = V._format(cm, list(V.argo_validator("io.argoproj.workflow.v1alpha1.ArtifactRepository", strict=True).iter_errors(repo)), "Argo ArtifactRepository")
    assert not errors, "\n".join(errors)
    s3 = repo["s3"]
    assert "://" not in s3["endpoint"]
    secret = scenario.values["s3"]["existingSecret"]
    assert s3["accessKeySecret"] == {"name": secret, "key": "accesskey"}
    assert s3["secretKeySecret"] == {"name": secret, "key": "secretkey"}


# ---------------------------------------------------------------------------------------------------------------
# Kueue, DAS


def test_whisper_template_queue_label_and_slice_limit(scenario: Rendered):
    t = _transcribe(scenario)
    labels = (t.get("metadata") or {}).get("labels") or {}
    values = scenario.values
    if values["kueue"]["enabled"]:
        assert labels.get(QUEUE_LABEL) == values["kueue"]["localQueue"]["name"]
        assert labels.get(PRIORITY_LABEL) == (values["kueue"]["priorityClass"]["name"] or None)
    else:
        assert QUEUE_LABEL not in labels and PRIORITY_LABEL not in labels
    resources = t["container"]["resources"]
    accelerator = values["whisper"]["accelerator"]
    extended = lambda d: {k for k in d if "/" in k}  # noqa: E731
    if accelerator == "cpu":
        assert extended(resources.get("limits", {})) == set() and extended(resources.get("requests", {})) == set()
        assert t["container"]["args"][t["container"]["args"].index("--device") + 1] == "cpu"
    else:
        # DAS only acts on limits (and mirrors them into requests itself).
        assert resources["limits"][accelerator] == "1"
        assert extended(resources.get("requests", {})) == set()
        assert t["container"]["args"][t["container"]["args"].index("--device") + 1] == "cuda"
    # the other steps never ask for accelerators nor get queued
    for other in scenario.one("WorkflowTemplate")["spec"]["templates"]:
        if other["name"] not in ("transcribe", "main"):
            assert not extended(other["container"]["resources"].get("limits", {}))
            assert QUEUE_LABEL not in ((other.get("metadata") or {}).get("labels") or {})


def test_kueue_objects(scenario: Rendered):
    kueue_kinds = {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"}
    rendered = [o for o in scenario.objects if o["kind"] in kueue_kinds]
    k = scenario.values["kueue"]
    if not k["enabled"]:
        assert rendered == []
        return
    assert {o["apiVersion"] for o in rendered} == {"kueue.x-k8s.io/v1beta2"}
    lq = scenario.one("LocalQueue")
    assert lq["metadata"]["name"] == k["localQueue"]["name"] != "default"
    assert lq["metadata"]["namespace"] == NAMESPACE
    cq = scenario.one("ClusterQueue")
    assert lq["spec"]["clusterQueue"] == cq["metadata"]["name"]
    (group,) = cq["spec"]["resourceGroups"]
    (flavor,) = group["flavors"]
    assert flavor["name"] == scenario.one("ResourceFlavor")["metadata"]["name"]
    assert [r["name"] for r in flavor["resources"]] == group["coveredResources"]  # the CEL rule jsonschema can't check
    quota_name = quota_resource_name(scenario.values)
    expected = ["cpu", "memory"] + ([quota_name] if quota_name else [])
    assert group["coveredResources"] == expected
    if scenario.values["das"]["enabled"]:
        assert not any(r.startswith("nvidia.com/") for r in group["coveredResources"]), "DAS renames nvidia.com/* first"
    wpc = scenario.of_kind("WorkloadPriorityClass")
    if k["priorityClass"]["create"] and k["priorityClass"]["name"]:
        assert wpc[0]["metadata"]["name"] == _transcribe(scenario)["metadata"]["labels"][PRIORITY_LABEL]
    else:
        assert wpc == []


@pytest.mark.parametrize("overrides,expected", [
    ({}, "mig.das.com/1g.10gb"),
    ({"whisper": {"accelerator": "nvidia.com/mig-3g.40gb"}}, "mig.das.com/3g.40gb"),
    ({"whisper": {"accelerator": "nvidia.com/mig-1g.10gb"}, "das": {"enabled": False}}, "nvidia.com/mig-1g.10gb"),
    ({"whisper": {"accelerator": "nvidia.com/gpu"}, "das": {"enabled": False}}, "nvidia.com/gpu"),
    ({"kueue": {"clusterQueue": {"quota": {"acceleratorResource": "gpu.das.openshift.io/mem"}}}}, "gpu.das.openshift.io/mem"),
    ({"whisper": {"accelerator": "cpu"}}, None),
])
def test_quota_counts_the_name_the_cluster_sees(chart, overrides, expected):
    r = render(chart, overrides)
    assert quota_resource_name(r.values) == expected
    covered = r.one("ClusterQueue")["spec"]["resourceGroups"][0]["coveredResources"]
    assert covered == ["cpu", "memory"] + ([expected] if expected else [])


# ---------------------------------------------------------------------------------------------------------------
# llm-d InferenceObjective (optional; validated offline against the llm-d router CRD only)


def _objective_parameter(r: Rendered) -> str:
    params = {p["name"]: p.get("value") for p in r.one("WorkflowTemplate")["spec"]["arguments"]["parameters"]}
    return params["objective"]


def test_inference_objective(scenario: Rendered):
    io = scenario.values["gateway"]["inferenceObjective"]
    found = scenario.of_kind("InferenceObjective")
    assert _objective_parameter(scenario) == effective_objective(scenario.values)
    if not io["create"]:
        assert found == []
        assert _objective_parameter(scenario) == scenario.values["gateway"]["objective"]
        return
    (obj,) = found
    assert obj["apiVersion"] == "inference.networking.x-k8s.io/v1alpha2"
    assert V.validation_errors(obj, strict=True) == []
    # the header the summarize step sends names this object
    assert obj["metadata"]["name"] == _objective_parameter(scenario) != ""
    assert obj["metadata"]["namespace"] == (io["namespace"] or NAMESPACE)
    assert obj["spec"] == {"priority": io["priority"], "poolRef": io["poolRef"]}


@pytest.mark.parametrize("gateway,expected", [
    ({"objective": "nightly-batch", "inferenceObjective": {"create": True, "poolRef": {"name": "pool"}}}, "nightly-batch"),
    ({"objective": "same", "inferenceObjective": {"create": True, "name": "same", "poolRef": {"name": "pool"}}}, "same"),
    ({"inferenceObjective": {"create": True, "name": "only-here", "poolRef": {"name": "pool"}}}, "only-here"),
    ({"objective": "kept", "inferenceObjective": {"create": False, "name": "ignored"}}, "kept"),
])
def test_objective_parameter_names_the_created_object(chart, gateway, expected):
    r = render(chart, {"gateway": gateway})
    assert _objective_parameter(r) == expected == effective_objective(r.values)
    assert r.one("WorkflowTemplate") == hera_workflowtemplate(r), diff(hera_workflowtemplate(r), r.one("WorkflowTemplate"), "WorkflowTemplate")
    if gateway["inferenceObjective"]["create"]:
        assert r.one("InferenceObjective")["metadata"]["name"] == expected
        notes = chart.render({"gateway": gateway}, name=RELEASE, namespace=NAMESPACE)[f"{chart.name}/templates/NOTES.txt"]
        assert f"InferenceObjective: {expected} in namespace {NAMESPACE}" in notes
    else:
        assert r.of_kind("InferenceObjective") == []


@pytest.mark.parametrize("inference_objective,objective,message", [
    ({"create": True, "name": "batch"}, "", "set gateway.inferenceObjective.poolRef.name"),
    ({"create": True, "name": "batch", "poolRef": {"name": ""}}, "", "set gateway.inferenceObjective.poolRef.name"),
    ({"create": True, "poolRef": {"name": "pool"}}, "", "no name is set"),
    ({"create": True, "name": "batch", "poolRef": {"name": "pool"}}, "other", "differs from gateway.inferenceObjective.name"),
])
def test_inference_objective_fails_clearly(chart, inference_objective, objective, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        chart.render({"gateway": {"objective": objective, "inferenceObjective": inference_objective}}, name=RELEASE, namespace=NAMESPACE)
    # the Python mirror refuses the same name problems (poolRef is the InferenceObjective template's own check)
    name_problem = "poolRef" not in message
    with pytest.raises(ValueError) if name_problem else contextlib.nullcontext():
        effective_objective({"gateway": {"objective": objective, "inferenceObjective": inference_objective}})


def test_inference_objective_strict_check_rejects_a_typo(chart):
    r = render(chart, yaml.safe_load((CHART_DIR / "ci" / "inference-objective-values.yaml").read_text()))
    obj = r.one("InferenceObjective")
    assert V.validation_errors(obj, strict=True) == []
    bad = _typo(obj, ["spec", "poolRef"], "namespace")  # not a poolRef field: the pool must be in the same namespace
    assert V.validation_errors(bad, strict=False) == [], "the upstream CRD now rejects unknown keys by itself"
    errors = V.validation_errors(bad, strict=True)
    assert any("'namespace' was unexpected" in e and "at $.spec.poolRef:" in e for e in errors), errors
    wrong_type = copy.deepcopy(obj)
    wrong_type["spec"]["priority"] = "low"
    assert any("at $.spec.priority:" in e for e in V.validation_errors(wrong_type, strict=True))


# ---------------------------------------------------------------------------------------------------------------
# Security


_SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.I)
_LITERAL_CREDENTIALS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"minioadmin", re.I),  # MinIO default credentials
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"^\s*(password|secretKey|accessKey|token|api-?key)\s*:\s*\S", re.I | re.M),
]


def _walk_env(objects: list[dict]):
    for obj in objects:
        for t in (obj.get("spec") or {}).get("templates") or []:
            for c in _containers(t):
                for env in c.get("env") or []:
                    yield obj, t, env


def test_no_secret_values_rendered(scenario: Rendered):
    assert scenario.of_kind("Secret") == [], "the chart must never render a Secret"
    for obj, t, env in _walk_env(scenario.objects):
        if _SECRETISH.search(env["name"]):
            assert "value" not in env, f"{obj['kind']} template {t['name']}: env {env['name']} has a literal value"
            assert set(env["valueFrom"]) == {"secretKeyRef"}, env
    text = "\n".join(to_yaml(o) for o in scenario.objects)
    for pattern in _LITERAL_CREDENTIALS:
        assert not pattern.search(text), f"{scenario.name}: literal credential-like text: {pattern.pattern}"


def test_values_hold_no_credentials(chart):
    """Secrets are referenced by name only: no value in values.yaml/schema is a credential slot."""
    def keys(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{prefix}{k}", v
                yield from keys(v, f"{prefix}{k}.")

    for key, value in keys(chart.values):
        leaf = key.rsplit(".", 1)[-1]
        if re.fullmatch(r"(password|passwd|secret|secretkey|accesskey|token|apikey|credentials?)", leaf, re.I):
            pytest.fail(f"values key {key} looks like a credential slot (value {value!r})")


def test_pod_security_restricted(scenario: Rendered):
    wt = scenario.one("WorkflowTemplate")
    spec = wt["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
    # IDs only when asked for (OpenShift restricted-v2 assigns its own); never root.
    ids = {k: v for k, v in (scenario.values.get("podSecurityContext") or {}).items() if v is not None}
    assert {k: pod[k] for k in ("runAsUser", "runAsGroup", "fsGroup") if k in pod} == ids
    assert pod.get("runAsUser") != 0
    assert "podSpecPatch" not in spec and "hostNetwork" not in spec
    assert spec["podGC"]["strategy"] == "OnPodSuccess"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"tmp"} and "emptyDir" in volumes["tmp"]
    containers = 0
    for t in spec["templates"]:
        assert "podSpecPatch" not in t, t["name"]
        for c in _containers(t):
            containers += 1
            sc = c["securityContext"]
            where = f"WorkflowTemplate/{wt['metadata']['name']} template {t['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert not sc.get("privileged"), where
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], f"{where}: writable /tmp (emptyDir)"
    assert containers == 4
    for cron in scenario.of_kind("CronWorkflow"):  # every pod comes from the WorkflowTemplate
        assert set(cron["spec"]["workflowSpec"]) == {"activeDeadlineSeconds", "arguments", "workflowTemplateRef"}


def test_rbac_least_privilege(scenario: Rendered):
    assert not scenario.of_kind("ClusterRole") and not scenario.of_kind("ClusterRoleBinding")
    sa_name = scenario.one("WorkflowTemplate")["spec"]["serviceAccountName"]
    if scenario.values["serviceAccount"]["create"]:
        assert scenario.one("ServiceAccount")["metadata"]["name"] == sa_name
    else:
        assert scenario.of_kind("ServiceAccount") == []
    if not scenario.values["rbac"]["create"]:
        return
    role = scenario.one("Role")
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
    binding = scenario.one("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]


def test_network_policy(scenario: Rendered):
    policies = scenario.of_kind("NetworkPolicy")
    np = scenario.values["networkPolicy"]
    if not np["enabled"]:
        assert policies == []
        return
    (policy,) = policies
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and spec["ingress"] == []
    egress = spec["egress"]
    assert len(egress) == 4 + len(np["extraEgress"])
    ports = [{(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]} for rule in egress[:4]]
    assert (53, "UDP") in ports[0] and (53, "TCP") in ports[0]  # DNS
    assert ports[1] == {(9000, "TCP")}  # MinIO
    assert egress[1]["to"] == np["minio"]["to"] and egress[2]["to"] == np["gateway"]["to"]
    assert all(rule.get("ports") for rule in egress), "every egress rule is limited to ports"


# ---------------------------------------------------------------------------------------------------------------
# values.schema.json


@pytest.mark.parametrize("overrides,where", [
    ({"kueue": {"localQueue": {"name": "default"}}}, "/kueue/localQueue/name"),
    ({"kueue": {"localQueue": {"name": "Whisper_Queue"}}}, "/kueue/localQueue/name"),
    ({"whisper": {"accelerator": "nvidia.com/mig-1g.10gb+me"}}, "/whisper/accelerator"),
    ({"whisper": {"accelerator": "nvidia.com/mig-10gb"}}, "/whisper/accelerator"),
    ({"whisper": {"accelerator": "nvidia.com/gpu"}}, "/whisper/accelerator"),  # DAS forbids whole GPUs
    ({"whisper": {"acclerator": "cpu"}}, "/whisper"),  # unknown key
    ({"whisper": {"image": "ghcr.io/kubescribe/kubescribe-whisper"}}, "/whisper/image"),  # no tag
    ({"steps": {"image": "ghcr.io/Kubescribe/kubescribe:0.1"}}, "/steps/image"),
    ({"whisper": {"memory": "8G"}}, "/whisper/memory"),
    ({"cron": {"schedules": ["every night"]}}, "/cron/schedules/0"),
    ({"cron": {"schedules": []}}, "/cron/schedules"),
    ({"cron": {"legacySchedule": True, "schedules": ["@daily", "@hourly"]}}, "/cron/schedules"),
    ({"cron": {"timezone": "Paris time"}}, "/cron/timezone"),
    ({"gateway": {"url": "llm-d-gateway.llm-d/v1"}}, "/gateway/url"),
    ({"s3": {"endpoint": "minio:9000"}}, "/s3/endpoint"),
    ({"s3": {"endpoint": ""}}, "/s3/endpoint"),  # a secret without an endpoint
    ({"s3": {"existingSecret": ""}}, "/s3/existingSecret"),  # the artifact repository needs it
    ({"pipeline": {"maxShards": 5000}}, "/pipeline/maxShards"),
    ({"kueue": {"clusterQueue": {"quota": {"acceleratorResource": "mig das"}}}}, "/kueue/clusterQueue/quota/acceleratorResource"),
    ({"gateway": {"inferenceObjective": {"priority": "low"}}}, "/gateway/inferenceObjective/priority"),
    ({"gateway": {"inferenceObjective": {"priority": 2**31}}}, "/gateway/inferenceObjective/priority"),
    ({"gateway": {"inferenceObjective": {"name": "Batch_Jobs"}}}, "/gateway/inferenceObjective/name"),
    ({"gateway": {"inferenceObjective": {"poolRef": {"name": "Pool 1"}}}}, "/gateway/inferenceObjective/poolRef/name"),
    ({"gateway": {"inferenceObjective": {"poolRef": {"kind": "inference-pool!"}}}}, "/gateway/inferenceObjective/poolRef/kind"),
    ({"gateway": {"inferenceObjective": {"criticality": "Sheddable"}}}, "/gateway/inferenceObjective"),  # unknown key
])
def test_values_schema_rejects_risky_values(chart, overrides, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.render(overrides, name=RELEASE, namespace=NAMESPACE)
    assert f"at '{where}'" in str(err.value), str(err.value)


def test_notes_tell_how_to_submit(chart):
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)[f"{chart.name}/templates/NOTES.txt"]
    assert f"argo submit -n {NAMESPACE} --from workflowtemplate/{RELEASE} \\\n      -p input=s3://" in notes
    assert f"kubescribe submit -n {NAMESPACE} --template {RELEASE} -p input=s3://" in notes
    assert "Workflow Templates" in notes
