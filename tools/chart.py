"""Build time: generate the Helm chart's templates from the hera builders (no hand-kept copy of the DAG).

``charts/kubescribe/templates/workflowtemplate.yaml``, ``cronworkflow.yaml`` and ``rbac.yaml`` are written by
:func:`generate_chart_templates` (``make chart``, i.e. ``python -m tools.chart``; ``--check`` only compares) and
checked by the tests against a fresh generation. The runtime packages (``steps``, ``workflows``) never import this
module (``tests/test_structure.py``). How a template is made:

1. **Knobs.** The builder is called with a unique *sentinel* for every Helm-controlled field (a string such as
   ``zzhelm-input``; a number such as ``1911`` for int fields; a valid quantity such as ``1905Ki`` for memory, since
   hera validates units). In the dumped YAML each sentinel is a whole scalar (or a mapping key); it is replaced by
   the Helm expression (``{{ .Values.pipeline.input | quote }}``, ``{{ .Values.whisper.parallelism | int }}``...).
   A sentinel found anywhere else (inside a longer string) is an error.
2. **Features.** Parts whose *presence* depends on values (queue label, priority label, S3 env, gateway key env,
   accelerator limit + ``--device``, report output artifacts, opt-in pod IDs; cron timezone/suspend) are found by rendering the builder once more with the
   feature turned off and diffing the YAML lines: lines only in the "on" render are wrapped in
   ``{{- if <cond> }} ... {{- end }}``, changed lines become ``if/else``. Hunks of different features must be
   disjoint or nested (checked), so every combination renders exactly what the builder would.
3. Argo's own ``{{...}}`` are escaped for Helm (``{{ "{{" }}workflow.name{{ "}}" }}``).

The tests prove the result: for each ``charts/kubescribe/ci/*-values.yaml`` (and every feature combination) the
helm-rendered WorkflowTemplate equals ``build_workflow_template(settings_from_values(values)).to_dict()``
(``tools/chart_values.py`` mirrors the chart's helpers for that).

``templates/rbac.yaml`` is :func:`workflows.rbac.role` and :func:`workflows.rbac.role_binding` (the Role's one
owner, also used by ``kubescribe templates install``) with Helm expressions for names, namespace and labels.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows import rbac
from workflows.cron import build_cron_workflow
from workflows.pipeline import build_workflow_template
from workflows.render import to_yaml
from workflows.settings import PipelineSettings

CHART_DIR = Path(__file__).resolve().parents[1] / "charts" / "kubescribe"
WORKFLOWTEMPLATE_FILE = "templates/workflowtemplate.yaml"
CRONWORKFLOW_FILE = "templates/cronworkflow.yaml"
RBAC_FILE = "templates/rbac.yaml"
GENERATED_FILES = (WORKFLOWTEMPLATE_FILE, CRONWORKFLOW_FILE, RBAC_FILE)
GENERATED_BY = "`make chart` (tools/chart.py)"


# --------------------------------------------------------------------------------------------------------------
# Knobs and features


@dataclass(frozen=True)
class Knob:
    """A builder argument whose value comes from a Helm expression."""

    field: str  # PipelineSettings field (or build_cron_workflow keyword)
    sentinel: str | int  # unique value given to the builder
    expr: str  # Helm pipeline (without braces) evaluating to the value


@dataclass(frozen=True)
class Feature:
    """A part of the manifest present only when ``cond`` holds; ``off`` are builder overrides that remove it."""

    name: str
    cond: str  # Helm condition, using the variables of the preamble
    off: Mapping[str, Any] = field(default_factory=dict)


WT_KNOBS = (
    Knob("name", "zzhelm-fullname", 'include "kubescribe.fullname" .'),
    Knob("namespace", "zzhelm-namespace", ".Release.Namespace"),
    Knob("input", "zzhelm-input", ".Values.pipeline.input"),
    Knob("output", "zzhelm-output", ".Values.pipeline.output"),
    Knob("whisper_model", "zzhelm-whisper-model", ".Values.pipeline.whisperModel"),
    Knob("language", "zzhelm-language", ".Values.pipeline.language"),
    Knob("llm_url", "zzhelm-gateway-url", ".Values.gateway.url"),
    Knob("llm_model", "zzhelm-gateway-model", ".Values.gateway.model"),
    Knob("objective", "zzhelm-gateway-objective", 'include "kubescribe.objective" .'),
    Knob("accelerator", "zzhelm.io/accelerator", ".Values.whisper.accelerator"),
    Knob("queue_name", "zzhelm-queue", "$queue"),
    Knob("priority_class", "zzhelm-priority", "$priority"),
    Knob("whisper_image", "zzhelm-whisper-image", ".Values.whisper.image"),
    Knob("steps_image", "zzhelm-steps-image", ".Values.steps.image"),
    Knob("whisper_cpu", "1903m", ".Values.whisper.cpu"),
    Knob("steps_cpu", "1904m", ".Values.steps.cpu"),
    Knob("whisper_memory", "1905Ki", ".Values.whisper.memory"),
    Knob("steps_memory", "1906Ki", ".Values.steps.memory"),
    Knob("transcribe_timeout", "zzhelm-timeout", ".Values.whisper.timeout"),
    Knob("s3_endpoint", "zzhelm-s3-endpoint", ".Values.s3.endpoint"),
    Knob("s3_secret", "zzhelm-s3-secret", "$s3"),
    Knob("llm_secret", "zzhelm-gateway-secret", "$llmKey"),
    Knob("service_account", "zzhelm-service-account", 'include "kubescribe.serviceAccountName" .'),
    Knob("shard_seconds", 1911, ".Values.pipeline.shardSeconds"),
    Knob("beam_size", 1919, ".Values.pipeline.beamSize"),
    Knob("max_shards", 1912, ".Values.pipeline.maxShards"),
    Knob("retries", 1913, ".Values.pipeline.retries"),
    Knob("parallelism", 1914, ".Values.whisper.parallelism"),
    Knob("threads", 1915, ".Values.whisper.threads"),
    Knob("summarize_concurrency", 1916, ".Values.gateway.concurrency"),
    Knob("context_tokens", 1917, ".Values.gateway.contextTokens"),
    Knob("max_output_tokens", 1918, ".Values.gateway.maxOutputTokens"),
    Knob("summarize_busy_wait_s", 1928, ".Values.gateway.busyWaitSeconds"),
    Knob("active_deadline_seconds", 1924, ".Values.pipeline.activeDeadlineSeconds"),
    Knob("run_as_user", 1925, ".Values.podSecurityContext.runAsUser"),
    Knob("run_as_group", 1926, ".Values.podSecurityContext.runAsGroup"),
    Knob("fs_group", 1927, ".Values.podSecurityContext.fsGroup"),
)

WT_FEATURES = (
    Feature("Kueue queue label", "$queue", {"queue_name": None}),
    Feature("Kueue priority label", "$priority", {"priority_class": None}),
    Feature("transcribe template metadata", "or $queue $priority", {"queue_name": None, "priority_class": None}),
    Feature("S3 endpoint + credentials env", "$s3", {"s3_secret": None}),
    Feature("gateway API key env", "$llmKey", {"llm_secret": None}),
    Feature("accelerator limit and --device cuda", "$gpu", {"accelerator": "cpu"}),
    Feature("report output artifacts", "$reportArtifacts", {"report_artifacts": False}),
    # Opt-in pod IDs (default off: the platform assigns them, e.g. OpenShift restricted-v2).
    Feature("pod runAsUser", ".Values.podSecurityContext.runAsUser", {"run_as_user": None}),
    Feature("pod runAsGroup", ".Values.podSecurityContext.runAsGroup", {"run_as_group": None}),
    Feature("pod fsGroup", ".Values.podSecurityContext.fsGroup", {"fs_group": None}),
)

WT_PREAMBLE = """\
{{- $queue := include "kubescribe.whisperQueue" . }}
{{- $priority := include "kubescribe.whisperPriorityClass" . }}
{{- $s3 := .Values.s3.existingSecret }}
{{- $llmKey := .Values.gateway.apiKeySecret }}
{{- $gpu := ne .Values.whisper.accelerator "cpu" }}
{{- $reportArtifacts := include "kubescribe.reportArtifacts" . }}
"""

CRON_KNOBS = (
    Knob("name", "zzhelm-fullname", 'include "kubescribe.fullname" .'),
    Knob("namespace", "zzhelm-namespace", ".Release.Namespace"),
    Knob("input", "zzhelm-cron-input", ".Values.cron.input | default .Values.pipeline.input"),
    Knob("timezone", "zzhelm-timezone", ".Values.cron.timezone"),
    Knob("starting_deadline_seconds", 1921, ".Values.cron.startingDeadlineSeconds"),
    Knob("successful_jobs_history_limit", 1922, ".Values.cron.successfulJobsHistoryLimit"),
    Knob("failed_jobs_history_limit", 1923, ".Values.cron.failedJobsHistoryLimit"),
    Knob("active_deadline_seconds", 1924, ".Values.pipeline.activeDeadlineSeconds"),
)
CRON_SCHEDULE_SENTINEL = "zzhelm-schedule"

CRON_FEATURES = (
    Feature("timezone", ".Values.cron.timezone", {"timezone": None}),
    Feature("suspend", ".Values.cron.suspend", {"suspend": False}),
)

# `schedules:` (Argo >= 3.6, required by v4) or, with cron.legacySchedule, the single `schedule:` field.
CRON_SCHEDULES_BLOCK = """\
{indent}{{{{- if .Values.cron.legacySchedule }}}}
{indent}schedule: {{{{ first .Values.cron.schedules | quote }}}}
{indent}{{{{- else }}}}
{indent}schedules:
{indent}{{{{- range .Values.cron.schedules }}}}
{indent}- {{{{ . | quote }}}}
{indent}{{{{- end }}}}
{indent}{{{{- end }}}}"""

CRON_PREAMBLE = """\
{{- if .Values.cron.enabled }}
{{- if and .Values.cron.legacySchedule (ne (len .Values.cron.schedules) 1) }}
{{- fail "cron.legacySchedule renders the single `schedule` field: give exactly one entry in cron.schedules" }}
{{- end }}
"""
CRON_EPILOGUE = "{{- end }}\n"


def _header(source: str, note: str) -> str:
    return (
        f"{{{{- /* GENERATED by {GENERATED_BY} from {source} (hera) — do not edit. {note} */}}}}\n"
    )


# --------------------------------------------------------------------------------------------------------------
# Text machinery


def _escape_argo(text: str) -> str:
    """Make Argo's ``{{...}}`` literal for Helm."""
    return re.sub(r"\{\{|\}\}", lambda mt: '{{ "{{" }}' if mt.group() == "{{" else '{{ "}}" }}', text)


@dataclass(frozen=True)
class _Hunk:
    i1: int
    i2: int
    cond: str
    alt: tuple[str, ...]
    feature: str

    def contains(self, other: _Hunk) -> bool:
        return self is not other and self.i1 <= other.i1 and other.i2 <= self.i2


def _hunks(base: list[str], variant: list[str], feature: Feature) -> list[_Hunk]:
    sm = difflib.SequenceMatcher(None, base, variant, autojunk=False)
    hunks = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:
            raise ValueError(f"feature {feature.name!r} adds lines when off; only removals/changes are supported")
        hunks.append(_Hunk(i1, i2, feature.cond, tuple(variant[j1:j2]), feature.name))
    if not hunks:
        raise ValueError(f"feature {feature.name!r} changes nothing in the render")
    return hunks


def _check_nesting(hunks: list[_Hunk]) -> None:
    for a in hunks:
        for b in hunks:
            if a is b or a.i2 <= b.i1 or b.i2 <= a.i1:
                continue
            if (a.i1, a.i2) == (b.i1, b.i2) or not (a.contains(b) or b.contains(a)):
                raise ValueError(
                    f"features {a.feature!r} (lines {a.i1}-{a.i2}) and {b.feature!r} (lines {b.i1}-{b.i2}) overlap; "
                    "split them or render them as one feature"
                )
            outer = a if a.contains(b) else b
            if outer.alt:
                raise ValueError(f"feature {outer.feature!r} changes lines around another feature; not supported")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" "))]


def _merge(base: list[str], hunks: list[_Hunk]) -> list[str]:
    """``base`` with each hunk wrapped in ``{{- if cond }}`` (``else`` the variant's lines)."""
    _check_nesting(hunks)

    def emit(lo: int, hi: int, inside: list[_Hunk]) -> list[str]:
        top = [h for h in inside if not any(o.contains(h) for o in inside)]
        out, i = [], lo
        for h in sorted(top, key=lambda h: h.i1):
            out += base[i : h.i1]
            ind = _indent(base[h.i1])
            out.append(f"{ind}{{{{- if {h.cond} }}}}")
            out += emit(h.i1, h.i2, [g for g in inside if h.contains(g)])
            if h.alt:
                out.append(f"{ind}{{{{- else }}}}")
                out += h.alt
            out.append(f"{ind}{{{{- end }}}}")
            i = h.i2
        return out + base[i:hi]

    return emit(0, len(base), hunks)


def _helm_value(knob: Knob, quoted: bool) -> str:
    if isinstance(knob.sentinel, int):
        return f"{{{{ {knob.expr} | int | toString | quote }}}}" if quoted else f"{{{{ {knob.expr} | int }}}}"
    return f"{{{{ {knob.expr} | quote }}}}"


def _replace_knobs(text: str, knobs: Sequence[Knob]) -> str:
    tokens = [str(k.sentinel) for k in knobs]
    for a in tokens:
        for b in tokens:
            if a != b and a in b:
                raise ValueError(f"sentinel {a!r} is part of sentinel {b!r}")
    seen: set[str] = set()
    for knob in knobs:
        token = str(knob.sentinel)
        if token in seen:  # the same sentinel for two fields (e.g. name and the template ref) is fine
            continue
        seen.add(token)
        pattern = re.compile(r"(?<= )(['\"]?)" + re.escape(token) + r"\1(?=: |:$|$)", re.M)
        text, n = pattern.subn(lambda mt: _helm_value(knob, quoted=bool(mt.group(1))), text)
        if n == 0:
            raise ValueError(f"sentinel for {knob.field!r} ({token}) not found in the render")
        if token in text:
            raise ValueError(f"sentinel for {knob.field!r} ({token}) is used inside a longer value; cannot template it")
    return text


def _template(
    build: Callable[[dict[str, Any]], dict],
    knobs: Sequence[Knob],
    features: Sequence[Feature],
    on: Mapping[str, Any],
    post: Callable[[str], str] = lambda text: text,
) -> str:
    """Render ``build`` with sentinels + every feature on, merge the feature-off variants, template the knobs."""
    kwargs = {k.field: k.sentinel for k in knobs} | dict(on)

    def lines(overrides: Mapping[str, Any]) -> list[str]:
        return _escape_argo(to_yaml(build(kwargs | dict(overrides)))).splitlines()

    base = lines({})
    hunks = [h for f in features for h in _hunks(base, lines(f.off), f)]
    text = "\n".join(_merge(base, hunks)) + "\n"
    return _replace_knobs(post(text), knobs)


# --------------------------------------------------------------------------------------------------------------
# The two generated templates

# Values for the feature-guarded fields when the feature is on (all of these are also knobs).
_WT_ON = {"queue_name": "zzhelm-queue", "priority_class": "zzhelm-priority", "s3_secret": "zzhelm-s3-secret",
          "llm_secret": "zzhelm-gateway-secret", "accelerator": "zzhelm.io/accelerator", "report_artifacts": True,
          "run_as_user": 1925, "run_as_group": 1926, "fs_group": 1927}
_CRON_ON = {"timezone": "zzhelm-timezone", "suspend": True}
_CRON_SETTINGS_FIELDS = {"name", "namespace", "active_deadline_seconds"}


def workflowtemplate_template() -> str:
    body = _template(lambda kw: build_workflow_template(PipelineSettings(**kw)).to_dict(), WT_KNOBS, WT_FEATURES, _WT_ON)
    note = "Values fill the sentinels of tools/chart.py (WT_KNOBS, WT_FEATURES)."
    return (_header("workflows/pipeline.py", note) + WT_PREAMBLE
            + f"# GENERATED by {GENERATED_BY} from workflows/pipeline.py — do not edit.\n" + body)


def _build_cron_for_chart(kw: dict[str, Any]) -> dict:
    settings = PipelineSettings(**{k: v for k, v in kw.items() if k in _CRON_SETTINGS_FIELDS})
    rest = {k: v for k, v in kw.items() if k not in _CRON_SETTINGS_FIELDS}
    return build_cron_workflow(settings, [CRON_SCHEDULE_SENTINEL], **rest).to_dict()


def _schedules_block(text: str) -> str:
    pattern = re.compile(r"^( *)schedules:\n\1- " + re.escape(CRON_SCHEDULE_SENTINEL) + r"$", re.M)
    text, n = pattern.subn(lambda mt: CRON_SCHEDULES_BLOCK.format(indent=mt.group(1)), text)
    if n != 1:
        raise ValueError("the CronWorkflow render has no `schedules:` list with the schedule sentinel")
    return text


def cronworkflow_template() -> str:
    body = _template(_build_cron_for_chart, CRON_KNOBS, CRON_FEATURES, _CRON_ON, post=_schedules_block)
    note = "Values fill the sentinels of tools/chart.py (CRON_KNOBS, CRON_FEATURES)."
    return (
        _header("workflows/cron.py", note)
        + CRON_PREAMBLE
        + f"# GENERATED by {GENERATED_BY} from workflows/cron.py — do not edit.\n"
        + body
        + CRON_EPILOGUE
    )


_RBAC_NAME, _RBAC_NAMESPACE, _RBAC_LABELS = "zzhelm-sa", "zzhelm-namespace", {"zzhelm-labels": "zzhelm"}
_RBAC_HELM = {_RBAC_NAME: '{{ include "kubescribe.serviceAccountName" . }}', _RBAC_NAMESPACE: "{{ .Release.Namespace }}"}


def rbac_template() -> str:
    """Text of the chart's ``templates/rbac.yaml``: :func:`workflows.rbac.role` and :func:`workflows.rbac.role_binding`
    with Helm expressions for the names, namespace and labels, inside ``rbac.create``."""
    docs = [to_yaml(rbac.role(_RBAC_NAME, _RBAC_NAMESPACE, _RBAC_LABELS)),
            to_yaml(rbac.role_binding(_RBAC_NAME, _RBAC_NAMESPACE, _RBAC_NAME, _RBAC_LABELS))]
    text = "---\n".join(docs)
    text = re.sub(r"^( +)zzhelm-labels: zzhelm$",
                  lambda m: f'{m.group(1)}{{{{- include "kubescribe.labels" . | nindent {len(m.group(1))} }}}}', text, flags=re.M)
    for sentinel, expr in _RBAC_HELM.items():
        text = re.sub(r"(?<=: )" + re.escape(sentinel) + r"$", expr, text, flags=re.M)
    if "zzhelm" in text:
        raise ValueError("an RBAC sentinel of tools/chart.py is left in the chart's rbac.yaml")
    return (
        f"{{{{- /* GENERATED by {GENERATED_BY} from workflows/rbac.py — do not edit. */}}}}\n"
        "{{- if .Values.rbac.create }}\n"
        "# Least privilege for the workflow pods: Argo's emissary executor only creates/patches WorkflowTaskResults\n"
        "# (argo-workflows v4.1.2 docs/workflow-rbac.md, manifests/quick-start/base/executor/emissary/executor-role.yaml).\n"
        "# The steps talk to MinIO and the gateway, never to the Kubernetes API. `kubescribe templates install` creates\n"
        "# the same Role and RoleBinding without Helm.\n"
        + text
        + "{{- end }}\n"
    )


def generated_templates() -> dict[str, str]:
    """Chart-relative path → text of every generated template."""
    return {WORKFLOWTEMPLATE_FILE: workflowtemplate_template(), CRONWORKFLOW_FILE: cronworkflow_template(),
            RBAC_FILE: rbac_template()}


def generate_chart_templates(chart_dir: Path = CHART_DIR) -> list[Path]:
    """Write the generated templates into ``chart_dir`` (``make chart``); return the paths."""
    written = []
    for rel, text in generated_templates().items():
        path = Path(chart_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale_chart_templates(chart_dir: Path = CHART_DIR) -> dict[str, str]:
    """Generated files that differ from a fresh generation: path → unified diff (empty dict: up to date)."""
    stale = {}
    for rel, fresh in generated_templates().items():
        path = Path(chart_dir) / rel
        current = path.read_text() if path.exists() else ""
        if current != fresh:
            diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), f"{rel} (committed)", f"{rel} (fresh)", lineterm="")
            stale[rel] = "\n".join(list(diff)[:60])
    return stale


def main(argv: list[str] | None = None) -> int:
    """``make chart``: rewrite the generated templates; ``--check``: exit 1 (with the diff) when they are stale."""
    p = argparse.ArgumentParser(prog="python -m tools.chart", description=main.__doc__)
    p.add_argument("chart_dir", nargs="?", default=str(CHART_DIR), help="the chart (default: charts/kubescribe)")
    p.add_argument("--check", action="store_true", help="only compare; write nothing")
    a = p.parse_args(argv)
    if a.check:
        stale = stale_chart_templates(Path(a.chart_dir))
        for diff in stale.values():
            print(diff)
        return 1 if stale else 0
    for path in generate_chart_templates(Path(a.chart_dir)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
