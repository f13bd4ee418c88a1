"""Build time, for the tests: the Helm chart's values → the hera builders' arguments, i.e. what the chart must be
equivalent to. ``values`` are the *merged* values (chart defaults + overrides, e.g. helm_python's
``Chart.merge_values``).

The functions named after a helper mirror that helper of ``charts/kubescribe/templates/_helpers.tpl``; the tests
render the chart with Helm and compare (``tests/test_chart.py``, ``tests/test_das_rbac.py``), so a change to one
without the other fails. The runtime packages never import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflows.cron import build_cron_workflow
from workflows.das import das_resource_name
from workflows.settings import PipelineSettings

CHART_NAME = "kubescribe"


def fullname(values: Mapping[str, Any], release_name: str) -> str:
    """Mirror of ``kubescribe.fullname`` in _helpers.tpl."""
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:63].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    full = release_name if name in release_name else f"{release_name}-{name}"
    return full[:63].rstrip("-")


def service_account_name(values: Mapping[str, Any], release_name: str) -> str:
    """Mirror of ``kubescribe.serviceAccountName``."""
    return values["serviceAccount"].get("name") or f"{fullname(values, release_name)}-workflow"[:63].rstrip("-")


def quota_resource_name(values: Mapping[str, Any]) -> str | None:
    """Mirror of ``kubescribe.quotaResource`` (tested against it): the accelerator name Kueue counts (None: CPU-only)."""
    explicit = values["kueue"]["clusterQueue"]["quota"].get("acceleratorResource")
    acc = values["whisper"]["accelerator"]
    if explicit:
        return explicit
    if acc == "cpu":
        return None
    return das_resource_name(acc) if values["das"]["enabled"] else acc


def report_artifacts_enabled(values: Mapping[str, Any]) -> bool:
    """Mirror of ``kubescribe.reportArtifacts``: ``pipeline.reportArtifacts``, or (null) ``artifactRepository.enabled``.

    The report step's output artifacts need an artifact repository; without one Argo cannot save them.
    """
    explicit = values["pipeline"].get("reportArtifacts")
    if explicit is None:
        return bool(values["artifactRepository"]["enabled"])
    return bool(explicit)


def effective_objective(values: Mapping[str, Any]) -> str:
    """Mirror of ``kubescribe.objective``: the InferenceObjective name the summarize step sends (empty: none).

    With ``gateway.inferenceObjective.create`` it is the created object's name (``inferenceObjective.name``, else
    ``gateway.objective``); the chart's ``fail`` cases (no name, two different names) raise ValueError here.
    """
    g = values["gateway"]
    io = g.get("inferenceObjective") or {}
    if not io.get("create"):
        return g["objective"]
    name = io.get("name") or g["objective"]
    if not name:
        raise ValueError("gateway.inferenceObjective.create is true but no name is set")
    if g["objective"] and g["objective"] != name:
        raise ValueError(f"gateway.objective ({g['objective']}) differs from gateway.inferenceObjective.name ({name})")
    return name


def settings_from_values(values: Mapping[str, Any], *, release_name: str, namespace: str) -> PipelineSettings:
    """The PipelineSettings whose hera WorkflowTemplate the chart renders for ``values``."""
    v = values
    kueue_on = bool(v["kueue"]["enabled"])
    return PipelineSettings(
        name=fullname(v, release_name),
        namespace=namespace,
        input=v["pipeline"]["input"],
        output=v["pipeline"]["output"],
        whisper_model=v["pipeline"]["whisperModel"],
        language=v["pipeline"]["language"],
        llm_url=v["gateway"]["url"],
        llm_model=v["gateway"]["model"],
        objective=effective_objective(v),
        shard_seconds=int(v["pipeline"]["shardSeconds"]),
        beam_size=int(v["pipeline"]["beamSize"]),
        max_shards=int(v["pipeline"]["maxShards"]),
        only_new=False,
        accelerator=v["whisper"]["accelerator"],
        queue_name=v["kueue"]["localQueue"]["name"] if kueue_on else None,
        priority_class=(v["kueue"]["priorityClass"]["name"] or None) if kueue_on else None,
        parallelism=int(v["whisper"]["parallelism"]),
        summarize_concurrency=int(v["gateway"]["concurrency"]),
        context_tokens=int(v["gateway"]["contextTokens"]),
        max_output_tokens=int(v["gateway"]["maxOutputTokens"]),
        whisper_image=v["whisper"]["image"],
        steps_image=v["steps"]["image"],
        whisper_cpu=_quantity(v["whisper"]["cpu"]),
        whisper_memory=v["whisper"]["memory"],
        steps_cpu=_quantity(v["steps"]["cpu"]),
        steps_memory=v["steps"]["memory"],
        threads=int(v["whisper"]["threads"]),
        transcribe_timeout=v["whisper"]["timeout"],
        retries=int(v["pipeline"]["retries"]),
        active_deadline_seconds=int(v["pipeline"]["activeDeadlineSeconds"]),
        run_as_user=_optional_int((v.get("podSecurityContext") or {}).get("runAsUser")),
        run_as_group=_optional_int((v.get("podSecurityContext") or {}).get("runAsGroup")),
        fs_group=_optional_int((v.get("podSecurityContext") or {}).get("fsGroup")),
        report_artifacts=report_artifacts_enabled(v),
        s3_endpoint=v["s3"]["endpoint"] or None,
        s3_secret=v["s3"]["existingSecret"] or None,
        llm_secret=v["gateway"]["apiKeySecret"] or None,
        service_account=service_account_name(v, release_name),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _quantity(value: Any) -> str:
    """A CPU quantity as Helm's ``quote`` prints it (2 → "2", 0.5 → "0.5")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cron_from_values(values: Mapping[str, Any], *, release_name: str, namespace: str) -> dict | None:
    """The CronWorkflow manifest the chart renders for ``values`` (None when cron is off)."""
    c = values["cron"]
    if not c["enabled"]:
        return None
    settings = settings_from_values(values, release_name=release_name, namespace=namespace)
    obj = build_cron_workflow(
        settings,
        c["schedules"],
        input=c["input"] or None,
        timezone=c["timezone"] or None,
        starting_deadline_seconds=int(c["startingDeadlineSeconds"]),
        successful_jobs_history_limit=int(c["successfulJobsHistoryLimit"]),
        failed_jobs_history_limit=int(c["failedJobsHistoryLimit"]),
        suspend=bool(c["suspend"]),
    ).to_dict()
    if c["legacySchedule"]:
        obj["spec"] = {("schedule" if k == "schedules" else k): (v[0] if k == "schedules" else v) for k, v in obj["spec"].items()}
    return obj
