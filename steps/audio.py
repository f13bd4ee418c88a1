"""Audio decoding, probing and silence detection, all through one ffmpeg executable.

The executable is always the static build shipped by the ``imageio-ffmpeg`` wheel (a declared dependency), or
``IMAGEIO_FFMPEG_EXE`` when a user points it elsewhere, never whatever ``ffmpeg`` PATH happens to hold: a step
must behave the same on a laptop, in CI and in the image, and a hand-installed tool must not hide a missing
install step. openai-whisper's own ``load_audio`` shells out to PATH's ``ffmpeg``, so nothing here ever hands
whisper a file name: it always gets samples.

Decoding streams: :func:`stream_audio` yields blocks as ffmpeg produces them, so memory does not grow with the
length of a recording (a 6-hour file decoded whole needs ~13 GB once whisper's spectrogram is counted).
"""

from __future__ import annotations

import functools
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator

import numpy as np

from steps.defaults import VAD_FRAME_S, VAD_MIN_GAP_S, VAD_MIN_SPEECH_S, VAD_PAD_S, VAD_THRESHOLD_DBFS

SAMPLE_RATE = 16000  # whisper's input rate
HOP_LENGTH = 160  # samples per whisper mel frame (10 ms)

AUDIO_EXTENSIONS = frozenset(
    "wav mp3 flac ogg oga opus m4a aac wma webm mp4 m4v mkv mov aiff aif aifc amr 3gp caf".split()
)

#: How long ffmpeg may produce no samples at all before the decode is declared stalled.
DECODE_IDLE_TIMEOUT_S = 120.0

__all__ = [
    "AUDIO_EXTENSIONS",
    "SAMPLE_RATE",
    "AudioError",
    "ffmpeg_exe",
    "is_audio_name",
    "load_audio",
    "probe_duration",
    "speech_regions",
    "stream_audio",
]


class AudioError(ValueError):
    """The input is not decodable audio. The message says why in one line."""


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg  # honours IMAGEIO_FFMPEG_EXE

    return imageio_ffmpeg.get_ffmpeg_exe()


def is_audio_name(name: str) -> bool:
    return "." in name and name.rsplit(".", 1)[1].lower() in AUDIO_EXTENSIONS


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def probe_duration(src: str, timeout_s: float = 60) -> float | None:
    """Duration in seconds from the container header, or None when ffmpeg cannot tell (or it is not audio).

    ``src`` is a local path or a loopback URL (see ``steps.s3media``): ffmpeg reads only the header.
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
    return lines[-1].split(": ", 1)[-1] if lines else "ffmpeg failed"


def stream_audio(
    path: str,
    block_s: float = 30.0,
    max_seconds: float | None = None,
    idle_timeout_s: float = DECODE_IDLE_TIMEOUT_S,
) -> Iterator[np.ndarray]:
    """Decode any container/codec ffmpeg knows into 16 kHz mono float32 blocks (whisper's input), as it goes.

    Raises :class:`AudioError` for empty files, non-audio data, files longer than ``max_seconds`` and decodes
    that stall for ``idle_timeout_s``. A reader thread feeds a small bounded queue, so ffmpeg runs at most a few
    blocks ahead of the consumer and every wait has a deadline.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise AudioError("empty file (0 bytes)")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-threads", "0", "-i", path]
    if max_seconds is not None:
        # Decode one second past the limit so we can tell "too long" from "exactly at the limit".
        cmd += ["-t", str(max_seconds + 1)]
    cmd += ["-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    block_bytes = max(2, int(block_s * SAMPLE_RATE) * 2)
    blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    stderr = bytearray()
    stop = threading.Event()

    def put(item: bytes | None) -> None:
        while not stop.is_set():  # the consumer may have given up: never block forever on a full queue
            try:
                blocks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read_stdout() -> None:
        assert proc.stdout is not None
        while not stop.is_set():
            data = proc.stdout.read(block_bytes)
            if not data:
                break
            put(data)
        put(None)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            if len(stderr) < 64 * 1024:  # ffmpeg can repeat a warning per frame; keep the head
                stderr.extend(line)

    readers = [threading.Thread(target=fn, daemon=True) for fn in (read_stdout, read_stderr)]
    for t in readers:
        t.start()
    samples = 0
    carry = b""
    try:
        while True:
            try:
                data = blocks.get(timeout=idle_timeout_s)
            except queue.Empty:
                raise AudioError(f"decoding stalled: ffmpeg produced no audio for {idle_timeout_s:g} s") from None
            if data is None:
                break
            data, carry = carry + data, b""
            if len(data) % 2:
                data, carry = data[:-1], data[-1:]
            block = np.frombuffer(data, np.int16).astype(np.float32) / 32768.0
            samples += block.size
            if max_seconds is not None and samples > max_seconds * SAMPLE_RATE:
                raise AudioError(f"audio is longer than the limit of {max_seconds:.0f} s")
            if block.size:
                yield block
        try:
            proc.wait(timeout=idle_timeout_s)
        except subprocess.TimeoutExpired:
            raise AudioError(f"decoding stalled: ffmpeg did not exit within {idle_timeout_s:g} s") from None
        readers[1].join(timeout=5)
        if proc.returncode != 0:
            raise AudioError(f"not decodable audio: {_ffmpeg_reason(bytes(stderr))}")
        if samples == 0:
            raise AudioError("no audio samples (the file has no audio stream or is empty)")
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def load_audio(path: str, max_seconds: float | None = None) -> np.ndarray:
    """The whole recording as one array: for short clips (tests, tools). Steps stream with :func:`stream_audio`."""
    return np.concatenate(list(stream_audio(path, max_seconds=max_seconds)))


def frame_dbfs(audio: np.ndarray, frame: int) -> np.ndarray:
    """Level of each whole ``frame``-sample frame in dB relative to full scale."""
    n = audio.size // frame
    frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1)) if n else np.zeros(0)
    return 20 * np.log10(np.maximum(rms, 1e-10))


def speech_regions(
    audio: np.ndarray,
    threshold_dbfs: float = VAD_THRESHOLD_DBFS,
    frame_s: float = VAD_FRAME_S,
    min_gap_s: float = VAD_MIN_GAP_S,
    pad_s: float = VAD_PAD_S,
    min_speech_s: float = VAD_MIN_SPEECH_S,
) -> list[tuple[float, float]]:
    """Spans (seconds) whose energy rises above ``threshold_dbfs``: a deliberately simple energy gate.

    Whisper invents words for silence (tiny.en says "you" to 20 s of digital silence). Decoding only these spans
    (whisper's ``clip_timestamps``) and returning nothing when there are none removes that failure without an
    extra model. Quiet-but-not-silent recordings stay one long span, which is the safe direction.

    No span ends past the last whole mel frame of the audio: whisper rounds a clip end to frames, and an end one
    frame past the content leaves it an empty chunk that never advances (an endless loop on any recording whose
    speech runs to its very end, e.g. one cut mid-word).

    The transcribe step passes every threshold from ``TranscribeOptions``, so they are part of the transcript
    cache key; the defaults (``steps/defaults.py``) serve tools and tests.
    """
    frame = max(1, int(frame_s * SAMPLE_RATE))
    loud = frame_dbfs(audio, frame) > threshold_dbfs
    spans: list[list[float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * frame_s, (i + 1) * frame_s
        if spans and start - spans[-1][1] <= min_gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    content_end = (audio.size // HOP_LENGTH) * HOP_LENGTH / SAMPLE_RATE
    clipped = [(max(0.0, s - pad_s), min(content_end, e + pad_s)) for s, e in spans if e - s >= min_speech_s]
    return [(s, e) for s, e in clipped if e - s >= HOP_LENGTH / SAMPLE_RATE]
