"""Peak memory of the Whisper step against the length of a recording: windowed streaming vs the whole file.

Each measurement runs in a fresh process (peak RSS is per process), on a generated recording of the given
length: a 9 s utterance (the checked-in espeak fixture) every two minutes, digital silence between, so the
decode work stays small while the file is long. Baseline, measured in the same run: the whole recording decoded
into one array and handed to ``model.transcribe`` at once (what the step did before windows), here by setting
the window to the whole file. Both engines are measured: ``sequential`` (``Transcriber``, windowed) and
``batched`` (the default: ``run_shard`` with the batched engine, which reads the file in the same windows and
cuts them into chunks for the batch decoder). Run on CPU; no GPU needed.

    .venv/bin/python bench/memory.py                       # 10 min, 1 h, 3 h windowed; 10 min, 1 h baseline
    .venv/bin/python bench/memory.py --lengths 600 3600 --baseline-max 3600 --json bench/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UTTERANCE = ROOT / "tests" / "fixtures" / "speech" / "weather.wav"


def make_recording(path: Path, seconds: int, every_s: int = 120) -> None:
    """Write a 16 kHz mono wav of ``seconds``, streaming, so the generator itself stays small."""
    with wave.open(str(UTTERANCE)) as w:
        speech = w.readframes(w.getnframes())
    silence = bytes(2 * 16000 * every_s)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        written = 0
        while written < seconds:
            block = (speech + silence)[: 2 * 16000 * (seconds - written)]
            out.writeframes(block)
            written += len(block) // 32000


def measure(path: str, window_s: float) -> dict:
    """In this (fresh) process: transcribe ``path`` as the step does, report peak RSS and time."""
    sys.path.insert(0, str(ROOT))
    import torch

    from steps.audio import stream_audio
    from steps.transcribe import TranscribeOptions, Transcriber

    torch.set_num_threads(2)
    t = Transcriber("tiny.en", TranscribeOptions(beam_size=1, best_of=1, window_s=window_s), device="cpu")
    t.model  # load before the clock starts
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = t.transcribe_blocks(stream_audio(path, max_seconds=6 * 3600))
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "after_model_load_mb": base_mb,
        "segments": len(result["segments"]),
    }


def measure_batched(path: str, window_s: float) -> dict:
    """In this (fresh) process: the step's default engine on a one-file shard, outputs written to a temp folder."""
    sys.path.insert(0, str(ROOT))
    import shutil

    import torch

    from steps.models import resolve_checkpoint
    from steps.plan import make_plan
    from steps.runstate import write_plan
    from steps.store import LocalStore
    from steps.transcribe import TranscribeOptions, run_shard

    torch.set_num_threads(2)
    resolve_checkpoint("tiny.en")  # convert once, before the clock starts; the step loads the model itself
    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-batched-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        shutil.copy(path, src / Path(path).name)
        out = LocalStore(Path(tmp) / "out")
        write_plan(make_plan(LocalStore(src), out.url, "bench", shard_seconds=100_000), out)
        t0 = time.perf_counter()
        options = TranscribeOptions(engine="batched", beam_size=1, best_of=1, window_s=window_s)
        result = run_shard(out.url, "bench", 0, "tiny.en", options, device="cpu", threads=2)
        seconds = time.perf_counter() - t0
        (f,) = result.files
        segments = len(json.loads(out.read_text(f.outputs["json"]))["segments"]) if f.status == "succeeded" else -1
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "after_model_load_mb": None, "segments": segments}  # the step loads the model inside the clock


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[600, 3600, 10800], help="recording lengths, seconds")
    p.add_argument("--baseline-max", type=int, default=3600, help="longest recording to run the baseline on")
    p.add_argument("--window", type=float, default=None, help="window seconds (default: the step's default)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", nargs=3, metavar=("METHOD", "PATH", "WINDOW"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        method, path, window_s = a.child
        print(json.dumps((measure_batched if method == "batched" else measure)(path, float(window_s))))
        return 0

    sys.path.insert(0, str(ROOT))
    from steps.transcribe import TranscribeOptions

    window = a.window or TranscribeOptions().window_s
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-") as tmp:
        for seconds in a.lengths:
            path = Path(tmp) / f"rec-{seconds}.wav"
            make_recording(path, seconds)
            runs = [("batched", window), ("windowed", window)]  # the batched engine reads in the step's windows
            runs += [("whole-file", seconds + 1.0)] if seconds <= a.baseline_max else []
            for method, w in runs:
                out = subprocess.run([sys.executable, __file__, "--child", method, str(path), str(w)],
                                     capture_output=True, text=True, check=True)
                row = {"length_s": seconds, "method": method, "window_s": w, **json.loads(out.stdout.splitlines()[-1])}
                rows.append(row)
                loaded = row["after_model_load_mb"]
                print(f"{seconds:>6d} s  {method:<10}  peak RSS {row['peak_rss_mb']:7.0f} MB  "
                      f"(model loaded: {'-' if loaded is None else f'{loaded:.0f}'} MB)  {row['seconds']:6.1f} s",
                      flush=True)
            path.unlink()
    print("\nratios (whole-file peak / each engine's peak, same length, same run):")
    for seconds in a.lengths:
        by = {r["method"]: r for r in rows if r["length_s"] == seconds}
        if "whole-file" in by:
            print(f"  {seconds:>6d} s: sequential {by['whole-file']['peak_rss_mb'] / by['windowed']['peak_rss_mb']:.2f}x, "
                  f"batched {by['whole-file']['peak_rss_mb'] / by['batched']['peak_rss_mb']:.2f}x")
    for method in ("windowed", "batched"):
        same = [r for r in rows if r["method"] == method]
        if len(same) > 1:
            print(f"{method} peak, longest / shortest recording: "
                  f"{same[-1]['peak_rss_mb'] / same[0]['peak_rss_mb']:.2f}x "
                  f"for {same[-1]['length_s'] / same[0]['length_s']:.0f}x the audio")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
