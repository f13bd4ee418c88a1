"""The batched engine: every file of a shard cut into <= 30 s chunks, decoded together in batches.

How it works (one process = one pod; the model is loaded and warmed once):

* A **reader** thread streams each file (``steps.audio.stream_audio``, bounded windows as the sequential engine),
  finds its speech (``steps.vad``), cuts it into chunks of at most 30 s on natural pauses and queues them. Files
  are read ahead only as far as the bounded queue allows, so memory does not grow with the shard. A file whose
  transcript is already known (marker) is never decoded; a file with the same bytes as one in flight waits for
  it and is written from its result.
* **Workers** (one per batch slot) each run openai-whisper's own ``model.transcribe`` on one chunk, with the
  chunk's spans as ``clip_timestamps``: whisper's segmenting, temperature fallback, thresholds, word timestamps
  and hallucination-silence logic are untouched. Every ``model.decode`` call they make is routed to
* the **batch decoder**, which waits until every busy worker is waiting on a decode (or a full batch is ready),
  stacks their log-mels (computed on the model's device) and runs ``whisper.decoding.decode`` once: one batched
  encoder pass and one beam search over the batch with whisper's KV cache. Requests with different
  ``DecodingOptions`` (a temperature-fallback retry) form their own batch, so fallback re-decodes only the chunks
  that failed, together.
* When a file's last chunk is done, the main thread stitches its chunks on the file's clock, writes
  txt/srt/vtt/json with whisper's writers and then the marker, at once: not at the end of the shard.

Word timestamps (one alignment forward pass per chunk) run in the workers, serialized with decoding because
whisper's alignment hooks the model's shared attention modules; ``bench/throughput.py`` reports what they cost.
The batch size comes from free device memory on CUDA (:func:`auto_batch_size`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steps import layout
from steps.audio import SAMPLE_RATE, AudioError, stream_audio
from steps.batch_decoder import BatchDecoder, batch_decode
from steps.markers import (MARKER_FIELDS, input_sha256, read_marker, restore_fields, transcript_key, write_marker,
                           write_outputs)
from steps.records import FileResult, PlannedFile, Status
from steps.store import ObjectError, Store, StoreError
from steps.vad import Chunk, plan_chunks, regions
from steps.whisper_outputs import DecodeStalled, render_outputs
from steps.windows import merge_results, windows

log = logging.getLogger("kubescribe.batched")

#: Batch size on the CPU (measured by bench/throughput.py on 2 cores; larger batches gain nothing there).
CPU_BATCH = 8
#: Upper bound on CUDA whatever the free memory.
MAX_GPU_BATCH = 64

__all__ = ["BatchedEngine", "auto_batch_size"]


def auto_batch_size(model, device: str, beam_size: int) -> int:
    """Chunks per batch: on CUDA as many as half the free device memory holds, estimated from the model's
    dimensions (encoder activations plus the beam's self- and cross-attention KV cache in fp16)."""
    if device != "cuda":
        return CPU_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info()
    d = model.dims
    bytes_per = 2
    beams = max(1, beam_size)
    encoder = 1500 * d.n_audio_state * bytes_per * 12  # activations of one layer at a time, with attention + MLP
    kv = beams * d.n_text_layer * 2 * (1500 + d.n_text_ctx) * d.n_text_state * bytes_per
    logits = beams * d.n_text_ctx * d.n_vocab * 4 // 8
    per_chunk = 3 * (encoder + kv + logits)  # headroom for allocator fragmentation and alignment passes
    return max(1, min(MAX_GPU_BATCH, int(free * 0.5) // per_chunk))


@dataclass
class _Work:
    key: int
    index: int
    chunk: Chunk
    audio: np.ndarray


@dataclass
class _FileState:
    f: PlannedFile
    res: FileResult
    t0: float
    marker_key: str = ""
    samples: int = 0
    sound_s: float | None = None  # seconds the segmenter kept (None: VAD off)
    total: int | None = None  # chunks, once the reader has seen the whole file
    parts: dict[int, tuple[float, dict]] = field(default_factory=dict)
    error: str | None = None
    aliases: list[tuple[PlannedFile, FileResult, float]] = field(default_factory=list)
    finished: bool = False
    result: dict | None = None


class BatchedEngine:
    """Runs a shard's files through the batch decoder. ``transcriber`` is a ``steps.transcribe.Transcriber``."""

    def __init__(self, transcriber, batch_size: int = 0, workers: int = 0):
        self.t = transcriber
        self.requested_batch = batch_size
        self.requested_workers = workers
        self.batch_sizes: list[int] = []
        self.decode_seconds: list[float] = []
        self.warmup_s: float | None = None
        self._warm = False

    # --- per chunk, in a worker thread --------------------------------------------------------------------------

    def _decode_kwargs(self, clips) -> dict[str, Any]:
        o = self.t.options
        kwargs: dict[str, Any] = {
            "language": o.language or (None if getattr(self.t.model, "is_multilingual", True) else "en"),
            "task": o.task, "temperature": o.temperature,
            "condition_on_previous_text": o.condition_on_previous_text,
            "compression_ratio_threshold": o.compression_ratio_threshold, "logprob_threshold": o.logprob_threshold,
            "no_speech_threshold": o.no_speech_threshold, "word_timestamps": o.word_timestamps,
            "initial_prompt": o.initial_prompt, "beam_size": o.beam_size, "best_of": o.best_of,
            "fp16": self.t.device == "cuda", "verbose": None,
            "clip_timestamps": [t for span in clips for t in span],
        }
        if o.word_timestamps and o.hallucination_silence_threshold is not None:
            kwargs["hallucination_silence_threshold"] = o.hallucination_silence_threshold
        return kwargs

    def _transcribe_chunk(self, work: _Work, decoder: BatchDecoder, local: threading.local) -> dict[str, Any]:
        import torch

        model = self.t.model
        seconds = work.audio.size / SAMPLE_RATE
        local.calls, local.budget = 0, len(self.t.options.temperature) * (math.ceil(seconds) + 3 * len(work.chunk.clips) + 10)
        audio = torch.from_numpy(work.audio).to(model.device)  # log-mel is computed where the model is
        return model.transcribe(audio, **self._decode_kwargs(work.chunk.clips))

    # --- the shard ---------------------------------------------------------------------------------------------

    def run(self, files: list[PlannedFile], input_store: Store, output_store: Store, on_done, on_start=None,
            on_progress=None) -> None:
        """Transcribe ``files``; ``on_done(FileResult)`` is called (in this thread) as each file completes, and
        ``on_progress(input, done_s, duration_s)`` (in a worker thread) as each chunk finishes: ``done_s`` is
        the end of that chunk on the file's clock (chunks finish out of order), ``duration_s`` the plan's."""
        from whisper import timing

        model = self.t.model
        o = self.t.options
        batch = self.requested_batch or auto_batch_size(model, self.t.device, o.beam_size)
        n_workers = self.requested_workers or batch
        model_lock = threading.RLock()
        decoder = BatchDecoder(model, batch, model_lock, self.t.threads)
        local = threading.local()
        events: queue.Queue = queue.Queue()
        work_q: queue.Queue = queue.Queue(maxsize=2 * n_workers)
        stop = threading.Event()

        def guarded_decode(mel, options):
            if not bool(mel.any()):
                raise DecodeStalled("whisper was handed an empty chunk (the decode loop would not advance)")
            local.calls = getattr(local, "calls", 0) + 1
            if local.calls > getattr(local, "budget", 1 << 30):
                raise DecodeStalled(f"whisper made {local.calls} decode calls for one chunk without finishing")
            return decoder.decode(mel, options)

        find_alignment = timing.find_alignment

        def locked_alignment(*args, **kwargs):  # alignment hooks the shared attention modules: one at a time
            with model_lock:
                return find_alignment(*args, **kwargs)

        def worker() -> None:
            if self.t.threads > 0:
                import torch

                torch.set_num_threads(self.t.threads)
            while True:
                work = work_q.get()
                if work is None:
                    return
                decoder.enter()
                try:
                    result = self._transcribe_chunk(work, decoder, local)
                    events.put(("chunk", work.key, work.index, work.chunk.offset_s, result))
                    if on_progress is not None:
                        f = files[work.key]
                        on_progress(f.input, work.chunk.end / SAMPLE_RATE, f.duration_s)
                except BaseException as e:  # noqa: BLE001 - the file fails, the shard goes on
                    events.put(("chunk_error", work.key, work.index, e))
                finally:
                    decoder.leave()

        def reader() -> None:
            in_flight: dict[str, int] = {}  # cache key -> file key of the first file with these bytes
            try:
                for key, f in enumerate(files):
                    if stop.is_set():
                        return
                    self._read_file(key, f, input_store, output_store, work_q, events, in_flight, stop)
            except BaseException as e:  # noqa: BLE001 - a store outage fails the step, in the main thread
                events.put(("fatal", e))
            finally:
                events.put(("reader_done",))

        model.decode = guarded_decode
        timing.find_alignment = locked_alignment
        threads = [threading.Thread(target=worker, name=f"chunk-worker-{i}", daemon=True) for i in range(n_workers)]
        states: dict[int, _FileState] = {}
        fatal: BaseException | None = None
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="FP16 is not supported on CPU")
                self._warm_up(batch)
                for th in threads:
                    th.start()
                rd = threading.Thread(target=reader, name="chunk-reader", daemon=True)
                rd.start()
                reader_done = False
                while not reader_done or any(not st.finished for st in states.values()):
                    ev = events.get()
                    kind = ev[0]
                    if kind == "reader_done":
                        reader_done = True
                        continue
                    if kind == "fatal":
                        fatal = ev[1]
                        stop.set()
                        break
                    if kind == "done_now":  # cached, unreadable or not audio: nothing to decode
                        on_done(ev[1])
                        continue
                    if kind == "alias":
                        _, key, f, res, t0 = ev
                        states[key].aliases.append((f, res, t0))
                        if states[key].finished:
                            self._finish_aliases(states[key], output_store, on_done)
                        continue
                    key = ev[1]
                    if kind == "start":
                        states[key] = ev[2]
                        if on_start:
                            on_start(ev[2].f)
                    elif kind == "total":
                        states[key].total, states[key].samples = ev[2], ev[3]
                    elif kind == "file_error":
                        states[key].error = states[key].error or ev[2]
                        states[key].res.bad_input = ev[3]
                    elif kind == "chunk":
                        states[key].parts[ev[2]] = (ev[3], ev[4])
                    elif kind == "chunk_error":
                        states[key].error = states[key].error or _chunk_error(states[key].f, ev[3])
                        states[key].parts[ev[2]] = (0.0, {})
                    st = states[key]
                    if not st.finished and st.total is not None and len(st.parts) >= st.total:
                        self._finish(st, output_store, on_done)
            if fatal is not None:
                raise fatal
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    work_q.get_nowait()
            for _ in threads:
                with contextlib.suppress(queue.Full):
                    work_q.put(None, timeout=5)
            for th in threads:
                th.join(timeout=60)
            decoder.close()
            self.batch_sizes.extend(decoder.batches)
            self.decode_seconds.extend(decoder.seconds)
            timing.find_alignment = find_alignment
            with contextlib.suppress(AttributeError):
                del model.decode

    def _warm_up(self, batch: int) -> None:
        """One full-size batch decode of noise: CUDA context, cuBLAS handles and kernels are paid once per pod."""
        if self._warm or self.t.device != "cuda":
            self._warm = True
            return
        import torch
        from whisper.audio import log_mel_spectrogram
        from whisper.decoding import DecodingOptions

        t0 = time.perf_counter()
        model = self.t.model
        noise = torch.randn(30 * SAMPLE_RATE, device=model.device) * 0.01
        mel = log_mel_spectrogram(noise, model.dims.n_mels).unsqueeze(0).repeat(batch, 1, 1)[..., :3000]
        opts = DecodingOptions(language="en" if not model.is_multilingual else None, beam_size=self.t.options.beam_size,
                               fp16=True, sample_len=8, without_timestamps=False)
        batch_decode(model, mel, opts)
        torch.cuda.synchronize()
        self.warmup_s = time.perf_counter() - t0
        self._warm = True

    def _read_file(self, key, f, input_store, output_store, work_q, events, in_flight, stop) -> None:
        t = self.t
        o = t.options
        res = FileResult(input=f.input, stem=f.stem, status=Status.FAILED, duration_s=f.duration_s)
        state = _FileState(f=f, res=res, t0=time.perf_counter())
        started = False
        index = samples = 0
        try:
            with input_store.local_copy(f.input) as path:
                res.sha256 = input_sha256(path)
                cache_key = transcript_key(res.sha256, t.model_id, o.cache_fields())
                state.marker_key = layout.transcript_marker(cache_key)
                marker = read_marker(output_store, state.marker_key, proof="result")
                if marker is not None:
                    restore_fields(res, marker)
                    res.digests = write_outputs(output_store, render_outputs(marker["result"], f.stem, o.output_formats), keep_identical=True)
                    res.status, res.outputs, res.cached = Status.SUCCEEDED, layout.transcripts(f.stem, o.output_formats), True
                    res.seconds = time.perf_counter() - state.t0
                    events.put(("done_now", res))
                    return
                if cache_key in in_flight:  # same bytes as a file of this shard: decoded once, written twice
                    events.put(("alias", in_flight[cache_key], f, res, state.t0))
                    return
                in_flight[cache_key] = key
                events.put(("start", key, state))
                started = True
                state.sound_s = 0.0 if o.vad else None
                blocks = stream_audio(str(path), max_seconds=o.max_audio_hours * 3600)
                for offset_s, audio in windows(blocks, o.window_s):
                    samples += audio.size
                    if o.vad:
                        spans = regions(audio, o.vad_method, threshold_dbfs=o.vad_threshold_dbfs, frame_s=o.vad_frame_s,
                                        min_gap_s=o.vad_min_gap_s, pad_s=o.vad_pad_s, min_speech_s=o.vad_min_speech_s)
                        state.sound_s += sum(end - start for start, end in spans)
                    else:
                        spans = [(0.0, (audio.size // 160) * 160 / SAMPLE_RATE)]
                    base = int(round(offset_s * SAMPLE_RATE))
                    for chunk in plan_chunks(audio, spans):
                        work = _Work(key, index, Chunk(base + chunk.start, base + chunk.end, chunk.clips),
                                     np.ascontiguousarray(audio[chunk.start:chunk.end]))
                        while not stop.is_set():
                            try:
                                work_q.put(work, timeout=0.5)
                                break
                            except queue.Full:
                                continue
                        index += 1
        except AudioError as e:
            self._fail(key, state, events, started, f"{f.input}: {e}", bad=True)
        except ObjectError as e:
            msg = str(e)
            self._fail(key, state, events, started, msg if msg.startswith(f"{f.input}:") else f"{f.input}: {msg}", bad=False)
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001 - one file's failure must not lose the others
            log.exception("reading %s failed", f.input)
            self._fail(key, state, events, started, f"{f.input}: transcription failed: {type(e).__name__}: {e}", bad=False)
        if started:
            events.put(("total", key, index, samples))

    @staticmethod
    def _fail(key, state, events, started, msg, bad) -> None:
        if started:  # chunks may be in flight: the main thread fails the file once they are back
            events.put(("file_error", key, msg, bad))
        else:
            state.res.error, state.res.bad_input = msg, bad
            state.res.seconds = time.perf_counter() - state.t0
            events.put(("done_now", state.res))

    def _finish(self, s: _FileState, output_store: Store, on_done) -> None:
        s.finished = True
        res = s.res
        if s.error is not None:
            res.error = s.error
        else:
            parts = [s.parts[i] for i in sorted(s.parts) if s.parts[i][1].get("segments")]
            model_language = None if getattr(self.t.model, "is_multilingual", True) else "en"
            language = self.t.options.language or next((r.get("language") for _, r in parts), None) or model_language
            result = merge_results(parts, language)
            res.duration_s = s.samples / SAMPLE_RATE
            res.language = result.get("language")
            res.speech_s = sum(seg["end"] - seg["start"] for seg in result["segments"])
            res.sound_s = s.sound_s
            try:
                res.digests = write_outputs(output_store, render_outputs(result, s.f.stem, self.t.options.output_formats))
                res.status, res.outputs = Status.SUCCEEDED, layout.transcripts(s.f.stem, self.t.options.output_formats)
                marker = {k: getattr(res, k) for k in MARKER_FIELDS}
                marker.update(model=self.t.model_spec, model_id=self.t.model_id, digests=res.digests, result=result)
                write_marker(output_store, s.marker_key, marker)
                s.result = result
            except ObjectError as e:
                res.status, res.error = Status.FAILED, f"{s.f.input}: {e}"
        res.seconds = time.perf_counter() - s.t0
        res.rtf = res.seconds / res.duration_s if res.duration_s and res.status == Status.SUCCEEDED else None
        on_done(res)
        self._finish_aliases(s, output_store, on_done)

    def _finish_aliases(self, s: _FileState, output_store: Store, on_done) -> None:
        for f, res, t0 in s.aliases:
            if s.result is None:
                res.error = (s.res.error or "").replace(s.f.input, f.input, 1) or f"{f.input}: transcription failed"
                res.bad_input = s.res.bad_input
            else:
                res.duration_s, res.speech_s, res.language = s.res.duration_s, s.res.speech_s, s.res.language
                res.sound_s = s.res.sound_s
                formats = self.t.options.output_formats
                res.digests = write_outputs(output_store, render_outputs(s.result, f.stem, formats), keep_identical=True)
                res.status, res.outputs, res.cached = Status.SUCCEEDED, layout.transcripts(f.stem, formats), True
            res.seconds = time.perf_counter() - t0
            on_done(res)
        s.aliases = []


def _chunk_error(f: PlannedFile, e: BaseException) -> str:
    if isinstance(e, DecodeStalled):
        return f"{f.input}: transcription stopped: {e}"
    return f"{f.input}: transcription failed: {type(e).__name__}: {e}"

