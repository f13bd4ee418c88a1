"""The chart rendered by Helm (helm-python-sdk) and the hera objects it must equal, for the chart tests
(tests/test_chart.py, tests/test_cluster_semantics.py, tests/test_capacity.py). The ``chart`` fixture is in
tests/conftest.py."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import yaml

from tools.chart import CHART_DIR
from tools.chart_values import settings_from_values
from workflows.pipeline import build_workflow_template
from workflows.render import to_yaml

RELEASE, NAMESPACE = "kubescribe", "audio"
SCENARIO_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))


@dataclass
class Rendered:
    name: str
    overrides: dict
    values: dict  # merged (chart defaults + overrides)
    objects: list[dict]
    release: str = RELEASE

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{self.name}: expected one {kind}, rendered {[o['metadata']['name'] for o in found]}"
        return found[0]


def render(chart, overrides: dict, name: str = "adhoc", release: str = RELEASE) -> Rendered:
    manifests = chart.render(overrides, name=release, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendered(name, overrides, chart.merge_values(overrides), objects, release)


def diff(expected: dict, actual: dict, what: str) -> str:
    lines = difflib.unified_diff(
        to_yaml(expected).splitlines(), to_yaml(actual).splitlines(), f"{what} (hera)", f"{what} (helm)", lineterm=""
    )
    return "\n".join(list(lines)[:80])


def hera_workflowtemplate(r: Rendered) -> dict:
    return build_workflow_template(settings_from_values(r.values, release_name=r.release, namespace=NAMESPACE)).to_dict()
