"""One owner each: the workflow pods' Role (workflows/rbac.py) and the DAS resource rename (workflows/das.py).

* The chart's ``templates/rbac.yaml`` is generated from ``workflows.rbac`` (``make chart``, tools/chart.py); rendered by
  Helm it gives the same Role and RoleBinding ``kubescribe templates install`` creates, and the rules are what
  argo-workflows v4.1.2 says the emissary executor needs (docs/workflow-rbac.md;
  manifests/quick-start/base/executor/emissary/executor-role.yaml), written out by hand below.
* The chart's quota resource name (``_helpers.tpl`` ``kubescribe.quotaResource``, mirrored by
  ``tools.chart_values.quota_resource_name`` and checked against Helm in tests/test_chart.py) agrees with
  ``workflows.das.das_resource_name``, which follows the DAS webhook (openshift/instaslice-operator, branch next,
  pkg/webhook/webhook.go ``mutatePod``).
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tools.chart import CHART_DIR, RBAC_FILE, rbac_template
from tools.chart_values import quota_resource_name
from workflows import rbac
from workflows.das import das_resource_name, request_name

NAMESPACE = "audio"
UPSTREAM_EXECUTOR_RULES = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]


def _objects(chart, overrides: dict, release: str = "kubescribe") -> list[dict]:
    manifests = chart.render(overrides, name=release, namespace=NAMESPACE)
    return [doc for path, text in manifests.items() if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def _without_labels(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("labels", None)
    return obj


def test_rules_are_the_upstream_executor_minimum():
    assert rbac.rules() == UPSTREAM_EXECUTOR_RULES
    assert rbac.needed() == "create, patch on workflowtaskresults.argoproj.io"


def test_chart_rbac_yaml_is_generated_from_workflows_rbac():
    assert (CHART_DIR / RBAC_FILE).read_text() == rbac_template(), (
        "charts/kubescribe/templates/rbac.yaml differs from workflows/rbac.py; run `make chart`")


@pytest.mark.parametrize("overrides,sa_name", [
    ({}, "kubescribe-workflow"),
    ({"serviceAccount": {"name": "transcribers", "create": False}}, "transcribers"),
])
def test_helm_renders_the_role_and_binding_templates_install_creates(chart, overrides, sa_name):
    objects = _objects(chart, overrides)
    [role] = [o for o in objects if o["kind"] == "Role"]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    [wt] = [o for o in objects if o["kind"] == "WorkflowTemplate"]
    assert wt["spec"]["serviceAccountName"] == sa_name
    assert role["rules"] == UPSTREAM_EXECUTOR_RULES
    assert _without_labels(role) == rbac.role(sa_name, NAMESPACE)
    assert _without_labels(binding) == rbac.role_binding(sa_name, NAMESPACE, sa_name)
    assert role["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"  # the chart's own labels


def test_rbac_create_false_renders_no_role(chart):
    objects = _objects(chart, {"rbac": {"create": False}})
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]


def test_granted_reads_wildcards_and_ignores_named_rules():
    assert not rbac.missing_permissions(rbac.granted([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))
    named = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"],
              "resourceNames": ["one"]}]
    assert rbac.missing_permissions(rbac.granted(named)) == ["create, patch on workflowtaskresults.argoproj.io"]
    assert rbac.missing_permissions(rbac.granted(UPSTREAM_EXECUTOR_RULES)) == []


@pytest.mark.parametrize("accelerator,renamed", [
    # pkg/webhook/webhook.go: nvidia.com/mig-<profile> -> mig.das.com/<profile>; any other nvidia.com/<x> ->
    # mig.das.com/<x> (so nvidia.com/gpu is renamed too); other resources are left alone.
    ("nvidia.com/mig-1g.10gb", "mig.das.com/1g.10gb"),
    ("nvidia.com/mig-3g.40gb", "mig.das.com/3g.40gb"),
    ("nvidia.com/gpu", "mig.das.com/gpu"),
    ("amd.com/gpu", "amd.com/gpu"),
])
def test_das_rename_has_one_rule_that_the_chart_mirrors(accelerator, renamed):
    assert das_resource_name(accelerator) == renamed
    values = {"kueue": {"clusterQueue": {"quota": {"acceleratorResource": ""}}}, "whisper": {"accelerator": accelerator},
              "das": {"enabled": True}}
    assert quota_resource_name(values) == renamed
    values["das"]["enabled"] = False
    assert quota_resource_name(values) == accelerator


def test_request_name_inverts_the_mig_rename():
    assert request_name("mig.das.com/1g.10gb") == "nvidia.com/mig-1g.10gb"
    assert request_name("nvidia.com/gpu") == "nvidia.com/gpu"
