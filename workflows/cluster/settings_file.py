"""Where the cluster commands' settings come from, first wins: the command-line flag, then the environment
(``ARGO_NAMESPACE``), then ``--settings FILE.yaml`` (``PipelineSettings`` fields), then the ``PipelineSettings``
defaults."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from workflows.cluster.errors import ClusterError
from workflows.settings import PipelineSettings

ENV_NAMESPACE = "ARGO_NAMESPACE"
DEFAULT_NAMESPACE = "default"

# flag attribute → PipelineSettings field. "" means "unset" for the optional fields.
_SETTING_FLAGS = {
    "template": "name",
    "queue": "queue_name",
    "accelerator": "accelerator",
    "s3_secret": "s3_secret",
    "llm_url": "llm_url",
    "llm_model": "llm_model",
    "whisper_image": "whisper_image",
    "steps_image": "steps_image",
}
_OPTIONAL_FIELDS = {"queue_name", "s3_secret", "priority_class", "llm_secret", "namespace", "service_account"}


def validation_message(exc: Exception, source: str) -> str:
    errors = getattr(exc, "errors", lambda: [])()
    if not errors:
        return f"invalid settings ({source}): {exc}"
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "settings"
        parts.append(f"{loc}: {e.get('msg', '').removeprefix('Value error, ')}")
    return f"invalid settings ({source}): " + "; ".join(parts)


def load_settings(a: argparse.Namespace) -> PipelineSettings:
    """PipelineSettings from ``--settings FILE.yaml`` (optional) overridden by the command's flags."""
    import yaml
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    source = "defaults"
    if getattr(a, "settings", None):
        path = Path(a.settings)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ClusterError(f"cannot read settings file {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ClusterError(f"settings file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ClusterError(f"settings file {path} must hold a mapping of PipelineSettings fields")
        data = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    flags = {}
    for attr, fld in _SETTING_FLAGS.items():
        value = getattr(a, attr, None)
        if value is not None:
            flags[fld] = None if (value == "" and fld in _OPTIONAL_FIELDS) else value
    if flags:
        source += " + flags" if source != "defaults" else "flags"
    try:
        return PipelineSettings(**{**data, **flags})
    except ValidationError as e:
        raise ClusterError(validation_message(e, source)) from None


def resolve_namespace(a: argparse.Namespace, settings: PipelineSettings, fallback: str | None = None) -> tuple[str, PipelineSettings]:
    """The target namespace (flag > $ARGO_NAMESPACE > settings > fallback > "default"), and settings whose
    ``namespace`` (rendered into metadata when set) does not contradict it."""
    override = getattr(a, "namespace", None) or os.environ.get(ENV_NAMESPACE) or None
    if override and settings.namespace and settings.namespace != override:
        settings = settings.model_copy(update={"namespace": override})
    return override or settings.namespace or fallback or DEFAULT_NAMESPACE, settings

