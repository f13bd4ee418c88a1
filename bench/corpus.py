"""The throughput benchmark's corpus: espeak-ng reading public-domain prose, heavy-tailed lengths, with references.

Each file is one contiguous passage of the King James Bible (Debian's ``bible-kjv`` package; public domain),
read by espeak-ng with one of several voices and speaking rates, resampled to 16 kHz mono and stored as Opus
(small enough to carry to a GPU machine that has no espeak-ng). Lengths follow a Pareto law clipped to
[--min-s, --max-s] and scaled so the corpus totals about --minutes. ``samples/jfk.flac`` (real speech, with its
reference) is added as one more file, so one recording in the corpus is not synthetic.

The folder gets the audio and ``corpus.json``: ``{name: {"reference", "voice", "rate_wpm", "seconds"}}``.
``bench/throughput.py --corpus DIR`` reads it; without ``--corpus`` it builds a corpus from the checked-in clips.

    apt-get install -y espeak-ng bible-kjv     # the generator's only needs beyond the project's venv
    .venv/bin/python bench/corpus.py /tmp/corpus --files 16 --minutes 45 --min-s 30 --max-s 480
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.audio import probe_duration  # noqa: E402
from tools.speech import speak  # noqa: E402

#: espeak-ng voices (accent + variant) the files are read with, round-robin: several accents, male and female.
VOICES = ["en-us", "en-gb+f3", "en-gb-scotland", "en-us+f2", "en-029", "en-gb-x-rp+m3", "en-us+m5", "en-gb+f4"]
#: Speaking rates, words per minute (espeak-ng's default is 175).
RATES = [140, 155, 170, 185, 200]
#: Seconds of audio per word at 175 wpm, pauses included (measured on Genesis 1): used only to size a passage.
SECONDS_PER_WORD_AT_175 = 0.29
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
VERSE = re.compile(r"^\S+\d+:\d+\s+")  # "Ge1:1 " before every verse


def kjv_verses() -> list[str]:
    if not shutil.which("bible"):
        raise SystemExit("bench/corpus.py needs Debian's bible-kjv (apt-get install -y bible-kjv espeak-ng)")
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    return [VERSE.sub("", line).strip() for line in out.splitlines() if VERSE.match(line)]


def lengths_s(files: int, minutes: float, min_s: float, max_s: float, rng: np.random.Generator) -> np.ndarray:
    raw = np.clip(rng.pareto(1.2, files) + 1, 1, None)
    lengths = raw / raw.sum() * minutes * 60
    for _ in range(20):  # clip to [min_s, max_s] and re-spread what the clip took or gave
        lengths = np.clip(lengths, min_s, max_s)
        lengths *= minutes * 60 / lengths.sum()
    return np.clip(lengths, min_s, max_s)


def make_corpus(folder: Path, files: int, minutes: float, min_s: float, max_s: float, seed: int) -> dict[str, dict]:
    """Write the corpus into ``folder`` and return its manifest (also written as ``corpus.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    verses = kjv_verses()
    manifest: dict[str, dict] = {}
    for i, target in enumerate(lengths_s(files, minutes, min_s, max_s, rng)):
        voice, rate = VOICES[i % len(VOICES)], RATES[int(rng.integers(len(RATES)))]
        words_wanted = target / (SECONDS_PER_WORD_AT_175 * 175 / rate)
        start = int(rng.integers(len(verses) - 2000))
        passage, words = [], 0
        for verse in verses[start:]:
            passage.append(verse)
            words += len(verse.split())
            if words >= words_wanted:
                break
        text = " ".join(passage)
        name = f"kjv{i:02d}.opus"
        speak(text, voice, rate, folder / name)
        manifest[name] = {"reference": text, "voice": voice, "rate_wpm": rate,
                          "seconds": round(probe_duration(str(folder / name)), 2)}
        print(f"{name}: {voice} {rate} wpm, {manifest[name]['seconds']:.0f} s", flush=True)
    shutil.copyfile(ROOT / "samples" / "jfk.flac", folder / "jfk.flac")
    manifest["jfk.flac"] = {"reference": JFK, "voice": "real speech (samples/jfk.flac)", "rate_wpm": None,
                            "seconds": round(probe_duration(str(folder / "jfk.flac")), 2)}
    (folder / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--minutes", type=float, default=45.0)
    p.add_argument("--min-s", type=float, default=30.0)
    p.add_argument("--max-s", type=float, default=480.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    manifest = make_corpus(a.folder, a.files, a.minutes, a.min_s, a.max_s, a.seed)
    total = sum(m["seconds"] for m in manifest.values())
    print(f"{len(manifest)} files, {total / 60:.1f} min -> {a.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
