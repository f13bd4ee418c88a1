"""Transcribe one shard of the plan with openai-whisper, file by file, with work avoidance.

Per file: hash the audio, skip it when a marker for (content, model, options) exists and its outputs are
present, else decode, gate silence, transcribe, write txt/srt/vtt/json with whisper's own writers, then the
marker. A file that cannot be decoded fails alone; the shard goes on. Only infrastructure faults (store or model
unusable) fail the whole step, so that Argo's retry can deal with them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steps import layout
from steps.audio import SAMPLE_RATE, AudioError, load_audio, speech_regions
from steps.plan import PlannedFile, read_plan
from steps.store import Store, StoreError, open_store

log = logging.getLogger("kubescribe.transcribe")

# Bump when the output of an unchanged model and options changes (new post-processing, writer settings...).
TRANSCRIBE_VERSION = "1"


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding options. The defaults are the hallucination-safe ones users of Whisper expect.

    - ``condition_on_previous_text=False``: one bad segment cannot seed a repetition loop (WhisperX's default).
    - ``vad=True``: an energy gate decodes only spans with sound; pure silence yields an empty transcript.
    - ``hallucination_silence_threshold``: skip silent gaps longer than this inside speech (needs word
      timestamps, which the bundled checkpoint supports).
    - temperature fallback plus compression-ratio / log-prob / no-speech thresholds: whisper's own safeguards.
    """

    language: str | None = None  # None: detect (English-only models always use "en")
    task: str = "transcribe"
    beam_size: int = 5
    best_of: int = 5
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    condition_on_previous_text: bool = False
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    word_timestamps: bool = True
    hallucination_silence_threshold: float | None = 2.0
    initial_prompt: str | None = None
    vad: bool = True
    max_audio_hours: float = 6.0

    def cache_fields(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileResult:
    input: str
    stem: str
    status: str  # "succeeded" | "failed"
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    duration_s: float | None = None
    speech_s: float | None = None
    language: str | None = None
    seconds: float | None = None  # wall time spent decoding + transcribing
    rtf: float | None = None  # seconds / duration_s
    cached: bool = False
    bad_input: bool = False  # the file itself is not usable audio: retrying the same bytes cannot help


@dataclass
class ShardResult:
    run_id: str
    shard: int
    model: str
    model_id: str
    device: str
    files: list[FileResult]
    model_load_s: float | None = None
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        d = json.loads(text)
        d["files"] = [FileResult(**f) for f in d["files"]]
        return cls(**d)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(audio_sha256: str, model_id: str, options: TranscribeOptions) -> str:
    blob = json.dumps(
        {"v": TRANSCRIBE_VERSION, "audio": audio_sha256, "model": model_id, "options": options.cache_fields()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def render_outputs(result: dict[str, Any]) -> dict[str, str]:
    """txt/srt/vtt/json text from a whisper result, through whisper's own ResultWriter classes."""
    from whisper.utils import WriteJSON, WriteSRT, WriteTXT, WriteVTT

    writer_options = {"max_line_width": None, "max_line_count": None, "highlight_words": False, "max_words_per_line": None}
    rendered = {}
    for fmt, writer_cls in (("txt", WriteTXT), ("srt", WriteSRT), ("vtt", WriteVTT), ("json", WriteJSON)):
        buf = io.StringIO()
        writer_cls(".").write_result(result, buf, writer_options)
        rendered[fmt] = buf.getvalue()
    return rendered


def _content_type(fmt: str) -> str:
    return {"json": "application/json", "vtt": "text/vtt", "srt": "application/x-subrip"}.get(fmt, "text/plain") + (
        "; charset=utf-8" if fmt != "json" else ""
    )


class Transcriber:
    """Holds one loaded model and transcribes files with fixed options."""

    def __init__(self, model_spec: str, options: TranscribeOptions, device: str = "auto", threads: int = 0):
        from steps.models import checkpoint_id, resolve_checkpoint

        self.options = options
        self.device = _pick_device(device)
        self.threads = threads
        self.checkpoint = resolve_checkpoint(model_spec)
        self.model_spec = model_spec
        self.model_id = checkpoint_id(self.checkpoint)
        self._model = None
        self.load_seconds: float | None = None

    @property
    def model(self):
        if self._model is None:
            import torch

            from steps.models import load_model

            if self.threads > 0:
                torch.set_num_threads(self.threads)
            t0 = time.perf_counter()
            self._model = load_model(str(self.checkpoint), device=self.device)
            self.load_seconds = time.perf_counter() - t0
        return self._model

    def transcribe_audio(self, audio) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "language": o.language,
            "task": o.task,
            "temperature": o.temperature,
            "condition_on_previous_text": o.condition_on_previous_text,
            "compression_ratio_threshold": o.compression_ratio_threshold,
            "logprob_threshold": o.logprob_threshold,
            "no_speech_threshold": o.no_speech_threshold,
            "word_timestamps": o.word_timestamps,
            "initial_prompt": o.initial_prompt,
            "beam_size": o.beam_size,
            "best_of": o.best_of,
            "fp16": self.device == "cuda",
            "verbose": None,
        }
        if o.word_timestamps and o.hallucination_silence_threshold is not None:
            kwargs["hallucination_silence_threshold"] = o.hallucination_silence_threshold
        if o.vad:
            regions = speech_regions(audio)
            if not regions:
                return {"text": "", "segments": [], "language": o.language or _model_language(self.model)}
            kwargs["clip_timestamps"] = [t for span in regions for t in span]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="FP16 is not supported on CPU")
            return self.model.transcribe(audio, **kwargs)


def _model_language(model) -> str | None:
    return None if getattr(model, "is_multilingual", True) else "en"


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def transcribe_file(
    transcriber: Transcriber, input_store: Store, output_store: Store, f: PlannedFile
) -> FileResult:
    res = FileResult(input=f.input, stem=f.stem, status="failed", duration_s=f.duration_s)
    expected = layout.transcripts(f.stem)
    t0 = time.perf_counter()
    try:
        with input_store.local_copy(f.input) as path:
            res.sha256 = _sha256(path)
            key = cache_key(res.sha256, transcriber.model_id, transcriber.options)
            marker_key = layout.transcript_marker(key)
            if output_store.exists(marker_key):
                marker = json.loads(output_store.read_text(marker_key))
                if marker.get("outputs") == expected and all(output_store.exists(k) for k in expected.values()):
                    res.duration_s, res.speech_s, res.language = marker["duration_s"], marker["speech_s"], marker["language"]
                    res.status, res.outputs, res.cached = "succeeded", expected, True
                    return res
            audio = load_audio(str(path), max_seconds=transcriber.options.max_audio_hours * 3600)
        res.duration_s = audio.size / SAMPLE_RATE
        result = transcriber.transcribe_audio(audio)
        res.language = result.get("language")
        res.speech_s = sum(s["end"] - s["start"] for s in result.get("segments", []))
        for fmt, text in render_outputs(result).items():
            output_store.write_text(expected[fmt], text, _content_type(fmt))
        res.seconds = time.perf_counter() - t0
        res.rtf = res.seconds / res.duration_s if res.duration_s else None
        res.status, res.outputs = "succeeded", expected
        marker = {k: getattr(res, k) for k in ("input", "sha256", "duration_s", "speech_s", "language")}
        marker.update(outputs=expected, model=transcriber.model_spec, model_id=transcriber.model_id)
        output_store.write_text(marker_key, json.dumps(marker), "application/json")
    except AudioError as e:
        res.error, res.bad_input = f"{f.input}: {e}", True
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - one file's failure must not lose the others
        log.exception("transcription of %s failed", f.input)
        res.error = f"{f.input}: transcription failed: {type(e).__name__}: {e}"
    res.seconds = res.seconds if res.seconds is not None else time.perf_counter() - t0
    return res


def run_shard(
    output_url: str,
    run_id: str,
    shard: int,
    model_spec: str,
    options: TranscribeOptions | None = None,
    device: str = "auto",
    threads: int = 0,
    progress=None,
) -> ShardResult:
    options = options or TranscribeOptions()
    output_store = open_store(output_url)
    plan = read_plan(output_store, run_id)
    files = plan.shard_files(shard)
    input_store = open_store(plan.input)
    transcriber = Transcriber(model_spec, options, device=device, threads=threads)
    t0 = time.perf_counter()
    results = []
    for f in files:
        r = transcribe_file(transcriber, input_store, output_store, f)
        results.append(r)
        if progress:
            progress(r)
    shard_result = ShardResult(
        run_id=run_id,
        shard=shard,
        model=model_spec,
        model_id=transcriber.model_id,
        device=transcriber.device,
        files=results,
        model_load_s=transcriber.load_seconds,
        seconds=time.perf_counter() - t0,
    )
    output_store.write_text(layout.shard_result(run_id, shard), shard_result.to_json(), "application/json")
    return shard_result
