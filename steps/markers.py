"""'Done' markers: what proves that work is finished, so a re-run skips it, and nothing else.

* **Cache keys.** A transcript is keyed by the audio's sha256, the checkpoint's id and every decoding option
  (:func:`transcript_key`); a summary by the transcript's digest, the model, the prompt version and the
  generation settings (:func:`summary_key`). Same key, same result: the work is not done again.
* **Proven, not assumed.** A marker holds the result itself and is written only after every output it names.
  On a hit the outputs are rewritten from the marker unless they already hold exactly its text
  (:func:`write_outputs` with ``keep_identical``): an output of the same name may be another input's, another
  run's, or gone. :func:`holds` is the same proof for the report, which reads every output back.
* **Processed inputs.** An input that reached a final outcome is recorded with its fingerprint and outputs;
  a scheduled "only new" run skips it while the fingerprint matches and the outputs exist (:func:`is_processed`).

The digests of files and texts (:func:`file_sha256`, :func:`text_digest`) are the proofs all of this rests on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from steps import layout
from steps.store import ObjectError, Store

if TYPE_CHECKING:
    from steps.llm import LLMSettings

#: Bump when the transcript of unchanged audio, model and options changes (new post-processing, writer
#: settings...): every transcript is then made again.
TRANSCRIBE_VERSION = "2"

_JSON = "application/json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`file_sha256` of an input: one that cannot be read is that input's problem (ObjectError), not an
    outage of the store."""
    try:
        return file_sha256(path)
    except OSError as e:
        raise ObjectError(f"cannot be read: {e.strerror or e}") from None


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def transcript_key(audio_sha256: str, model_id: str, options: Mapping[str, Any]) -> str:
    """``options``: every decoding option that can change the transcript (``TranscribeOptions.cache_fields``)."""
    return _key({"v": TRANSCRIBE_VERSION, "audio": audio_sha256, "model": model_id, "options": dict(options)})


def summary_key(transcript: str, settings: LLMSettings, prompt_version: str, refused: bool = False) -> str:
    """``prompt_version``: ``steps.llm.PROMPT_VERSION``; with the model, every generation setting that can
    change the summary (the map-reduce piece size among them), and whether the transcript was refused as
    unreliable (the same text can come with or without that verdict)."""
    return _key({"prompt": prompt_version, "model": settings.model, "max_output_tokens": settings.max_output_tokens,
                 "temperature": settings.temperature, "context_tokens": settings.context_tokens,
                 "frequency_penalty": settings.frequency_penalty, "presence_penalty": settings.presence_penalty,
                 "summary_format": settings.summary_format, "piece_tokens": settings.piece_tokens,
                 "refused": refused, "transcript": text_digest(transcript)})


def read_marker(store: Store, key: str, proof: str) -> dict[str, Any] | None:
    """The marker at ``key`` when it holds ``proof`` (the result its outputs are rebuilt from), else None."""
    if not store.exists(key):
        return None
    marker = json.loads(store.read_text(key))
    return marker if proof in marker else None


#: The ``FileResult`` fields a transcript marker carries: every engine writes them, a cache hit restores them.
MARKER_FIELDS = ("input", "sha256", "duration_s", "speech_s", "sound_s", "language")


def restore_fields(res: Any, marker: Mapping[str, Any]) -> None:
    """Set a ``FileResult``'s marker fields beyond its identity (input, sha256) from a transcript marker on a cache
    hit; markers written before ``sound_s`` existed have none."""
    res.duration_s, res.speech_s, res.language = marker["duration_s"], marker["speech_s"], marker["language"]
    res.sound_s = marker.get("sound_s")


def write_marker(store: Store, key: str, marker: dict[str, Any]) -> None:
    """Write a marker: only after every output it names is written, so a marker always means done."""
    store.write_text(key, json.dumps(marker), _JSON)


def holds(store: Store, key: str, digest: str) -> bool:
    """True when the object at ``key`` is exactly the text whose digest is ``digest`` (missing or unreadable: no)."""
    with contextlib.suppress(ObjectError, UnicodeDecodeError):
        return text_digest(store.read_text(key)) == digest
    return False


def write_outputs(store: Store, outputs: Mapping[str, tuple[str, str, str]], keep_identical: bool = False
                  ) -> dict[str, str]:
    """Write ``{name: (key, text, content type)}`` and return ``{name: digest}``, the proof of what was written.

    With ``keep_identical`` (rewriting from a marker), an output already holding exactly this text is left
    alone and any other (another input's of the same name, a half-finished run's) is replaced.
    """
    digests = {}
    for name, (key, text, content_type) in outputs.items():
        digests[name] = text_digest(text)
        if not (keep_identical and holds(store, key, digests[name])):
            store.write_text(key, text, content_type)
    return digests


def is_processed(store: Store, input_key: str, fingerprint: str) -> bool:
    """True when this exact input (same key, size and mtime/ETag) already finished in an earlier run and its
    outputs are still there."""
    key = layout.processed(input_key)
    if not store.exists(key):
        return False
    entry = json.loads(store.read_text(key))
    return entry.get("fingerprint") == fingerprint and all(store.exists(k) for k in entry.get("outputs", []))


def mark_processed(store: Store, input_key: str, *, fingerprint: str, run_id: str, status: str, error: str | None,
                   outputs: list[str]) -> None:
    entry = {"fingerprint": fingerprint, "run_id": run_id, "status": status, "error": error, "outputs": outputs}
    store.write_text(layout.processed(input_key), json.dumps(entry), _JSON)


def forget_processed(store: Store, input_key: str, *, run_id: str, error: str) -> None:
    """Make ``is_processed`` false for ``input_key`` (no real fingerprint is "-"; the store API has no delete)."""
    mark_processed(store, input_key, fingerprint="-", run_id=run_id, status="failed", error=error, outputs=[])
