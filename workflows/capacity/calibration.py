"""The capacity model's inputs, each with where it came from.

``kind`` says how much to trust it: ``measured`` (a file under bench/results/, produced by a script in bench/ on a
named machine), ``cited`` (a public figure, with its reference) or ``assumption`` (a stated guess; the bench sweeps
the ones an effect depends on). The simulator takes numbers only from here.

Whisper speed of one pod = real-time factor of the sequential engine on a whole GPU (kubescribe defaults, beam 5),
measured for tiny.en on an H200 and scaled to larger models by openai-whisper's published relative speeds; on a MIG
slice it is capped by the slice's share of the GPU over the share one stream of that model keeps busy
(``single_stream_share``): a job that uses a quarter of a GPU runs at full speed on any slice with at least a
quarter of the SMs and memory bandwidth, and proportionally slower on a smaller one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"

WHISPER_README = "openai/whisper README, 'Available models and languages' table (relative speed on an A100, VRAM)"
MIG_GUIDE = "NVIDIA MIG user guide, supported profiles"


@dataclass(frozen=True)
class Input:
    value: Any
    source: str
    kind: str  # measured | cited | assumption

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "kind": self.kind}


def read_result(name: str) -> dict | None:
    """A JSON file of bench/results/, or None when it is missing or not JSON (an installed package has none)."""
    path = RESULTS / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# Relative speed against large (openai/whisper README; "large" there is large-v3; turbo = large-v3-turbo).
_RELATIVE_SPEED = {"tiny": 10, "base": 7, "small": 4, "medium": 2, "large": 1, "turbo": 8}
# Required VRAM, GB (same table).
_VRAM_GB = {"tiny": 1, "base": 1, "small": 2, "medium": 5, "large": 10, "turbo": 6}
# Weights on disk, GB (fp16 checkpoints as openai-whisper downloads them).
_WEIGHTS_GB = {"tiny": 0.075, "base": 0.14, "small": 0.46, "medium": 1.5, "large": 3.1, "turbo": 1.6}
# Share of a whole GPU that ONE sequential decode stream keeps busy (batch 1, autoregressive, beam 5).
_SINGLE_STREAM_SHARE = {"tiny": 0.1, "base": 0.1, "small": 0.15, "medium": 0.25, "large": 0.4, "turbo": 0.3}


def family(model: str) -> str:
    """``large-v3`` -> large, ``large-v3-turbo`` / ``turbo`` -> turbo, ``medium.en`` -> medium."""
    m = model.lower().rsplit("/", 1)[-1].removesuffix(".pt")
    if "turbo" in m:
        return "turbo"
    for name in ("tiny", "base", "small", "medium", "large"):
        if m.startswith(name):
            return name
    raise ValueError(f"unknown Whisper model {model!r}: use a name such as tiny.en, medium, large-v3, large-v3-turbo")


@dataclass
class Calibration:
    """Every input of the capacity model. Build with :func:`load`; tests may replace fields."""

    rtf_tiny_whole: Input
    process_start_s: Input
    batched_speedup: Input
    relative_speed: Input = field(default_factory=lambda: Input(dict(_RELATIVE_SPEED), WHISPER_README, "cited"))
    vram_gb: Input = field(default_factory=lambda: Input(dict(_VRAM_GB), WHISPER_README, "cited"))
    weights_gb: Input = field(default_factory=lambda: Input(
        dict(_WEIGHTS_GB), "sizes of openai-whisper's checkpoints (medium 1.4 GiB, large 2.9 GiB: paper.md §1.1)", "cited"))
    single_stream_share: Input = field(default_factory=lambda: Input(dict(_SINGLE_STREAM_SHARE), (
        "assumption: batch-1 autoregressive decoding is latency-bound and leaves most of a data-centre GPU idle "
        "(NVIDIA markets MIG as up to 7x inference throughput per A100 for small-batch BERT-class models); not "
        "measured here (no MIG on the lent GPU); bench/capacity.py sweeps it"), "assumption"))
    download_mb_s: Input = Input(100.0, "assumption: 100 MB/s per pod for weights fetched at start (paper's Jobs "
                                        "download them into an emptyDir, paper.md §1.1)", "assumption")
    image_gb: Input = Input(6.0, "assumption: CUDA torch + openai-whisper image, ~6 GB compressed", "assumption")
    pull_mb_s: Input = Input(100.0, "assumption: 100 MB/s registry pull per node", "assumption")
    das_create_s: Input = Input(10.0, "assumption: DAS creates the MIG instance in the device plugin's Allocate "
                                      "(nvidia-smi mig -cgi -C takes seconds); not measured", "assumption")
    das_delete_s: Input = Input(5.0, "assumption: DAS deletes the instance when the pod ends; not measured",
                                "assumption")

    def rtf(self, model: str) -> float:
        """Seconds of whole-GPU time per second of audio, sequential engine, one stream."""
        rel = self.relative_speed.value
        return self.rtf_tiny_whole.value * rel["tiny"] / rel[family(model)]

    def share(self, model: str) -> float:
        return self.single_stream_share.value[family(model)]

    def speed(self, model: str, slice_share: float, batched: bool) -> float:
        """Speed-up over one sequential stream on a whole GPU, on a device with ``slice_share`` of a GPU.

        A pod wants ``share`` of a GPU per stream (``share * batched_speedup`` batched) and gets at most
        ``slice_share``: the ratio caps its speed."""
        want = self.batched_speedup.value if batched else 1.0
        return min(want, slice_share / self.share(model))

    def fits(self, model: str, memory_gb: float) -> bool:
        return self.vram_gb.value[family(model)] <= memory_gb

    def startup_s(self, model: str, cached_weights: bool) -> float:
        """Pod start once the node has the image: weights download (unless baked in) + process start and load."""
        fetch = 0.0 if cached_weights else self.weights_gb.value[family(model)] * 1000 / self.download_mb_s.value
        return fetch + self.process_start_s.value

    def pull_s(self) -> float:
        return self.image_gb.value * 1000 / self.pull_mb_s.value

    def inputs(self) -> dict[str, dict[str, Any]]:
        return {name: getattr(self, name).as_dict() for name in self.__dataclass_fields__}


def load() -> Calibration:
    """The calibration from bench/results/ where measured, with cited fallbacks where not."""
    acc = read_result("h200-accuracy-cuda.json")
    if acc:
        rtf = Input(acc["kubescribe_defaults"]["rtf"], "bench/results/h200-accuracy-cuda.json: tiny.en, kubescribe "
                    "defaults (beam 5), whole H200, in-process RTF; applied to A100/H100 unchanged", "measured")
    else:
        rtf = Input(0.0387, "fallback: value of the H200 run in bench/README.md", "cited")
    shards = read_result("h200-shards-cuda.json")
    if shards:
        per_process = (shards["per_file_process_s"] - shards["one_shard_process_s"]) / (shards["files"] - 1)
        start = Input(round(per_process, 2), "bench/results/h200-shards-cuda.json: (one process per file - one "
                      "process per shard) / (files - 1): interpreter, CUDA context, model load, kernel warm-up",
                      "measured")
    else:
        start = Input(7.4, "fallback: bench/README.md sharding result (~7 s per process)", "cited")
    return Calibration(rtf_tiny_whole=rtf, process_start_s=start, batched_speedup=_batched())


def _batched() -> Input:
    for path in sorted(RESULTS.glob("*throughput*cuda*.json")) + sorted(RESULTS.glob("throughput-cpu.json")):
        doc = read_result(path.name) or {}
        ratio = (doc.get("ratios") or {}).get("batched_speedup_over_sequential")
        if ratio:
            where = "CUDA" if "cuda" in path.name else "CPU (no GPU measurement yet: the GPU ratio may differ)"
            return Input(float(ratio), f"bench/results/{path.name}: batched engine over sequential, {where}",
                         "measured")
    return Input(1.0, "no measurement of the batched engine: assumed no faster than sequential", "assumption")


# --- the LLM pool ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMProfile:
    """One model server replica: prefill speed, decode speed, KV memory for prompts (all in tokens)."""

    name: str
    prefill_tps: Input  # tokens/s of prompt computed (not from cache), shared by the requests prefilling at once
    decode_tps: Input  # tokens/s of one sequence decoding alone
    decode_slowdown: Input  # per extra sequence decoding at once: step time x (1 + slowdown * (n - 1))
    kv_tokens: Input  # tokens of KV (running + cached prompts) one replica holds
    max_batch: int
    prefill_chunk: int  # prompt tokens computed per iteration, next to one token of every decoding sequence

    def inputs(self) -> dict[str, dict[str, Any]]:
        return {k: getattr(self, k).as_dict() for k in ("prefill_tps", "decode_tps", "decode_slowdown", "kv_tokens")}


def qwen3_8b(gpu_memory_gb: float) -> LLMProfile:
    """Qwen3-8B in bf16 on one GPU (the paper's model, paper.md §1.1), from first principles where not measured."""
    from workflows.capacity.defaults import LLM_MAX_BATCH, LLM_PREFILL_CHUNK_VLLM

    kv_per_token = 2 * 36 * 8 * 128 * 2  # K and V, 36 layers, 8 KV heads, head dim 128, bf16 (Qwen3-8B config.json)
    free = 0.9 * gpu_memory_gb * 1e9 - 16.4e9  # vLLM gpu_memory_utilization 0.9 minus the weights
    return LLMProfile(
        name=f"Qwen3-8B on {gpu_memory_gb:g} GB",
        prefill_tps=Input(9000.0, "assumption: 2 x 8.2e9 FLOP/token at ~50% of an A100's 312 TFLOPS bf16", "assumption"),
        decode_tps=Input(90.0, "assumption: 16.4 GB of weights read per step at ~1.5 TB/s (A100-40GB HBM2)", "assumption"),
        decode_slowdown=Input(0.03, "assumption: batching is almost free for decode until compute-bound", "assumption"),
        kv_tokens=Input(int(free / kv_per_token), "Qwen3-8B config (36 layers, 8 KV heads x 128, bf16): "
                        f"{kv_per_token} B/token in 90% of {gpu_memory_gb:g} GB less 16.4 GB of weights", "cited"),
        max_batch=LLM_MAX_BATCH,
        prefill_chunk=LLM_PREFILL_CHUNK_VLLM,
    )


def measured_cpu_profile() -> LLMProfile | None:
    """SmolLM2-135M on one CPU thread, as bench/ttft_routing.py measured it (None before that has run)."""
    from workflows.capacity.defaults import LLM_PREFILL_CHUNK_LLAMA_CPP

    doc = read_result("ttft-routing-cpu.json")
    if not doc or not doc.get("prefill_tokens_per_s"):
        return None
    src = "bench/results/ttft-routing-cpu.json"
    # What one replica can reuse: its slots, each keeping its last prompt (the bench turns the RAM cache off).
    held = doc["slots"] * doc["mean_prompt_tokens"]
    return LLMProfile(
        name="SmolLM2-135M, llama-server, 1 CPU thread",
        prefill_tps=Input(doc["prefill_tokens_per_s"], f"{src}: one replica alone, prompt tokens / prompt time",
                          "measured"),
        decode_tps=Input(doc["decode_tokens_per_s"], f"{src}: one replica alone, decode tokens/s", "measured"),
        decode_slowdown=Input(1.0, "a CPU thread serves sequences one after another", "assumption"),
        kv_tokens=Input(int(held), f"{src}: {doc['slots']} slots x the mean prompt (the bench's setting)", "measured"),
        max_batch=int(doc["slots"]),
        prefill_chunk=LLM_PREFILL_CHUNK_LLAMA_CPP,
    )

