"""Benchmark: the fixed cost of one short file in a Whisper shard (probe, hash, decode, model calls, writes).

The checked-in speech (the four fixtures and jfk.flac, about 45 s) is cut into N consecutive one-second clips,
which go through one shard of each engine, model loaded once; the baseline is the same engine on one file holding
those N seconds in order (the speech as recorded), so what differs is the per-file work alone:

    per-file overhead = (wall for N short files - wall for one N-second file) / N

    .venv/bin/python bench/per_file_overhead.py --files 40 --json bench/results/per-file-overhead-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from steps.audio import SAMPLE_RATE, load_audio  # noqa: E402
from tests.audio_support import write_wav  # noqa: E402


def shard_wall(src: Path, out: Path, engine: str, device: str, threads: int) -> tuple[float, int]:
    from steps.plan import make_plan
    from steps.runstate import write_plan
    from steps.store import LocalStore
    from steps.transcribe import TranscribeOptions, run_shard

    store = LocalStore(out)
    t0 = time.perf_counter()
    plan = make_plan(LocalStore(src), store.url, "bench", shard_seconds=1e9, max_shards=1)
    write_plan(plan, store)
    result = run_shard(store.url, "bench", 0, "tiny.en", TranscribeOptions(engine=engine), device=device,
                      threads=threads)
    wall = time.perf_counter() - t0 - (result.model_load_s or 0)
    return wall, sum(r.status == "succeeded" for r in result.files)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", default="batched,sequential")
    p.add_argument("--json")
    a = p.parse_args()
    sources = sorted((ROOT / "tests" / "fixtures" / "speech").glob("*.*")) + [ROOT / "samples" / "jfk.flac"]
    speech = np.concatenate([load_audio(str(f)) for f in sources if f.suffix != ".json"])
    a.files = min(a.files, len(speech) // SAMPLE_RATE)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubescribe-overhead-") as tmp:
        short, long_ = Path(tmp) / "short", Path(tmp) / "long"
        short.mkdir()
        long_.mkdir()
        clips = []
        for i in range(a.files):
            clip = speech[i * SAMPLE_RATE:(i + 1) * SAMPLE_RATE]
            clips.append(clip)
            write_wav(short / f"clip{i:03d}.wav", clip)
        write_wav(long_ / "all.wav", np.concatenate(clips))
        for engine in [e for e in a.engines.split(",") if e]:
            many, ok_many = shard_wall(short, Path(tmp) / f"out-short-{engine}", engine, a.device, a.threads)
            one, ok_one = shard_wall(long_, Path(tmp) / f"out-long-{engine}", engine, a.device, a.threads)
            rows.append({"engine": engine, "files": a.files, "wall_short_files_s": round(many, 2),
                         "wall_one_file_s": round(one, 2), "succeeded": ok_many,
                         "per_file_overhead_s": round((many - one) / a.files, 3),
                         "per_file_wall_s": round(many / a.files, 3)})
            print(json.dumps(rows[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"device": a.device, "threads": a.threads, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
