"""Transcribe one shard of the plan with openai-whisper, file by file, with work avoidance.

Per file: hash the audio; when a marker for (content, model, options) exists, the transcript is known: outputs
that are missing or that differ from it (another input wrote the same name, or another run) are rewritten from
the marker, never trusted by their presence. Otherwise stream-decode the file in bounded windows, gate silence,
transcribe, write txt/srt/vtt/json with whisper's own writers, then the marker. A file that cannot be decoded,
read or transcribed fails alone; the shard goes on. Only infrastructure faults (store or model unusable) fail
the whole step, so that Argo's retry can deal with them. The shard's result is rewritten as each file starts
and ends, so a pod that dies names the file it was on and keeps what it finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from steps import layout
from steps.audio import SAMPLE_RATE, AudioError, speech_regions, stream_audio
from steps.digests import file_sha256, text_digest
from steps.plan import PlannedFile, read_plan
from steps.store import ObjectError, Store, StoreError, open_store
from steps.windows import merge_results, windows

log = logging.getLogger("kubescribe.transcribe")

# Bump when the output of an unchanged model and options changes (new post-processing, writer settings...).
TRANSCRIBE_VERSION = "2"


class DecodeStalled(RuntimeError):
    """Whisper's decoding loop stopped advancing through the audio; the file fails instead of hanging."""


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
    window_s: float = 600.0  # audio per model.transcribe call: bounds memory whatever the file's length

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
    digests: dict[str, str] = field(default_factory=dict)  # sha256 of each output as written: proof of ownership


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
    complete: bool = True  # False while the shard runs: ``files`` holds those finished so far
    current: str | None = None  # the input being transcribed when this was written

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        d = json.loads(text)
        d["files"] = [FileResult(**f) for f in d["files"]]
        return cls(**d)


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
            self._model = load_model(self.model_spec, device=self.device, checkpoint=self.checkpoint)
            self.load_seconds = time.perf_counter() - t0
        return self._model

    def transcribe_audio(self, audio) -> dict[str, Any]:
        """A whole (short) recording already in memory: one window."""
        return self.transcribe_blocks([audio])

    def transcribe_blocks(self, blocks) -> dict[str, Any]:
        """A recording as a stream of sample blocks, transcribed window by window (see ``steps.windows``)."""
        parts = []
        language = self.options.language
        for offset_s, audio in windows(blocks, self.options.window_s):
            result = self.transcribe_window(audio, language)
            if result["segments"]:
                language = language or result.get("language")  # what whisper detected first holds for the file
                parts.append((offset_s, result))
        return merge_results(parts, language or self.options.language or _model_language(self.model))

    def transcribe_window(self, audio, language: str | None) -> dict[str, Any]:
        o = self.options
        kwargs: dict[str, Any] = {
            "language": language,
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
        clips = 1
        if o.vad:
            regions = speech_regions(audio)
            if not regions:
                return {"text": "", "segments": [], "language": language}
            kwargs["clip_timestamps"] = [t for span in regions for t in span]
            clips = len(regions)
        # Whisper advances by up to 30 s per decode; one decode per second of audio per temperature, plus a few
        # per clip, is far more than any real decode needs and still a finite bound on a loop that stalls.
        budget = len(o.temperature) * (math.ceil(audio.size / SAMPLE_RATE) + 3 * clips + 10)
        with warnings.catch_warnings(), _decode_guard(self.model, budget, audio.size / SAMPLE_RATE):
            warnings.filterwarnings("ignore", message="FP16 is not supported on CPU")
            return self.model.transcribe(audio, **kwargs)


@contextlib.contextmanager
def _decode_guard(model, budget: int, seconds: float):
    """Make a decode loop that stops advancing fail instead of spinning forever.

    ``model.transcribe`` calls ``model.decode`` once per 30 s window (more on temperature fallback). A window of
    zero frames reaches ``decode`` as pure padding (exact zeros, which no real log-mel frame is) and means the
    loop cannot advance; a call count beyond ``budget`` means the same in some way we did not foresee.
    """
    calls = 0
    decode = model.decode

    def guarded(mel, options):
        nonlocal calls
        calls += 1
        if not bool(mel.any()):
            raise DecodeStalled("whisper was handed an empty chunk (the decode loop would not advance)")
        if calls > budget:
            raise DecodeStalled(f"whisper made {calls} decode calls for {seconds:.0f} s of audio without finishing")
        return decode(mel, options)

    model.decode = guarded
    try:
        yield
    finally:
        del model.decode  # the instance attribute shadowed the class's method


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
            try:
                res.sha256 = file_sha256(path)
            except OSError as e:
                raise ObjectError(f"cannot be read: {e.strerror or e}") from None
            marker_key = layout.transcript_marker(cache_key(res.sha256, transcriber.model_id, transcriber.options))
            marker = json.loads(output_store.read_text(marker_key)) if output_store.exists(marker_key) else None
            if marker is not None and "result" in marker:
                res.duration_s, res.speech_s, res.language = marker["duration_s"], marker["speech_s"], marker["language"]
                res.digests = _write_outputs(output_store, expected, marker["result"], only_if_different=True)
                res.status, res.outputs, res.cached = "succeeded", expected, True
                return res
            samples = [0]

            def counted(blocks):
                for b in blocks:
                    samples[0] += b.size
                    yield b

            blocks = stream_audio(str(path), max_seconds=transcriber.options.max_audio_hours * 3600)
            result = transcriber.transcribe_blocks(counted(blocks))
        res.duration_s = samples[0] / SAMPLE_RATE
        res.language = result.get("language")
        res.speech_s = sum(s["end"] - s["start"] for s in result.get("segments", []))
        res.digests = _write_outputs(output_store, expected, result)
        res.seconds = time.perf_counter() - t0
        res.rtf = res.seconds / res.duration_s if res.duration_s else None
        res.status, res.outputs = "succeeded", expected
        marker = {k: getattr(res, k) for k in ("input", "sha256", "duration_s", "speech_s", "language")}
        marker.update(model=transcriber.model_spec, model_id=transcriber.model_id, digests=res.digests, result=result)
        output_store.write_text(marker_key, json.dumps(marker), "application/json")
    except AudioError as e:
        res.error, res.bad_input = f"{f.input}: {e}", True
    except ObjectError as e:
        msg = str(e)
        res.error = msg if msg.startswith(f"{f.input}:") else f"{f.input}: {msg}"
    except StoreError:
        raise
    except DecodeStalled as e:
        res.error = f"{f.input}: transcription stopped: {e}"
    except Exception as e:  # noqa: BLE001 - one file's failure must not lose the others
        log.exception("transcription of %s failed", f.input)
        res.error = f"{f.input}: transcription failed: {type(e).__name__}: {e}"
    res.seconds = res.seconds if res.seconds is not None else time.perf_counter() - t0
    return res


def _write_outputs(
    store: Store, keys: dict[str, str], result: dict[str, Any], only_if_different: bool = False
) -> dict[str, str]:
    """Write the rendered outputs of ``result`` at ``keys``; return their digests.

    With ``only_if_different``, an output already holding exactly this text is left alone, and any other (a
    stale one from another input of the same name, or a half-finished run) is replaced.
    """
    digests = {}
    for fmt, text in render_outputs(result).items():
        digests[fmt] = text_digest(text)
        if only_if_different and store.exists(keys[fmt]):
            with contextlib.suppress(ObjectError, UnicodeDecodeError):
                if text_digest(store.read_text(keys[fmt])) == digests[fmt]:
                    continue
        store.write_text(keys[fmt], text, _content_type(fmt))
    return digests


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
    shard_result = ShardResult(run_id=run_id, shard=shard, model=model_spec, model_id=transcriber.model_id,
                               device=transcriber.device, files=[], complete=False)

    def save(current: str | None) -> None:
        shard_result.current = current
        shard_result.complete = current is None
        shard_result.model_load_s = transcriber.load_seconds
        shard_result.seconds = time.perf_counter() - t0
        output_store.write_text(layout.shard_result(run_id, shard), shard_result.to_json(), "application/json")

    for f in files:
        save(current=f.input)
        r = transcribe_file(transcriber, input_store, output_store, f)
        shard_result.files.append(r)
        if progress:
            progress(r)
    save(current=None)
    return shard_result
