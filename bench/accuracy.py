"""Benchmark: word error rate and speed of the transcribe step's engine on the checked-in speech.

Runs the real `Transcriber` (bundled tiny.en unless --model) over `tests/fixtures/speech` (espeak-ng voices,
four containers) and `samples/jfk.flac` (real speech), with kubescribe's defaults (beam 5, VAD gate, word
timestamps) and with plain greedy decoding as the baseline measured in the same run. Prints WER per clip
(whisper's English normalizer + jiwer), mean WER and real-time factor for each, and the ratios.

    python bench/accuracy.py [--device auto] [--model tiny.en]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402
from whisper.normalizers import EnglishTextNormalizer  # noqa: E402

from steps.audio import SAMPLE_RATE, load_audio  # noqa: E402
from steps.transcribe import TranscribeOptions, Transcriber  # noqa: E402

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def clips() -> dict[str, tuple[Path, str]]:
    speech = ROOT / "tests" / "fixtures" / "speech"
    refs = json.loads((speech / "references.json").read_text())
    return {name: (speech / name, text) for name, text in refs.items()} | {"jfk.flac": (ROOT / "samples" / "jfk.flac", JFK)}


def evaluate(transcriber: Transcriber, audio: dict[str, object], refs: dict[str, str]) -> dict:
    norm = EnglishTextNormalizer()
    transcriber.transcribe_audio(next(iter(audio.values())))  # warm-up (CUDA kernels, caches)
    per_clip, busy, total = {}, 0.0, 0.0
    for name, samples in audio.items():
        t0 = time.perf_counter()
        text = transcriber.transcribe_audio(samples)["text"]
        busy += time.perf_counter() - t0
        total += samples.size / SAMPLE_RATE
        per_clip[name] = round(jiwer.wer(norm(refs[name]), norm(text)), 3)
    return {"wer": per_clip, "mean_wer": round(sum(per_clip.values()) / len(per_clip), 3), "rtf": round(busy / total, 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    data = clips()
    audio = {name: load_audio(str(path)) for name, (path, _) in data.items()}
    refs = {name: text for name, (_, text) in data.items()}
    greedy = TranscribeOptions(beam_size=1, best_of=1, vad=False, word_timestamps=False, hallucination_silence_threshold=None)
    base = Transcriber(a.model, greedy, device=a.device, threads=a.threads)
    ours = Transcriber(a.model, TranscribeOptions(), device=a.device, threads=a.threads)
    result = {"device": ours.device, "model": a.model, "greedy_baseline": evaluate(base, audio, refs),
              "kubescribe_defaults": evaluate(ours, audio, refs)}
    b, k = result["greedy_baseline"], result["kubescribe_defaults"]
    result["wer_ratio_defaults_over_greedy"] = round(k["mean_wer"] / b["mean_wer"], 3) if b["mean_wer"] else None
    result["rtf_ratio_defaults_over_greedy"] = round(k["rtf"] / b["rtf"], 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
