"""Benchmark: one Whisper process per shard of files (kubescribe) vs one process per file (the paper's Jobs).

Both sides run the real step entrypoint (`kubescribe-step transcribe`) on the same files, in the same run, on
the same machine, into fresh output folders (no work avoidance). The baseline plans one file per shard, so
every file pays process start, imports and model load, as a Job per recording does; kubescribe plans one shard,
so the model loads once. Prints wall times and the ratio baseline / kubescribe (higher is better).

    python bench/shard_amortization.py [--files 8] [--model tiny.en] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.plan import make_plan  # noqa: E402
from steps.records import Plan  # noqa: E402
from steps.runstate import write_plan  # noqa: E402
from steps.store import LocalStore  # noqa: E402

CLIPS = [ROOT / "samples" / "jfk.flac", *sorted((ROOT / "tests" / "fixtures" / "speech").glob("*.[wfmo]*[vcg3]"))]


def step(*args: str) -> None:
    cmd = [sys.executable, "-m", "steps", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")


def run(plan: Plan, out: Path, model: str, device: str, threads: int) -> float:
    store = LocalStore(out)
    shards = write_plan(plan, store)
    t0 = time.perf_counter()
    for shard in shards:
        step("transcribe", "--output", str(out), "--run-id", plan.run_id, "--shard", shard, "--model", model,
             "--device", device, "--threads", str(threads))
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(a.files):
            clip = CLIPS[i % len(CLIPS)]
            shutil.copy(clip, src / f"{i:03d}{clip.suffix}")
        base = make_plan(LocalStore(src), "", "bench", shard_seconds=1e9, max_shards=1)
        audio_s = sum(f.duration_s or 0 for f in base.files)
        # Warm the model cache (conversion) and the OS page cache so neither side pays it alone.
        run(base, Path(tmp) / "warm", a.model, a.device, a.threads)

        per_file = Plan(base.run_id, base.input, "", base.files, [[f.index] for f in base.files])
        baseline = run(per_file, Path(tmp) / "per-file", a.model, a.device, a.threads)
        sharded = run(base, Path(tmp) / "sharded", a.model, a.device, a.threads)
        result = {
            "files": a.files,
            "audio_s": round(audio_s, 1),
            "model": a.model,
            "device": a.device,
            "per_file_process_s": round(baseline, 2),
            "one_shard_process_s": round(sharded, 2),
            "speedup": round(baseline / sharded, 2),
            "rtf_per_file": round(baseline / audio_s, 4),
            "rtf_sharded": round(sharded / audio_s, 4),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
