"""``make chart`` / ``make chart-check`` (``python -m tools.chart``): the build-time chart generator's command line.

What it generates is proven against Helm in tests/test_chart.py (every scenario renders the hera objects) and
tests/test_das_rbac.py (the Role); here: that the command writes exactly the generated files and that ``--check``
tells a stale chart from a fresh one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.chart import CHART_DIR, GENERATED_FILES, generated_templates, main


def test_check_passes_on_the_committed_chart(capsys) -> None:
    assert main(["--check"]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out == ""


def test_generated_files_are_the_three_generated_templates() -> None:
    assert set(generated_templates()) == set(GENERATED_FILES) == {
        "templates/workflowtemplate.yaml", "templates/cronworkflow.yaml", "templates/rbac.yaml"}


def test_check_names_a_stale_file_and_make_chart_rewrites_it(tmp_path: Path, capsys) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART_DIR, chart)
    stale = chart / "templates" / "rbac.yaml"
    stale.write_text(stale.read_text().replace("patch", "update"))
    (chart / "templates" / "cronworkflow.yaml").unlink()

    assert main([str(chart), "--check"]) == 1
    out = capsys.readouterr().out
    assert "templates/rbac.yaml (committed)" in out and "templates/cronworkflow.yaml (fresh)" in out
    assert "templates/workflowtemplate.yaml" not in out

    assert main([str(chart)]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(str(chart / rel) for rel in GENERATED_FILES)
    for rel in GENERATED_FILES:
        assert (chart / rel).read_text() == (CHART_DIR / rel).read_text(), rel
    assert main([str(chart), "--check"]) == 0


def test_values_yaml_defaults_are_the_pipeline_settings_defaults() -> None:
    """Every chart value that feeds a PipelineSettings field (a ``Knob`` on ``.Values.<path>``) defaults to that
    field's default, which steps/defaults.py owns where the steps use it too: a chart install and a hera script
    with default settings render the same run."""
    import re

    import yaml

    from steps import defaults
    from steps.deadlines import DEFAULT_BUSY_WAIT_S
    from tools.chart import WT_KNOBS
    from workflows.settings import PipelineSettings

    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    settings = PipelineSettings()
    compared = {}
    for knob in WT_KNOBS:
        if not (path := re.fullmatch(r"\.Values\.([\w.]+)", knob.expr)):
            continue
        value = values
        for part in path.group(1).split("."):
            value = value[part]
        assert value == getattr(settings, knob.field), (knob.expr, value, getattr(settings, knob.field))
        compared[knob.field] = value
    owned = {"shard_seconds": defaults.SHARD_SECONDS, "max_shards": defaults.MAX_SHARDS,
             "context_tokens": defaults.CONTEXT_TOKENS, "max_output_tokens": defaults.MAX_OUTPUT_TOKENS,
             "summarize_concurrency": defaults.SUMMARIZE_CONCURRENCY, "beam_size": defaults.BEAM_SIZE,
             "summarize_busy_wait_s": DEFAULT_BUSY_WAIT_S}
    assert {k: compared[k] for k in owned} == owned
