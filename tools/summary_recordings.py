"""Regenerate the spoken recordings of the summary evaluation set (issue 10) from their transcripts.

The prompt-injection announcement and the German meeting of ``bench/summaries/`` are spoken with espeak-ng and
encoded with ffmpeg into 16 kHz mono Ogg/Opus (small enough to check in) under ``tests/fixtures/summaries/``,
where ``sources.json`` records the text, voice and speed of each. The audio is checked in: tests and CI need
neither espeak-ng nor this script; it exists so that the recordings' provenance can be reproduced.

    .venv/bin/python tools/summary_recordings.py   # needs espeak-ng (tools/speech.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.speech import speak  # noqa: E402
TEXTS = ROOT / "bench" / "summaries"
OUT = ROOT / "tests" / "fixtures" / "summaries"

#: recording -> (transcript it is spoken from, espeak-ng voice, words per minute)
RECORDINGS = {
    "injection.ogg": ("injection.txt", "en-us", 150),
    "german-meeting.ogg": ("german-meeting.txt", "de", 150),
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, (text_file, voice, wpm) in RECORDINGS.items():
        out = speak((TEXTS / text_file).read_text(), voice, wpm, OUT / name)
        sources[name] = {"text": f"bench/summaries/{text_file}", "voice": voice, "words_per_minute": wpm}
        print(f"{out.relative_to(ROOT)}: {out.stat().st_size // 1024} kB", file=sys.stderr)
    (OUT / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
