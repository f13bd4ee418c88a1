"""Defaults for ``kubescribe run`` from a settings file (``--config FILE``, YAML) and ``KUBESCRIBE_*`` environment
variables, read by pydantic-settings.

Precedence, highest first: a flag on the command line, an environment variable (``KUBESCRIBE_BEAM_SIZE=1``), the
settings file (``beam_size: 1``), the built-in default. Keys are the option names with ``_`` for ``-``; an unknown
key or a bad value is one line naming it (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "KUBESCRIBE_"


class ConfigError(ValueError):
    """The settings file or a ``KUBESCRIBE_*`` variable is unusable: one line, exit 2."""


class RunConfig(BaseSettings):
    """Every field is a ``kubescribe run`` option (``tests/test_cli_front_options.py`` checks the two agree);
    None: not set here."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    out: str | None = None
    model: str | None = None
    language: str | None = None
    task: str | None = None
    beam_size: int | None = None
    temperature: float | None = None
    initial_prompt: str | None = None
    output_format: str | None = None
    word_timestamps: bool | None = None
    no_vad: bool | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    gguf: str | None = None
    context_tokens: int | None = None
    max_output_tokens: int | None = None
    concurrency: int | None = None
    shard_seconds: int | None = None
    max_shards: int | None = None
    only_new: bool | None = None
    parallelism: int | None = None
    threads: int | None = None
    accelerator: str | None = None
    slots: int | None = None
    show: bool | None = None
    workdir: str | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment overrides the file (passed as init values)


def load_run_defaults(config_file: str | None) -> dict[str, Any]:
    """The ``run`` options set by the settings file and the environment (only those set)."""
    values: dict[str, Any] = {}
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).expanduser().read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"--config {config_file}: cannot read it ({e.strerror or e})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"--config {config_file}: not YAML ({str(e).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config {config_file}: expected a mapping of option: value")
        values = {str(k).replace("-", "_"): v for k, v in (loaded or {}).items()}
    try:
        config = RunConfig(**values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(map(str, err["loc"]))
        where = f"--config {config_file}" if key in values else f"{ENV_PREFIX}{key.upper()}"
        what = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{where}: {key}: {what}") from None
    return config.model_dump(exclude_none=True)
