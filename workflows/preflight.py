"""``kubescribe run``'s preflight: every check that can fail in seconds runs before anything heavy (the local LLM
server, Whisper), each failing with one line that names the option (:class:`PreflightError`, exit 2).

Order (``workflows/local_run.py``): options, output writable, S3 reachable, inputs exist, model resolvable, LLM
endpoint answering, something to do; then the local LLM server, then work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from steps.store import Obj, StoreError, open_store
from workflows.settings import PipelineSettings

#: PipelineSettings field -> the ``kubescribe run`` option that sets it (for one-line errors).
OPTION_OF_FIELD = {
    "whisper_model": "--model", "language": "--language", "beam_size": "--beam-size", "llm_url": "--llm-url",
    "llm_model": "--llm-model", "context_tokens": "--context-tokens", "max_output_tokens": "--max-output-tokens",
    "summarize_concurrency": "--concurrency", "shard_seconds": "--shard-seconds", "max_shards": "--max-shards",
    "parallelism": "--parallelism", "threads": "--threads", "accelerator": "--accelerator", "input": "AUDIO",
    "output": "--out", "only_new": "--only-new", "temperature": "--temperature", "task": "--task",
    "initial_prompt": "--initial-prompt", "output_format": "--output-format", "word_timestamps": "--word-timestamps",
    "vad": "--no-vad", "no_vad": "--no-vad",
}

LLM_CHECK_TIMEOUT_S = 5.0


class PreflightError(Exception):
    """A setting or environment problem found before any work: one line, exit 2."""


def check_settings(fields: dict) -> PipelineSettings:
    """The pipeline settings, validated; a bad value is named by its option."""
    try:
        return PipelineSettings(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        option = OPTION_OF_FIELD.get(field, field)
        value = fields.get(field)
        msg = err["msg"].removeprefix("Value error, ")
        raise PreflightError(f"{option} {value}: {msg[:1].lower()}{msg[1:]}" if value is not None else
                             f"{option}: {msg}") from None


def check_positive(**options: int) -> None:
    """Options outside the pipeline settings that must be at least 1 (``slots=0`` → ``--slots 0``)."""
    for name, value in options.items():
        if value < 1:
            raise PreflightError(f"--{name.replace('_', '-')} {value}: must be at least 1")


def check_output(out: str) -> str:
    """The output folder, created and proven writable (its absolute path); or an S3 URL whose bucket answers."""
    if out.startswith("s3://"):
        check_store(out, "--out")
        return out
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise PreflightError(f"--out {out}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kubescribe-write-test."):
            pass
    except OSError as e:
        raise PreflightError(f"--out {out}: not writable ({e.strerror or e})") from None
    return str(path.resolve())


def check_store(url: str, option: str) -> None:
    """An S3 endpoint and bucket that answer (a local store needs nothing here)."""
    if not url.startswith("s3://"):
        return
    try:
        store = open_store(url)
        store.check()  # type: ignore[attr-defined]
    except StoreError as e:
        raise PreflightError(f"{option} {url}: {e}") from None


def check_model(spec: str) -> None:
    """A Whisper model the steps can load: a checkpoint file, a CTranslate2 folder, the bundled default or a known
    openai-whisper name (whose download, where there is no cache, the step still does)."""
    from steps.models import DEFAULT_MODEL

    path = Path(spec).expanduser()
    if path.is_file() or spec == DEFAULT_MODEL:
        return
    if path.is_dir():
        if not ((path / "model.bin").is_file() and (path / "config.json").is_file()):
            raise PreflightError(f"--model {spec}: a folder but not a CTranslate2 Whisper model "
                                 "(no model.bin and config.json)")
        return
    if os.sep in spec or spec.endswith(".pt"):
        raise PreflightError(f"--model {spec}: no such file or folder")
    import whisper

    if spec not in whisper.available_models():
        raise PreflightError(f"--model {spec}: unknown model; give a whisper name "
                             f"({', '.join(whisper.available_models())}), a .pt checkpoint or a CTranslate2 folder")


def check_gguf(path: str | None) -> None:
    if path is not None and not Path(path).expanduser().is_file():
        raise PreflightError(f"--gguf {path}: no such file")


def check_llm(url: str, credentials: tuple[str, str] | None, shown: str) -> None:
    """The OpenAI-compatible endpoint answers ``GET /models`` within a few seconds (any HTTP answer but a refusal
    of the credentials counts: some gateways do not list models). Asked by the summarize step's own client, once,
    with the credentials the step will send."""
    from steps.llm import LLMClient, LLMError, LLMSettings
    from workflows.cluster.errors import network_reason

    settings = LLMSettings.probe(url, "-", timeout_s=LLM_CHECK_TIMEOUT_S,
                                 api_key=os.environ.get("LLM_API_KEY") or None, basic_auth=credentials)
    try:
        with LLMClient(settings) as client:
            client.check()
    except LLMError as e:
        if e.status in (401, 403):
            raise PreflightError(f"--llm-url {shown}: the server refused the credentials (HTTP {e.status}; "
                                 "LLM_API_KEY or user:password in the URL)") from None
        if e.status is None:
            raise PreflightError(f"--llm-url {shown}: not answering ({network_reason(e)})") from None


def audio_inputs(root: str, include: list[str] | None) -> list[Obj]:
    """The entries the plan step would take as audio inputs (readable or not: unreadable ones fail alone)."""
    from steps.audio import is_audio_name
    from steps.plan import list_inputs

    try:
        objects = list_inputs(open_store(root), include)
    except StoreError as e:
        raise PreflightError(f"AUDIO {root}: {e}") from None
    return [o for o in objects if is_audio_name(o.key) and not o.key.endswith("/")]


def new_inputs(objects: list[Obj], out: str) -> list[Obj]:
    """Those without a final outcome in ``out`` yet (what ``--only-new`` plans)."""
    from steps.markers import is_processed

    store = open_store(out)
    try:
        return [o for o in objects if not is_processed(store, o.key, o.fingerprint)]
    except (StoreError, ValueError) as e:
        raise PreflightError(f"--out {out}: cannot read what was processed: {e}") from None
