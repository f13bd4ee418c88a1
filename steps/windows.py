"""Long recordings in bounded windows: cut a decoded stream at quiet moments, then stitch whisper's results.

Whisper decodes 30 s at a time but ``model.transcribe`` wants the whole recording, and builds its spectrogram
(an STFT of the whole file) before it starts: memory grows with the file, ~4 GB for two hours. Feeding it
windows of a few minutes, cut where the audio is quietest so no word is split, bounds peak memory by the window
instead of the file. Timestamps are shifted back to the file's clock when the pieces are stitched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from steps.audio import SAMPLE_RATE, frame_dbfs

_CUT_FRAME_S = 0.03
_QUIET_DBFS = -50.0
_MIN_QUIET_S = 0.3

__all__ = ["merge_results", "quiet_cut", "windows"]


def quiet_cut(audio: np.ndarray, earliest: int) -> int:
    """A sample index at or after ``earliest`` where the audio is quietest: the middle of the longest quiet run,
    else the centre of the quietest 0.3 s stretch. Never 0, never past the end."""
    frame = int(_CUT_FRAME_S * SAMPLE_RATE)
    levels = frame_dbfs(audio[earliest:], frame)
    if levels.size == 0:
        return audio.size
    quiet = levels < _QUIET_DBFS
    best_len, best_mid, run_start = 0, -1, None
    for i, q in enumerate(np.append(quiet, False)):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if i - run_start > best_len:
                best_len, best_mid = i - run_start, (run_start + i) // 2
            run_start = None
    if best_len * _CUT_FRAME_S < _MIN_QUIET_S:
        width = max(1, int(_MIN_QUIET_S / _CUT_FRAME_S))
        smooth = np.convolve(levels, np.ones(width) / width, mode="same")
        best_mid = int(np.argmin(smooth))
    return max(1, min(audio.size, earliest + best_mid * frame))


def windows(blocks: Iterable[np.ndarray], window_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(offset_s, audio)`` pieces of at most ``window_s`` seconds covering the stream exactly once, in order.

    A piece ends at a quiet moment in the second half of its window, so peak memory is about two windows of
    samples whatever the length of the recording.
    """
    limit = max(1, int(window_s * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    size = 0
    offset = 0
    for block in blocks:
        pending.append(block)
        size += block.size
        while size >= limit:
            buf = np.concatenate(pending)
            cut = quiet_cut(buf[:limit], earliest=limit // 2)
            yield offset / SAMPLE_RATE, buf[:cut]
            offset += cut
            rest = buf[cut:]
            pending, size = ([rest] if rest.size else []), rest.size
    if size:
        yield offset / SAMPLE_RATE, np.concatenate(pending)


def _shift(item: dict[str, Any], offset_s: float, keys: tuple[str, ...] = ("start", "end")) -> dict[str, Any]:
    out = dict(item)
    for k in keys:
        if isinstance(out.get(k), (int, float)):
            out[k] = round(out[k] + offset_s, 3)
    return out


def merge_results(parts: list[tuple[float, dict[str, Any]]], language: str | None) -> dict[str, Any]:
    """One whisper result (``text``, ``segments``, ``language``) from per-window results on the file's clock."""
    segments: list[dict[str, Any]] = []
    for offset_s, result in parts:
        for seg in result.get("segments", []):
            seg = _shift(seg, offset_s)
            if "seek" in seg:
                seg["seek"] = int(seg["seek"] + round(offset_s * SAMPLE_RATE / 160))
            if seg.get("words"):
                seg["words"] = [_shift(w, offset_s) for w in seg["words"]]
            seg["id"] = len(segments)
            segments.append(seg)
    return {"text": "".join(r.get("text", "") for _, r in parts), "segments": segments, "language": language}
