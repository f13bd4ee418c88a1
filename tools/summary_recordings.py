"""Regenerate the spoken recordings of the summary evaluation set (issue 10) from their transcripts.

The prompt-injection announcement and the German meeting of ``bench/summaries/`` are spoken with espeak-ng and
encoded with ffmpeg into 16 kHz mono Ogg/Opus (small enough to check in) under ``tests/fixtures/summaries/``,
where ``sources.json`` records the text, voice and speed of each. The audio is checked in: tests and CI need
neither espeak-ng nor this script; it exists so that the recordings' provenance can be reproduced.

    .venv/bin/python tools/summary_recordings.py   # needs espeak-ng; ffmpeg from PATH or the venv's imageio-ffmpeg
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ROOT / "bench" / "summaries"
OUT = ROOT / "tests" / "fixtures" / "summaries"

#: recording -> (transcript it is spoken from, espeak-ng voice, words per minute)
RECORDINGS = {
    "injection.ogg": ("injection.txt", "en-us", 150),
    "german-meeting.ogg": ("german-meeting.txt", "de", 150),
}
#: Opus at 24 kbit/s: speech stays clear for Whisper, a minute is under 200 kB.
BITRATE = "24k"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None and tool == "ffmpeg":  # the static build kubescribe decodes with (imageio-ffmpeg, in the venv)
        try:
            import imageio_ffmpeg
            path = imageio_ffmpeg.get_ffmpeg_exe()
        except ImportError:
            pass
    if path is None:
        raise SystemExit(f"{tool} is not on PATH (Debian: apt-get install -y espeak-ng ffmpeg)")
    return path


def make(name: str, text_file: str, voice: str, wpm: int, tmp: Path) -> Path:
    espeak, ffmpeg = _need("espeak-ng"), _need("ffmpeg")
    wav = tmp / f"{name}.wav"
    subprocess.run([espeak, "-v", voice, "-s", str(wpm), "-w", str(wav), "-f", str(TEXTS / text_file)], check=True)
    out = OUT / name
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(wav), "-ar", "16000", "-ac", "1", "-c:a", "libopus",
                    "-b:a", BITRATE, "-map_metadata", "-1", "-fflags", "+bitexact", str(out)], check=True)
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text_file, voice, wpm) in RECORDINGS.items():
            out = make(name, text_file, voice, wpm, Path(tmp))
            sources[name] = {"text": f"bench/summaries/{text_file}", "voice": voice, "words_per_minute": wpm}
            print(f"{out.relative_to(ROOT)}: {out.stat().st_size // 1024} kB", file=sys.stderr)
    (OUT / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
