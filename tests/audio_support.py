"""Audio the tests make: recordings written from samples (cuts, gaps, stitched corpora)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from steps.audio import SAMPLE_RATE


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """``samples`` (float, 16 kHz mono) as a 16-bit wav at ``path``."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path
