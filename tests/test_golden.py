"""Golden files: workflows/pipeline.yaml and workflows/cron.yaml are the YAML of the builders' default objects
(``build_workflow_template()``, ``build_cron_workflow()``; library modules build nothing at import time).

Like hera's tests/test_examples.py: a change to the builders shows up as a reviewed diff of the committed YAML.
Regenerate with ``KUBESCRIBE_REGENERATE=1 pytest tests/test_golden.py`` (never done when ``CI`` is set).
Both files are also validated against the Argo v4.1.2 JSON schema (strict: unknown keys rejected).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.schemas import validate as schema_validate
from workflows.cron import build_cron_workflow
from workflows.pipeline import build_workflow_template
from workflows.render import to_yaml

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = [(build_workflow_template, ROOT / "workflows" / "pipeline.yaml"),
          (build_cron_workflow, ROOT / "workflows" / "cron.yaml")]
REGENERATE = os.environ.get("KUBESCRIBE_REGENERATE") == "1" and not os.environ.get("CI")


@pytest.mark.parametrize("build,path", GOLDEN, ids=[p.name for _, p in GOLDEN])
def test_golden_yaml(build: Callable, path: Path):
    obj = build().to_dict()
    if REGENERATE:
        path.write_text(to_yaml(obj))
    assert path.exists(), f"{path.name} is missing: run KUBESCRIBE_REGENERATE=1 pytest {Path(__file__).name}"
    committed = yaml.safe_load(path.read_text())
    assert obj == committed, (
        f"{build.__module__}.{build.__name__}() differs from {path.relative_to(ROOT)}; if the change is intended, regenerate with "
        f"KUBESCRIBE_REGENERATE=1 pytest tests/test_golden.py and review the diff"
    )


@pytest.mark.parametrize("build,path", GOLDEN, ids=[p.name for _, p in GOLDEN])
def test_golden_yaml_is_valid_argo(build: Callable, path: Path):
    validate = schema_validate
    obj = yaml.safe_load(path.read_text())
    errors = validate.validation_errors(obj, strict=True, argo_version="v4.1.2")
    assert not errors, "\n".join(errors)


def test_render_writes_the_cron_workflow_too(tmp_path: Path):
    from workflows.render import render_all

    names = sorted(p.name for p in render_all(tmp_path))
    assert names == ["cronworkflow.yaml", "workflowtemplate.yaml"]
    cron = yaml.safe_load((tmp_path / "cronworkflow.yaml").read_text())
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == yaml.safe_load(
        (tmp_path / "workflowtemplate.yaml").read_text())["metadata"]["name"]
