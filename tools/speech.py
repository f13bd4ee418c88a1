"""Synthetic speech for the project's own test and benchmark audio: espeak-ng reads a text, ffmpeg (the build
kubescribe decodes with, ``steps.audio.ffmpeg_exe``) encodes it as 16 kHz mono Ogg/Opus, small enough to check in
or carry to a GPU machine. Used by ``bench/corpus.py`` and ``tools/summary_recordings.py``; neither tests nor CI
need espeak-ng, because what it makes is checked in or made on demand.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from steps.audio import ffmpeg_exe

#: Opus at 24 kbit/s: speech stays clear for Whisper, a minute is under 200 kB.
BITRATE = "24k"


def speak(text: str, voice: str, rate_wpm: int, dest: Path) -> Path:
    """Write ``text`` read by espeak-ng (``voice``, ``rate_wpm`` words per minute) to ``dest`` as Ogg/Opus."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not on PATH (Debian: apt-get install -y espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav, txt = Path(tmp) / "speech.wav", Path(tmp) / "text.txt"
        txt.write_text(text)
        subprocess.run([espeak, "-v", voice, "-s", str(rate_wpm), "-f", str(txt), "-w", str(wav)], check=True)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav), "-ar", "16000", "-ac", "1",
                        "-c:a", "libopus", "-b:a", BITRATE, "-map_metadata", "-1", "-fflags", "+bitexact",
                        str(dest)], check=True)
    return dest
