"""Benchmark: what the two speech segmenters (``steps.vad``) cost per hour of audio, on one CPU thread.

The batched engine's readers run the segmenter on every file before any chunk reaches the GPU, so its cost per
hour of audio bounds what a pod can feed its card. Baseline: the energy gate (the default). Same files, same run;
prints seconds per hour of audio for each, the ratio, and how much of the audio each keeps as speech.

    .venv/bin/python bench/segmenters.py /tmp/corpus-cpu --json bench/results/segmenters-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.audio import SAMPLE_RATE, load_audio  # noqa: E402
from steps.defaults import VAD_FRAME_S, VAD_MIN_GAP_S, VAD_MIN_SPEECH_S, VAD_PAD_S, VAD_THRESHOLD_DBFS  # noqa: E402
from steps.vad import SEGMENTERS, regions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="audio files (e.g. a corpus made by bench/corpus.py)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    audio = [load_audio(str(p)) for p in sorted(args.folder.iterdir()) if p.suffix != ".json"]
    hours = sum(a.size for a in audio) / SAMPLE_RATE / 3600
    settings = dict(threshold_dbfs=VAD_THRESHOLD_DBFS, frame_s=VAD_FRAME_S, min_gap_s=VAD_MIN_GAP_S, pad_s=VAD_PAD_S,
                    min_speech_s=VAD_MIN_SPEECH_S)
    regions(audio[0][:SAMPLE_RATE], "silero", **settings)  # the model's load is once per pod, not per file
    rows = []
    for method in SEGMENTERS:
        t0 = time.perf_counter()
        kept = sum(end - start for a in audio for start, end in regions(a, method, **settings))
        seconds = time.perf_counter() - t0
        rows.append({"segmenter": method, "seconds": round(seconds, 3),
                     "seconds_per_audio_hour": round(seconds / hours, 1),
                     "speech_share": round(kept / (hours * 3600), 3)})
        print(json.dumps(rows[-1]), flush=True)
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    print(f"{len(audio)} files, {hours * 60:.1f} min: silero costs {ratio:.0f}x the energy gate per hour of audio")
    if args.json:
        args.json.write_text(json.dumps({"files": len(audio), "audio_min": round(hours * 60, 1), "threads": 1,
                                         "rows": rows, "silero_over_energy": round(ratio, 1)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
