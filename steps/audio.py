"""Audio decoding, probing and silence detection, all through one ffmpeg executable.

openai-whisper shells out to an ``ffmpeg`` found on PATH. Images and CI machines may lack one, so we resolve the
executable once (PATH first, then the static build shipped by the ``imageio-ffmpeg`` wheel) and decode with the
same arguments whisper uses.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000  # whisper's input rate

AUDIO_EXTENSIONS = frozenset(
    "wav mp3 flac ogg oga opus m4a aac wma webm mp4 m4v mkv mov aiff aif aifc amr 3gp caf".split()
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "SAMPLE_RATE",
    "AudioError",
    "ffmpeg_exe",
    "is_audio_name",
    "load_audio",
    "probe_duration",
    "speech_regions",
]


class AudioError(ValueError):
    """The input is not decodable audio. The message says why in one line."""


@functools.cache
def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise AudioError("no ffmpeg executable: install ffmpeg or the imageio-ffmpeg package") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def is_audio_name(name: str) -> bool:
    return "." in name and name.rsplit(".", 1)[1].lower() in AUDIO_EXTENSIONS


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def probe_duration(src: str, timeout_s: float = 60) -> float | None:
    """Duration in seconds from the container header, or None when ffmpeg cannot tell (or it is not audio).

    ``src`` may be a path or an http(s) URL (a presigned S3 URL): ffmpeg reads only the header.
    """
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", src],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    m = _DURATION.search(proc.stderr.decode("utf-8", "replace"))
    if not m:
        return None
    h, mnt, s = m.groups()
    return int(h) * 3600 + int(mnt) * 60 + float(s)


def _ffmpeg_reason(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Invalid data" in ln or "does not contain any stream" in ln or "could not find codec" in ln.lower():
            return ln.split(": ", 1)[-1]
    return lines[-1] if lines else "ffmpeg failed"


def load_audio(path: str, max_seconds: float | None = None) -> np.ndarray:
    """Decode any container/codec ffmpeg knows into 16 kHz mono float32, as whisper expects.

    Raises AudioError for empty files, non-audio data and files longer than ``max_seconds``.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise AudioError("empty file (0 bytes)")
    cmd = [ffmpeg_exe(), "-nostdin", "-threads", "0", "-i", path]
    if max_seconds is not None:
        # Decode one second past the limit so we can tell "too long" from "exactly at the limit".
        cmd += ["-t", str(max_seconds + 1)]
    cmd += ["-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise AudioError(f"not decodable audio: {_ffmpeg_reason(proc.stderr)}")
    audio = np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0
    if audio.size == 0:
        raise AudioError("no audio samples (the file has no audio stream or is empty)")
    if max_seconds is not None and audio.size > max_seconds * SAMPLE_RATE:
        raise AudioError(f"audio is longer than the limit of {max_seconds:.0f} s")
    return audio


def speech_regions(
    audio: np.ndarray,
    threshold_dbfs: float = -50.0,
    frame_s: float = 0.03,
    min_gap_s: float = 1.0,
    pad_s: float = 0.25,
    min_speech_s: float = 0.2,
) -> list[tuple[float, float]]:
    """Spans (seconds) whose energy rises above ``threshold_dbfs``: a deliberately simple energy gate.

    Whisper invents words for silence (tiny.en says "you" to 20 s of digital silence). Decoding only these spans
    (whisper's ``clip_timestamps``) and returning nothing when there are none removes that failure without an
    extra model. Quiet-but-not-silent recordings stay one long span, which is the safe direction.
    """
    frame = max(1, int(frame_s * SAMPLE_RATE))
    n = audio.size // frame
    if n == 0:
        return []
    frames = audio[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-10)) > threshold_dbfs
    spans: list[list[float]] = []
    idx = np.flatnonzero(loud)
    for i in idx:
        start, end = i * frame_s, (i + 1) * frame_s
        if spans and start - spans[-1][1] <= min_gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    total = audio.size / SAMPLE_RATE
    return [
        (max(0.0, s - pad_s), min(total, e + pad_s)) for s, e in spans if e - s >= min_speech_s
    ]
