"""Speech segmentation: which spans of a recording to decode, and how to cut them into <= 30 s chunks.

Two segmenters share one contract (sorted, non-overlapping ``(start_s, end_s)`` spans on the audio's clock, none
ending past the last whole mel frame, none at all for silence):

* ``energy``: ``steps.audio.speech_regions``, the level gate the sequential engine always used (no model).
* ``silero``: the Silero VAD neural model (PyPI ``silero-vad``, which ships its weights; torch only). It tells
  speech from noise, music and breathing, which a level gate cannot.

:func:`plan_chunks` groups spans into chunks of at most 30 s (whisper's context) that begin and end at the
spans' natural pauses; a span longer than 30 s (speech with no pause of ``min_gap_s``) is cut at its quietest
moment. Each chunk keeps its spans as whisper ``clip_timestamps``, so the silence between them is not decoded.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from steps.audio import HOP_LENGTH, SAMPLE_RATE, speech_regions
from steps.defaults import SILERO_THRESHOLD
from steps.windows import quiet_cut

CHUNK_S = 30.0
SEGMENTERS = ("energy", "silero")

__all__ = ["CHUNK_S", "SEGMENTERS", "Chunk", "plan_chunks", "regions", "silero_regions"]

_SILERO_LOCK = threading.Lock()


@functools.cache
def _silero_model():
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("the silero segmenter needs the silero-vad package (pip install silero-vad)") from e
    return load_silero_vad()


def silero_regions(audio: np.ndarray, *, min_gap_s: float, pad_s: float, min_speech_s: float,
                   threshold: float = SILERO_THRESHOLD) -> list[tuple[float, float]]:
    """Speech spans found by Silero VAD, merged across pauses shorter than ``min_gap_s`` and padded by ``pad_s``."""
    import torch
    from silero_vad import get_speech_timestamps

    if audio.size < 512:
        return []
    with _SILERO_LOCK, torch.inference_mode():  # the model carries recurrent state: one caller at a time
        model = _silero_model()
        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio)), model, threshold=threshold,
                                       sampling_rate=SAMPLE_RATE, min_speech_duration_ms=int(min_speech_s * 1000),
                                       min_silence_duration_ms=100, speech_pad_ms=0)
    spans: list[list[float]] = []
    for s in stamps:
        start, end = s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE
        if spans and start - spans[-1][1] <= min_gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    content_end = (audio.size // HOP_LENGTH) * HOP_LENGTH / SAMPLE_RATE
    clipped = [(max(0.0, s - pad_s), min(content_end, e + pad_s)) for s, e in spans]
    return [(s, e) for s, e in clipped if e - s >= HOP_LENGTH / SAMPLE_RATE]


def regions(audio: np.ndarray, method: str, *, threshold_dbfs: float, frame_s: float, min_gap_s: float,
            pad_s: float, min_speech_s: float) -> list[tuple[float, float]]:
    if method == "energy":
        return speech_regions(audio, threshold_dbfs=threshold_dbfs, frame_s=frame_s, min_gap_s=min_gap_s,
                              pad_s=pad_s, min_speech_s=min_speech_s)
    if method == "silero":
        return silero_regions(audio, min_gap_s=min_gap_s, pad_s=pad_s, min_speech_s=min_speech_s)
    raise ValueError(f"unknown segmenter {method!r}: choose one of {', '.join(SEGMENTERS)}")


@dataclass
class Chunk:
    """At most ``CHUNK_S`` seconds of one recording: ``[start, end)`` samples and the spans to decode in it
    (seconds, relative to ``start``)."""

    start: int
    end: int
    clips: list[tuple[float, float]]

    @property
    def offset_s(self) -> float:
        return self.start / SAMPLE_RATE


def _frame_floor(t: float) -> int:
    return int(t * SAMPLE_RATE) // HOP_LENGTH * HOP_LENGTH


def _frame_ceil(t: float) -> int:
    return -(-int(round(t * SAMPLE_RATE)) // HOP_LENGTH) * HOP_LENGTH


def _split_long(audio: np.ndarray, start: float, end: float, max_s: float) -> list[tuple[float, float]]:
    """A span longer than ``max_s`` as pieces of at most ``max_s``, each cut at its quietest moment."""
    pieces = []
    limit = int(max_s * SAMPLE_RATE) - HOP_LENGTH
    a = _frame_floor(start)
    b = min(audio.size, _frame_ceil(end))
    while b - a > limit:
        cut = quiet_cut(audio[a:a + limit], earliest=limit // 2)
        cut = max(HOP_LENGTH, cut // HOP_LENGTH * HOP_LENGTH)
        pieces.append((a / SAMPLE_RATE, (a + cut) / SAMPLE_RATE))
        a += cut
    pieces.append((a / SAMPLE_RATE, min(end, b / SAMPLE_RATE)))
    return pieces


def plan_chunks(audio: np.ndarray, spans: list[tuple[float, float]], max_s: float = CHUNK_S) -> list[Chunk]:
    """Group ``spans`` into chunks of at most ``max_s`` seconds that start and end on frame boundaries."""
    pieces: list[tuple[float, float]] = []
    for s, e in spans:
        pieces.extend(_split_long(audio, s, e, max_s) if e - s > max_s - 0.02 else [(s, e)])
    chunks: list[Chunk] = []
    group: list[tuple[float, float]] = []

    def close() -> None:
        if not group:
            return
        start = _frame_floor(group[0][0])
        end = min(audio.size, _frame_ceil(group[-1][1]))
        content_end = (end - start) // HOP_LENGTH * HOP_LENGTH / SAMPLE_RATE
        clips = [(round(max(0.0, s - start / SAMPLE_RATE), 3), round(min(content_end, e - start / SAMPLE_RATE), 3))
                 for s, e in group]
        clips = [(s, e) for s, e in clips if e - s >= HOP_LENGTH / SAMPLE_RATE]
        if clips:
            chunks.append(Chunk(start, end, clips))
        group.clear()

    for s, e in pieces:
        if group and e - group[0][0] > max_s - 0.02:
            close()
        group.append((s, e))
    close()
    return chunks
