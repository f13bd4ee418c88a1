"""Transcribe one shard of the plan with openai-whisper, file by file, with work avoidance.

Per file: hash the audio; when a marker for (content, model, options) exists, the transcript is known: outputs
that are missing or that differ from it (another input wrote the same name, or another run) are rewritten from
the marker, never trusted by their presence. Otherwise stream-decode the file in bounded windows, gate silence,
transcribe, write the asked-for formats (txt/srt/vtt/tsv/json) with whisper's own writers, then the marker. Watchers
learn progress from structured events (``steps/events.py``: ``file_started``, ``file_progress`` per window,
``file_done`` with the file's warnings), never from the log lines. A file that cannot be decoded,
read or transcribed fails alone; the shard goes on. Only infrastructure faults (store or model unusable) fail
the whole step, so that Argo's retry can deal with them. The shard's result is rewritten as each file starts
and ends, so a pod that dies names the file it was on and keeps what it finished.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

from steps import ct2_engine, decode_options, layout
from steps.audio import SAMPLE_RATE, AudioError, speech_regions, stream_audio
from steps.batched import BatchedEngine
from steps.defaults import (BEAM_SIZE, ENGINE, ENGINE_CPU, ENGINE_GPU, SILERO_THRESHOLD, TEMPERATURE,
                            TEMPERATURE_INCREMENT_ON_FALLBACK, VAD_FRAME_S, VAD_METHOD, VAD_MIN_GAP_S, VAD_MIN_SPEECH_S, VAD_PAD_S, VAD_THRESHOLD_DBFS)
from steps.events import emit
from steps.markers import (MARKER_FIELDS, input_sha256, read_marker, restore_fields, transcript_key, write_marker,
                           write_outputs)
from steps.records import FileResult, PlannedFile, ShardResult, Status
from steps.runstate import read_plan, write_shard_result
from steps.store import ObjectError, Store, StoreError, open_store
from steps.whisper_outputs import EMPTY_CHUNK, DecodeStalled, decode_budget, render_outputs
from steps.windows import merge_results, windows

log = logging.getLogger("kubescribe.transcribe")


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding options. The defaults are the hallucination-safe ones users of Whisper expect.

    - ``condition_on_previous_text=False``: one bad segment cannot seed a repetition loop (WhisperX's default).
    - ``vad=True``: an energy gate decodes only spans with sound; pure silence yields an empty transcript. Its
      thresholds (``vad_*``, see ``steps.audio.speech_regions``) change transcripts, so they are options too.
    - ``hallucination_silence_threshold``: skip silent gaps longer than this inside speech (needs word
      timestamps, which the bundled checkpoint supports).
    - temperature fallback plus compression-ratio / log-prob / no-speech thresholds: whisper's own safeguards.
    """

    language: str | None = None  # None: detect (English-only models always use "en")
    task: str = "transcribe"
    beam_size: int = BEAM_SIZE
    best_of: int = BEAM_SIZE
    temperature: tuple[float, ...] = decode_options.temperatures(TEMPERATURE, TEMPERATURE_INCREMENT_ON_FALLBACK)
    condition_on_previous_text: bool = False
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    word_timestamps: bool = True
    hallucination_silence_threshold: float | None = 2.0
    initial_prompt: str | None = None
    vad: bool = True
    vad_threshold_dbfs: float = VAD_THRESHOLD_DBFS
    vad_frame_s: float = VAD_FRAME_S
    vad_min_gap_s: float = VAD_MIN_GAP_S
    vad_pad_s: float = VAD_PAD_S
    vad_min_speech_s: float = VAD_MIN_SPEECH_S
    max_audio_hours: float = 6.0
    window_s: float = 600.0  # audio per model.transcribe call: bounds memory whatever the file's length
    vad_method: str = VAD_METHOD  # "energy" (level gate) or "silero" (neural VAD), see steps.vad
    # "sequential" (file by file), "batched" (steps.batched) or "ct2" (file by file, decoded by faster-whisper:
    # steps.ct2_engine); outputs may differ slightly, so the engine is part of the cache key
    engine: str = ENGINE
    # Which of whisper's writers run (steps.decode_options.parse_output_formats). Not part of the cache key: a
    # cached transcript is rendered again in whatever formats are asked for.
    output_formats: tuple[str, ...] = layout.TRANSCRIPT_FORMATS

    def __post_init__(self) -> None:
        if (self.language or "").strip().lower() in ("", "auto"):  # "auto" (the CLI's default) means detect
            object.__setattr__(self, "language", None)

    def cache_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["output_formats"]
        # Fields added after the first release are left out at the value that reproduces the old transcripts, so
        # the cache keys of existing results do not change.
        if fields["vad_method"] == "energy":
            del fields["vad_method"]
        else:
            fields["silero_threshold"] = SILERO_THRESHOLD
        if fields["engine"] == "sequential":
            del fields["engine"]
        return fields


class Transcriber:
    """Holds one loaded model and transcribes files with fixed options."""

    def __init__(self, model_spec: str, options: TranscribeOptions, device: str = "auto", threads: int = 0):
        from steps.models import checkpoint_id, resolve_checkpoint

        self.device = _pick_device(device)
        self.threads = threads
        if options.engine == "ct2":
            ct2_engine.model_folder(model_spec)  # a model it cannot load fails now, not at the first file
        self.checkpoint = resolve_checkpoint(model_spec)
        self.model_spec = model_spec
        self.model_id = checkpoint_id(self.checkpoint)
        self._model = None
        self._english: bool | None = None
        self.load_seconds: float | None = None
        # Seconds of sound the segmenter handed to the model in the last transcribe_blocks call (None: VAD off).
        self.sound_s: float | None = None
        # What was asked may not be what an English-only model can do: the options used (and keyed) are what it
        # does, and ``warnings`` (carried by every file's result) says what was not honoured.
        self.warnings: list[str] = []
        if options.language not in (None, "en") or options.task != "transcribe":
            language, self.warnings = decode_options.for_model(options.language, options.task, self.english,
                                                               model_spec)
            options = replace(options, language=language)
        self.options = options

    @property
    def english(self) -> bool:
        """True for an English-only model (tiny.en...), which can neither detect nor translate."""
        if self._english is None:
            self._english = decode_options.english_only(self.model_spec, self.checkpoint)
        return self._english

    def file_warnings(self, result: dict[str, Any]) -> list[str]:
        """The run's warnings, and those about this transcript (speech an English-only model did not understand)."""
        return [*self.warnings, *self._speech_warnings(result, None)]

    def _speech_warnings(self, result: dict[str, Any], sound_s: float | None) -> list[str]:
        if not result.get("segments") and not sound_s:
            return []  # nothing heard in silence: nothing to judge (and no need to inspect the model)
        return decode_options.speech_warnings(result, self.english, self.model_spec, sound_s)

    def judge(self, res: FileResult, result: dict[str, Any]) -> None:
        """Set ``res.warnings`` and ``res.unreliable`` (the warning that the transcript is not speech the model
        understood, read by the summarize step) from a finished or cached transcript and ``res.sound_s``."""
        speech = self._speech_warnings(result, res.sound_s)
        res.warnings = [*self.warnings, *speech]
        res.unreliable = speech[0] if speech else None

    @property
    def model(self):
        if self._model is None:
            import torch

            from steps.models import load_model

            if self.threads > 0:
                torch.set_num_threads(self.threads)
            t0 = time.perf_counter()
            if self.options.engine == "ct2":
                self._model = ct2_engine.load(self.model_spec, self.device, self.threads)
            else:
                self._model = load_model(self.model_spec, device=self.device, checkpoint=self.checkpoint)
            self.load_seconds = time.perf_counter() - t0
        return self._model

    def transcribe_audio(self, audio) -> dict[str, Any]:
        """A whole (short) recording already in memory: one window."""
        return self.transcribe_blocks([audio])

    def transcribe_blocks(self, blocks, on_window=None) -> dict[str, Any]:
        """A recording as a stream of sample blocks, transcribed window by window (see ``steps.windows``);
        ``on_window(done_s)`` is called after each window with the seconds of audio done."""
        parts = []
        language = self.options.language
        self.sound_s = 0.0 if self.options.vad else None
        for offset_s, audio in windows(blocks, self.options.window_s):
            result = self.transcribe_window(audio, language)
            if result["segments"]:
                language = language or result.get("language")  # what whisper detected first holds for the file
                parts.append((offset_s, result))
            if on_window:
                on_window(offset_s + audio.size / SAMPLE_RATE)
        return merge_results(parts, language or self.options.language or ("en" if self.english else None))

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
            if o.vad_method == "energy":
                regions = speech_regions(audio, threshold_dbfs=o.vad_threshold_dbfs, frame_s=o.vad_frame_s,
                                         min_gap_s=o.vad_min_gap_s, pad_s=o.vad_pad_s, min_speech_s=o.vad_min_speech_s)
            else:
                from steps.vad import regions as vad_regions

                regions = vad_regions(audio, o.vad_method, threshold_dbfs=o.vad_threshold_dbfs, frame_s=o.vad_frame_s,
                                      min_gap_s=o.vad_min_gap_s, pad_s=o.vad_pad_s, min_speech_s=o.vad_min_speech_s)
            self.sound_s = (self.sound_s or 0.0) + sum(end - start for start, end in regions)
            if not regions:
                return {"text": "", "segments": [], "language": language}
            kwargs["clip_timestamps"] = [t for span in regions for t in span]
            clips = len(regions)
        if o.engine == "ct2":  # faster-whisper has no decode hook to count: the call-budget guard below is whisper's
            return ct2_engine.transcribe(self.model, audio, kwargs)
        budget = decode_budget(len(o.temperature), audio.size / SAMPLE_RATE, clips)
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
            raise DecodeStalled(EMPTY_CHUNK)
        if calls > budget:
            raise DecodeStalled(f"whisper made {calls} decode calls for {seconds:.0f} s of audio without finishing")
        return decode(mel, options)

    model.decode = guarded
    try:
        yield
    finally:
        del model.decode  # the instance attribute shadowed the class's method


def auto_engine(device: str, model_spec: str) -> str:
    """What ``--engine auto`` runs: ENGINE_GPU on CUDA, ENGINE_CPU on the CPU, except that a model with no
    CTranslate2 form (an openai-whisper name or checkpoint other than tiny.en) keeps openai-whisper's batched engine."""
    engine = ENGINE_GPU if device == "cuda" else ENGINE_CPU
    if engine == "ct2" and not ct2_engine.has_ct2_form(model_spec):
        return "batched"
    return engine


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def transcribe_file(
    transcriber: Transcriber, input_store: Store, output_store: Store, f: PlannedFile, shard: int | None = None
) -> FileResult:
    """One file, start to end; ``file_started``/``file_progress`` events while it is decoded (not when cached)."""
    res = FileResult(input=f.input, stem=f.stem, status=Status.FAILED, duration_s=f.duration_s)
    formats = transcriber.options.output_formats
    expected = layout.transcripts(f.stem, formats)
    t0 = time.perf_counter()
    try:
        with input_store.local_copy(f.input) as path:
            res.sha256 = input_sha256(path)
            key = transcript_key(res.sha256, transcriber.model_id, transcriber.options.cache_fields())
            marker_key = layout.transcript_marker(key)
            marker = read_marker(output_store, marker_key, proof="result")
            if marker is not None:
                restore_fields(res, marker)
                res.digests = write_outputs(output_store, render_outputs(marker["result"], f.stem, formats),
                                            keep_identical=True)
                res.status, res.outputs, res.cached = Status.SUCCEEDED, expected, True
                transcriber.judge(res, marker["result"])
                return res
            emit("transcribe", "file_started", input=f.input, shard=shard, duration_s=f.duration_s)
            samples = [0]

            def counted(blocks):
                for b in blocks:
                    samples[0] += b.size
                    yield b

            def window_done(done_s: float) -> None:
                emit("transcribe", "file_progress", input=f.input, shard=shard, done_s=round(done_s, 2),
                     duration_s=f.duration_s)

            blocks = stream_audio(str(path), max_seconds=transcriber.options.max_audio_hours * 3600)
            result = transcriber.transcribe_blocks(counted(blocks), on_window=window_done)
        res.duration_s = samples[0] / SAMPLE_RATE
        res.language = result.get("language")
        res.speech_s = sum(s["end"] - s["start"] for s in result.get("segments", []))
        res.sound_s = transcriber.sound_s
        transcriber.judge(res, result)
        res.digests = write_outputs(output_store, render_outputs(result, f.stem, formats))
        res.seconds = time.perf_counter() - t0
        res.rtf = res.seconds / res.duration_s if res.duration_s else None
        res.status, res.outputs = Status.SUCCEEDED, expected
        marker = {k: getattr(res, k) for k in MARKER_FIELDS}
        marker.update(model=transcriber.model_spec, model_id=transcriber.model_id, digests=res.digests, result=result)
        write_marker(output_store, marker_key, marker)
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
        # The error (with its type) is the file's result, printed once by the step; the traceback is for debugging.
        log.debug("transcription of %s failed", f.input, exc_info=True)
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
    batch_size: int = 0,
) -> ShardResult:
    """Transcribe shard ``shard`` of the run's plan with ``options.engine``; both engines write the same outputs
    and markers, and record each file as it finishes."""
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
        write_shard_result(output_store, shard_result)

    def finished(r: FileResult) -> None:
        shard_result.files.append(r)
        status = "failed" if r.status != Status.SUCCEEDED else "cached" if r.cached else "succeeded"
        emit("transcribe", "file_done", input=r.input, shard=shard, status=status, error=r.error,
             warnings=r.warnings, duration_s=r.duration_s)
        if progress:
            progress(r)

    if options.engine == "batched":
        _run_batched(transcriber, files, input_store, output_store, shard, shard_result, save, finished, batch_size)
        return shard_result
    if options.engine not in ("sequential", "ct2"):
        raise ValueError(f"unknown engine {options.engine!r}: choose batched, sequential or ct2")
    for f in files:
        save(current=f.input)
        finished(transcribe_file(transcriber, input_store, output_store, f, shard=shard))
    save(current=None)
    return shard_result


def _run_batched(transcriber: Transcriber, files: list[PlannedFile], input_store: Store, output_store: Store,
                 shard: int, shard_result: ShardResult, save, finished, batch_size: int) -> None:
    """The shard through ``steps.batched`` (it renders through ``render_outputs`` with the shard's formats);
    reports chunks as they finish (``file_progress``, monotonic per file) and each file as it completes."""
    options = transcriber.options
    in_flight: list[str] = []
    done_s: dict[str, float] = {}
    lock = threading.Lock()

    def started(f: PlannedFile) -> None:
        in_flight.append(f.input)
        emit("transcribe", "file_started", input=f.input, shard=shard, duration_s=f.duration_s)
        save(current=in_flight[0])

    def chunk_done(name: str, end_s: float, duration_s: float | None) -> None:  # decoder thread: chunks finish
        with lock:  # out of order; progress only moves forward
            if end_s <= done_s.get(name, 0.0):
                return
            done_s[name] = end_s
        emit("transcribe", "file_progress", input=name, shard=shard, done_s=round(end_s, 2), duration_s=duration_s)

    def done(r: FileResult) -> None:
        if r.input in in_flight:
            in_flight.remove(r.input)
        if r.status == Status.SUCCEEDED:
            r.outputs = layout.transcripts(r.stem, options.output_formats)
            marker = read_marker(output_store, layout.transcript_marker(
                transcript_key(r.sha256 or "", transcriber.model_id, options.cache_fields())), proof="result")
            transcriber.judge(r, marker["result"] if marker else {})
        finished(r)
        save(current=in_flight[0] if in_flight else shard_result.current or "")

    engine = BatchedEngine(transcriber, batch_size=batch_size)
    engine.run(files, input_store, output_store, on_done=done, on_start=started, on_progress=chunk_done)
    order = {f.input: i for i, f in enumerate(files)}
    shard_result.files.sort(key=lambda r: order.get(r.input, len(order)))
    shard_result.batch_sizes = engine.batch_sizes
    shard_result.warmup_s = engine.warmup_s
    shard_result.decode_seconds = engine.decode_seconds
    save(current=None)
