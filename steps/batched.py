"""The batched engine: every file of a shard cut into <= 30 s chunks, decoded together in batches.

How it works (one process = one pod; the model is loaded and warmed once):

* A **reader** thread streams each file (``steps.audio.stream_audio``, bounded windows as the sequential engine),
  finds its speech (``steps.vad``), cuts it into chunks of at most 30 s on natural pauses and queues them. Files
  are read ahead only as far as the bounded queue allows, so memory does not grow with the shard. A file whose
  transcript is already known (marker) is never decoded; a file with the same bytes as one in flight waits for
  it and is written from its result.
* One **decoder** thread keeps up to a batch of chunks in flight, each running openai-whisper's own transcribe
  loop (``steps.chunk_transcribe``: its segmenting, temperature fallback, thresholds, word timestamps and
  hallucination-silence rules, with the chunk's speech spans as ``clip_timestamps``), and makes the model calls
  of all of them together: one batched encoder pass and one KV-cached search per step (``steps.batch_decoder``),
  one alignment pass for their word timings (``steps.batch_alignment``). A temperature-fallback retry forms its
  own batch, so fallback re-decodes only the windows that failed, together. Only this thread touches the model.
* When a file's last chunk is done, the main thread stitches its chunks on the file's clock, writes
  txt/srt/vtt/json with whisper's writers and then the marker, at once: not at the end of the shard.

The batch size comes from free device memory on CUDA (:func:`auto_batch_size`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from steps import layout
from steps.audio import SAMPLE_RATE, AudioError, stream_audio
from steps.batch_alignment import AlignmentRequest, align_batch
from steps.batch_decoder import decode_with_features
from steps.chunk_transcribe import ChunkBatcher, ChunkTranscript
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
#: Upper bound on CUDA whatever the free memory. A decode step costs about the same for 8 windows as for 128 (the
#: host launching kernels sets its pace, bench/README.md), so bigger batches are nearly free throughput.
MAX_GPU_BATCH = 128
#: Files read at once (ffmpeg decode, hash, segmenter), at most one per core.
READERS = 8
#: The longest the decoder waits for the readers to fill a batch before decoding a partial one. Readers run while
#: the decoder waits (they take turns, see ``run``), and a step costs about the same for a full batch as for a few
#: windows, so waiting for a full batch loses nothing unless the readers stall.
FILL_WAIT_S = 10.0

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
    """Runs a shard's files through the chunk batcher. ``transcriber`` is a ``steps.transcribe.Transcriber``."""

    def __init__(self, transcriber, batch_size: int = 0):
        self.t = transcriber
        self.requested_batch = batch_size
        self.batch_sizes: list[int] = []
        self.decode_seconds: list[float] = []
        self.warmup_s: float | None = None
        self._warm = False
        self._readers_may_run = threading.Event()

    # --- the shard ---------------------------------------------------------------------------------------------

    def run(self, files: list[PlannedFile], input_store: Store, output_store: Store, on_done, on_start=None,
            on_progress=None) -> None:
        """Transcribe ``files``; ``on_done(FileResult)`` is called (in this thread) as each file completes, and
        ``on_progress(input, done_s, duration_s)`` (in the decoder thread) as each chunk finishes: ``done_s`` is
        the end of that chunk on the file's clock (chunks finish out of order), ``duration_s`` the plan's."""
        model = self.t.model
        o = self.t.options
        batch = self.requested_batch or auto_batch_size(model, self.t.device, o.beam_size)
        batcher = ChunkBatcher(model, batch)
        readers = max(1, min(READERS, os.cpu_count() or 1))
        events: queue.Queue = queue.Queue()
        work_q: queue.Queue = queue.Queue(maxsize=2 * batch)
        stop = threading.Event()
        # Readers and decoder take turns: every op the decoder launches hands the GIL over, and a reader thread
        # running Python (segmenter, chunking) then holds it for up to the switch interval, which made each decode
        # several times slower inside the engine than alone (bench/README.md). The readers run while the decoder
        # waits for a batch, and stop at their next chunk while a batch is on the model.
        self._readers_may_run.set()

        def decoder() -> None:
            try:
                self._decode_chunks(files, batcher, batch, work_q, events, stop, on_progress)
            except BaseException as e:  # noqa: BLE001 - the step fails, in the main thread
                events.put(("fatal", e))

        def reader() -> None:
            in_flight: dict[str, int] = {}  # cache key -> file key of the first file with these bytes
            lock = threading.Lock()
            try:  # files are read (ffmpeg, hash, segmenter) several at a time, so batches fill while the GPU works
                with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="chunk-reader") as pool:
                    reads = [pool.submit(self._read_file, key, f, input_store, output_store, work_q, events, in_flight,
                                         lock, stop) for key, f in enumerate(files)]
                    for r in reads:
                        r.result()
            except BaseException as e:  # noqa: BLE001 - a store outage fails the step, in the main thread
                events.put(("fatal", e))
            finally:
                _put(work_q, None, stop)  # no more chunks
                events.put(("reader_done",))

        states: dict[int, _FileState] = {}
        fatal: BaseException | None = None
        dec = threading.Thread(target=decoder, name="chunk-decoder", daemon=True)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="FP16 is not supported on CPU")
                self._warm_up(batch)
                dec.start()
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
            if dec.is_alive():
                dec.join(timeout=60)
            self.batch_sizes.extend(batcher.batches)
            self.decode_seconds.extend(batcher.seconds)

    def _decode_chunks(self, files, batcher: ChunkBatcher, batch: int, work_q, events, stop, on_progress) -> None:
        """The decoder thread: keeps up to ``batch`` chunks in flight and steps them with batched model calls."""
        model = self.t.model
        if self.t.threads > 0:  # OpenMP's thread count is per thread: set it where the work runs
            import torch

            torch.set_num_threads(self.t.threads)
        active: list[tuple[_Work, ChunkTranscript]] = []
        more = True
        while not stop.is_set():
            deadline = time.monotonic() + FILL_WAIT_S
            while more and len(active) < batch:
                wait = deadline - time.monotonic()
                if active and wait <= 0:
                    break
                try:
                    work = work_q.get(timeout=min(0.5, wait) if active else 0.5)
                except queue.Empty:
                    if stop.is_set():
                        break
                    continue
                if work is None:
                    more = False
                    break
                try:
                    active.append((work, ChunkTranscript.start(work.audio, work.chunk.clips, model, self.t.options,
                                                               fp16=self.t.device == "cuda")))
                except Exception as e:  # noqa: BLE001 - that file fails, the shard goes on
                    events.put(("chunk_error", work.key, work.index, e))
            if not active:
                if not more:
                    return
                continue
            self._readers_may_run.clear()
            try:
                errors = batcher.step([c for _, c in active])
            finally:
                self._readers_may_run.set()
            keep = []
            for i, (work, chunk) in enumerate(active):
                if i in errors:
                    events.put(("chunk_error", work.key, work.index, errors[i]))
                elif chunk.done:
                    events.put(("chunk", work.key, work.index, work.chunk.offset_s, chunk.result()))
                    if on_progress is not None:
                        f = files[work.key]
                        on_progress(f.input, work.chunk.end / SAMPLE_RATE, f.duration_s)
                else:
                    keep.append((work, chunk))
            active = keep

    def _warm_up(self, batch: int) -> None:
        """One full-size batch decode of noise: CUDA context, cuBLAS handles and kernels are paid once per pod."""
        if self._warm or self.t.device != "cuda":
            self._warm = True
            return
        import torch
        from whisper.audio import log_mel_spectrogram
        from whisper.decoding import DecodingOptions
        from whisper.tokenizer import get_tokenizer

        t0 = time.perf_counter()
        model = self.t.model
        noise = torch.randn(30 * SAMPLE_RATE, device=model.device) * 0.01
        mel = log_mel_spectrogram(noise, model.dims.n_mels).unsqueeze(0).repeat(batch, 1, 1)[..., :3000]
        opts = DecodingOptions(language="en" if not model.is_multilingual else None, beam_size=self.t.options.beam_size,
                               fp16=True, sample_len=8, without_timestamps=False)
        _, features = decode_with_features(model, mel, opts)
        if self.t.options.word_timestamps:  # the DTW: numba compiles it, or loads it from its cache
            tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language=opts.language)
            text = tokenizer.encode(" Warm up.")
            align_batch(model, [AlignmentRequest(tokenizer, text, features[0], 3000)])
        torch.cuda.synchronize()
        self.warmup_s = time.perf_counter() - t0
        self._warm = True

    def _read_file(self, key, f, input_store, output_store, work_q, events, in_flight, lock, stop) -> None:
        if stop.is_set():
            return
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
                with lock:  # the first file with these bytes is announced before any file can alias it
                    first = in_flight.setdefault(cache_key, key)
                    if first == key:
                        events.put(("start", key, state))
                if first != key:  # same bytes as a file of this shard: decoded once, written twice
                    events.put(("alias", first, f, res, state.t0))
                    return
                started = True
                state.sound_s = 0.0 if o.vad else None
                blocks = stream_audio(str(path), max_seconds=o.max_audio_hours * 3600)
                for offset_s, audio in windows(blocks, o.window_s):
                    if not self._turn(stop):
                        return
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
                        if not self._turn(stop):
                            return
                        _put(work_q, work, stop)
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

    def _turn(self, stop: threading.Event) -> bool:
        """Wait while the decoder has a batch on the model; False when the shard is stopping."""
        while not self._readers_may_run.wait(timeout=0.5):
            if stop.is_set():
                return False
        return not stop.is_set()

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


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    """``q.put(item)`` unless the shard is stopping (the bounded queue is how the reader waits for the decoder)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def _chunk_error(f: PlannedFile, e: BaseException) -> str:
    if isinstance(e, DecodeStalled):
        return f"{f.input}: transcription stopped: {e}"
    return f"{f.input}: transcription failed: {type(e).__name__}: {e}"

