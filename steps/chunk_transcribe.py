"""openai-whisper's ``transcribe`` loop run for many chunks at once, its model calls made for all of them together.

Whisper transcribes a recording window by window: decode 30 s (retrying at higher temperatures when the result
fails its compression-ratio or log-probability check), cut the tokens into segments at timestamp pairs, time the
words, skip what its no-speech and hallucination rules reject, and seek to where the next window starts. Each step
of that loop waits for one model call on one window, so a GPU sees batches of one.

Here each chunk (at most 30 s of one file, with its speech spans as whisper's ``clip_timestamps``:
``steps.vad``) is a :class:`ChunkTranscript`: whisper's loop turned inside out, holding its seek, clip, tokens and
segments between steps. :class:`ChunkBatcher` takes the pending windows of many chunks, decodes those that share
decoding options in one batch (``steps.batch_decoder``: one encoder pass, one KV-cached search), times the words
of every window that produced text in one more pass (``steps.batch_alignment``), and steps every chunk on with
whisper's own rules, its own ``add_word_timestamps`` included. A temperature-fallback retry is a window with other
options, so retries form batches of their own and only the windows that failed are decoded again. Everything runs
in one thread: the model is never shared, and the GPU is fed from one place.

The loop body follows ``whisper.transcribe.transcribe`` of openai-whisper 20250625 (fallback, no-speech skip,
segment cutting, word timestamps, ``hallucination_silence_threshold``, blank segments cleared), per window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steps.batch_alignment import AlignmentRequest, align_batch
from steps.batch_decoder import decode_with_features
from steps.whisper_outputs import EMPTY_CHUNK, DecodeStalled, decode_budget

__all__ = ["ChunkBatcher", "ChunkTranscript"]

#: whisper.transcribe's punctuation, which its hallucination rule does not count as words
_PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"


@dataclass
class _Pending:
    """What a decoded window left for the word-timing pass and the rest of whisper's loop body."""

    result: Any
    segments: list[dict]
    single_timestamp_ending: bool
    previous_seek: int
    segment_size: int
    time_offset: float
    window_end_time: float
    words: AlignmentRequest | None = None


@dataclass
class ChunkTranscript:
    """Whisper's transcribe loop for one chunk, advanced one window at a time by :class:`ChunkBatcher`."""

    model: Any
    options: Any  # steps.transcribe.TranscribeOptions (duck-typed: this module does not import the step)
    fp16: bool
    mel: Any = None  # the chunk's log-mel on the model's device, padded with 30 s as whisper pads it
    seek_clips: list[tuple[int, int]] = field(default_factory=list)
    clip_idx: int = 0
    seek: int = 0
    content_frames: int = 0
    language: str | None = None
    initial_prompt_tokens: list[int] = field(default_factory=list)
    all_tokens: list[int] = field(default_factory=list)
    all_segments: list[dict] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    t_index: int = 0  # which temperature of the fallback schedule the current window is decoded at
    decodes: int = 0
    budget: int = 0
    done: bool = False
    pending: _Pending | None = None

    @classmethod
    def start(cls, audio: np.ndarray, clips: list[tuple[float, float]], model, options, fp16: bool):
        """A chunk's loop at its first window (``clips``: its speech spans in seconds, whisper's clip_timestamps)."""
        import torch
        from whisper.audio import FRAMES_PER_SECOND, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram

        c = cls(model=model, options=options, fp16=fp16)
        c.mel = log_mel_spectrogram(torch.from_numpy(audio).to(model.device), model.dims.n_mels, padding=N_SAMPLES)
        c.content_frames = c.mel.shape[-1] - N_FRAMES
        if c.content_frames <= 0:
            raise DecodeStalled(EMPTY_CHUNK)
        points = [round(t * FRAMES_PER_SECOND) for span in clips for t in span] or [0]
        if len(points) % 2:
            points.append(c.content_frames)
        c.seek_clips = list(zip(points[::2], points[1::2]))
        c.seek = c.seek_clips[0][0]
        c.language = options.language or (None if model.is_multilingual else "en")
        if options.initial_prompt:
            c.initial_prompt_tokens = c.tokenizer.encode(" " + options.initial_prompt.strip())
        c.all_tokens = list(c.initial_prompt_tokens)
        # the sequential engine's guard: a loop that does not advance is stopped, not waited on
        c.budget = decode_budget(len(options.temperature), audio.size / SAMPLE_RATE, len(clips))
        c._next_window()
        return c

    @property
    def tokenizer(self):
        from whisper.tokenizer import get_tokenizer

        return get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                             language=self.language, task=self.options.task)

    # --- the loop head: which window is next ---------------------------------------------------------------------

    def _next_window(self) -> None:
        while self.clip_idx < len(self.seek_clips):
            clip_start, clip_end = self.seek_clips[self.clip_idx]
            self.seek = max(self.seek, clip_start)
            if self.seek < clip_end:
                return
            self.clip_idx += 1
            if self.clip_idx < len(self.seek_clips):
                self.seek = self.seek_clips[self.clip_idx][0]
        self.done = True

    def window(self):
        """``(mel, segment_size)``: the current window, padded to 30 s."""
        import torch
        from whisper.audio import N_FRAMES, pad_or_trim

        size = min(N_FRAMES, self.content_frames - self.seek, self.seek_clips[self.clip_idx][1] - self.seek)
        if size <= 0:  # a clip that ends past the audio: whisper would decode padding here, forever
            raise DecodeStalled(EMPTY_CHUNK)
        mel = pad_or_trim(self.mel[:, self.seek: self.seek + size], N_FRAMES)
        return mel.to(torch.float16 if self.fp16 else torch.float32), size

    def decoding_options(self):
        """whisper's ``DecodingOptions`` for the current window at its fallback temperature."""
        from whisper.decoding import DecodingOptions

        o = self.options
        t = o.temperature[self.t_index]
        kwargs: dict[str, Any] = dict(task=o.task, language=self.language, fp16=self.fp16,
                                      prompt=self.all_tokens[self.prompt_reset_since:], temperature=t)
        if t > 0:
            kwargs["best_of"] = o.best_of
        else:
            kwargs["beam_size"] = o.beam_size
        return DecodingOptions(**kwargs)

    def batch_key(self) -> tuple:
        """Windows with equal keys decode in one batch."""
        return (self.t_index, self.language, tuple(self.all_tokens[self.prompt_reset_since:]))

    # --- after the decode ---------------------------------------------------------------------------------------

    def take(self, result, audio_features, segment_size: int) -> None:
        """Whisper's loop body up to the word timings, for ``result``, the decode of the current window
        (``audio_features``: the encoder's output for it)."""
        import torch
        from whisper.audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE

        o = self.options
        self.decodes += 1
        if self.decodes > self.budget:
            raise DecodeStalled(f"whisper made {self.decodes} decode calls for one chunk without finishing")
        if self.language is None:  # detected on the chunk's first window, then kept (whisper: once per call)
            self.language = result.language
        needs_fallback = ((o.compression_ratio_threshold is not None
                           and result.compression_ratio > o.compression_ratio_threshold)
                          or (o.logprob_threshold is not None and result.avg_logprob < o.logprob_threshold))
        if (o.no_speech_threshold is not None and result.no_speech_prob > o.no_speech_threshold
                and o.logprob_threshold is not None and result.avg_logprob < o.logprob_threshold):
            needs_fallback = False  # silence
        if needs_fallback and self.t_index + 1 < len(o.temperature):
            self.t_index += 1
            return
        self.t_index = 0
        if o.no_speech_threshold is not None and result.no_speech_prob > o.no_speech_threshold and not (
                o.logprob_threshold is not None and result.avg_logprob > o.logprob_threshold):
            self.seek += segment_size  # whisper's no-voice skip
            self._next_window()
            return

        tokenizer = self.tokenizer
        stride = N_FRAMES // self.model.dims.n_audio_ctx
        precision = stride * HOP_LENGTH / SAMPLE_RATE
        time_offset = float(self.seek * HOP_LENGTH / SAMPLE_RATE)
        window_end_time = float((self.seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE)
        tokens = torch.tensor(result.tokens)
        previous_seek = self.seek
        segments: list[dict] = []

        def segment(start: float, end: float, seg_tokens) -> dict:
            seg_tokens = seg_tokens.tolist()
            return {"seek": previous_seek, "start": start, "end": end,
                    "text": tokenizer.decode([t for t in seg_tokens if t < tokenizer.eot]), "tokens": seg_tokens,
                    "temperature": result.temperature, "avg_logprob": result.avg_logprob,
                    "compression_ratio": result.compression_ratio, "no_speech_prob": result.no_speech_prob}

        is_ts = tokens.ge(tokenizer.timestamp_begin)
        single_timestamp_ending = is_ts[-2:].tolist() == [False, True]
        consecutive = (torch.where(is_ts[:-1] & is_ts[1:])[0] + 1).tolist()
        if consecutive:
            slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
            last = 0
            for current in slices:
                piece = tokens[last:current]
                segments.append(segment(time_offset + (piece[0].item() - tokenizer.timestamp_begin) * precision,
                                        time_offset + (piece[-1].item() - tokenizer.timestamp_begin) * precision,
                                        piece))
                last = current
            if single_timestamp_ending:
                self.seek += segment_size
            else:  # the last segment is unfinished: the next window starts at its timestamp
                self.seek += (tokens[last - 1].item() - tokenizer.timestamp_begin) * stride
        else:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            stamps = tokens[is_ts.nonzero().flatten()]
            if len(stamps) > 0 and stamps[-1].item() != tokenizer.timestamp_begin:
                duration = (stamps[-1].item() - tokenizer.timestamp_begin) * precision
            segments.append(segment(time_offset, time_offset + duration, tokens))
            self.seek += segment_size
        self.pending = _Pending(result, segments, single_timestamp_ending, previous_seek, segment_size, time_offset,
                                window_end_time)
        if o.word_timestamps and segments:
            text = [t for s in segments for t in s["tokens"] if t < tokenizer.eot]
            self.pending.words = AlignmentRequest(tokenizer, text, audio_features, segment_size)
        else:
            self.finish(None)

    def finish(self, alignment: list | None) -> None:
        """The rest of the loop body, with the word timings of the window (``None`` without word timestamps)."""
        from whisper.audio import FRAMES_PER_SECOND
        from whisper.utils import get_end

        p, o = self.pending, self.options
        self.pending = None
        segments = p.segments
        if alignment is not None:
            _add_words(segments, self.model, self.tokenizer, p.words, alignment, self.last_speech_timestamp)
            if not p.single_timestamp_ending:
                last_word_end = get_end(segments)
                if last_word_end is not None and last_word_end > p.time_offset:
                    self.seek = round(last_word_end * FRAMES_PER_SECOND)
            threshold = o.hallucination_silence_threshold
            if threshold is not None and self._skip_hallucination(p, threshold):
                self._next_window()
                return
            last_word_end = get_end(segments)
            if last_word_end is not None:
                self.last_speech_timestamp = last_word_end
        for s in segments:  # an instantaneous or blank segment is cleared, as whisper does
            if s["start"] == s["end"] or s["text"].strip() == "":
                s["text"], s["tokens"], s["words"] = "", [], []
        self.all_segments.extend({"id": i, **s} for i, s in enumerate(segments, start=len(self.all_segments)))
        self.all_tokens.extend(t for s in segments for t in s["tokens"])
        if not o.condition_on_previous_text or p.result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)
        self._next_window()

    def _skip_hallucination(self, p: _Pending, threshold: float) -> bool:
        """whisper's ``hallucination_silence_threshold`` rules for this window; True when the window is dropped."""
        from whisper.audio import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE
        from whisper.utils import get_end

        segments = p.segments
        segment_duration = p.segment_size * HOP_LENGTH / SAMPLE_RATE
        content_duration = float(self.content_frames * HOP_LENGTH / SAMPLE_RATE)
        if not p.single_timestamp_ending:
            last_word_end = get_end(segments)
            if last_word_end is not None and last_word_end > p.time_offset:
                if p.window_end_time - last_word_end > threshold:
                    self.seek = round(last_word_end * FRAMES_PER_SECOND)
                else:
                    self.seek = p.previous_seek + p.segment_size
        first = _next_words_segment(segments)
        if first is not None and _is_anomaly(first):
            gap = first["start"] - p.time_offset
            if gap > threshold:
                self.seek = p.previous_seek + round(gap * FRAMES_PER_SECOND)
                return True
        hal_last_end = self.last_speech_timestamp
        for si, s in enumerate(segments):
            if not s["words"]:
                continue
            if _is_anomaly(s):
                following = _next_words_segment(segments[si + 1:])
                hal_next_start = following["words"][0]["start"] if following is not None else \
                    p.time_offset + segment_duration
                silence_before = (s["start"] - hal_last_end > threshold or s["start"] < threshold
                                  or s["start"] - p.time_offset < 2.0)
                silence_after = (hal_next_start - s["end"] > threshold or _is_anomaly(following)
                                 or p.window_end_time - s["end"] < 2.0)
                if silence_before and silence_after:
                    self.seek = round(max(p.time_offset + 1, s["start"]) * FRAMES_PER_SECOND)
                    if content_duration - s["end"] < threshold:
                        self.seek = self.content_frames
                    segments[si:] = []
                    break
            hal_last_end = s["end"]
        return False

    def result(self) -> dict[str, Any]:
        """Whisper's result dict for the chunk (times relative to its start)."""
        text_tokens = self.all_tokens[len(self.initial_prompt_tokens):]
        return {"text": self.tokenizer.decode(text_tokens), "segments": self.all_segments, "language": self.language}


def _word_anomaly(word: dict) -> float:
    probability = word.get("probability", 0.0)
    duration = word["end"] - word["start"]
    score = 0.0
    if probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _is_anomaly(segment: dict | None) -> bool:
    if segment is None or not segment["words"]:
        return False
    words = [w for w in segment["words"] if w["word"] not in _PUNCTUATION][:8]
    score = sum(_word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: list[dict]) -> dict | None:
    return next((s for s in segments if s["words"]), None)


def _add_words(segments, model, tokenizer, request: AlignmentRequest, alignment: list, last_speech: float) -> None:
    """whisper's own ``add_word_timestamps`` on ``segments``, with the timings already computed in a batch."""
    from whisper import timing

    own = timing.find_alignment

    def precomputed(model, tokenizer, text_tokens, *args, **kwargs):  # anyone else's call still gets whisper's own
        return list(alignment) if list(text_tokens) == request.text_tokens else own(model, tokenizer, text_tokens,
                                                                                     *args, **kwargs)

    timing.find_alignment = precomputed
    try:
        timing.add_word_timestamps(segments=segments, model=model, tokenizer=tokenizer, mel=None,
                                   num_frames=request.num_frames, last_speech_timestamp=last_speech)
    finally:
        timing.find_alignment = own


class ChunkBatcher:
    """Steps many :class:`ChunkTranscript` loops with batched model calls; one thread at a time."""

    def __init__(self, model, max_batch: int):
        self.model = model
        self.max_batch = max_batch
        self.batches: list[int] = []  # sizes of the batched decodes, for the benchmark
        self.seconds: list[float] = []  # and how long each took

    def step(self, active: list[ChunkTranscript]) -> dict[int, BaseException]:
        """One batched decode of the windows that share the first chunk's options (the oldest, so that files
        finish in order), then their word timings in one pass; returns the errors of chunks that failed, by
        position in ``active``. Finished chunks have ``done`` set."""
        import torch

        first = active[0].batch_key()
        members = [i for i, c in enumerate(active) if c.batch_key() == first][: self.max_batch]
        errors: dict[int, BaseException] = {}
        windows = {}
        for i in members:
            try:
                windows[i] = active[i].window()
            except Exception as e:  # noqa: BLE001 - that chunk fails, the batch goes on
                errors[i] = e
        members = [i for i in members if i in windows]
        if not members:
            return errors
        t0 = time.perf_counter()
        try:
            results, features = decode_with_features(self.model, torch.stack([windows[i][0] for i in members]),
                                                     active[members[0]].decoding_options())
        except Exception as e:  # noqa: BLE001 - handed to every chunk of the batch
            return {**errors, **{i: e for i in members}}
        self.batches.append(len(members))
        self.seconds.append(time.perf_counter() - t0)
        timed = []
        for row, (i, result) in enumerate(zip(members, results)):
            try:
                active[i].take(result, features[row], windows[i][1])
                if active[i].pending is not None:
                    timed.append(i)
            except Exception as e:  # noqa: BLE001
                errors[i] = e
        if timed:
            try:
                alignments = align_batch(self.model, [active[i].pending.words for i in timed])
            except Exception as e:  # noqa: BLE001
                return {**errors, **{i: e for i in timed}}
            for i, alignment in zip(timed, alignments):
                try:
                    active[i].finish(alignment)
                except Exception as e:  # noqa: BLE001
                    errors[i] = e
        return errors
