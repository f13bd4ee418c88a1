"""Benchmark: one batched decode of openai-whisper, whisper's own loop against kubescribe's, same run, same device.

What ``steps.batch_decoder.batch_decode`` (static KV cache, beam search on the device, each one-token step replayed
as a CUDA graph on CUDA: ``steps.static_decode``) gains over whisper's ``DecodingTask`` for the same chunks, and
what the CUDA graphs gain over the same steps launched op by op ("eager steps"; with real weights, whether both
chose the same tokens is printed too). Whisper's own task cannot decode several chunks at once
with beam search (openai-whisper 20250625 fails in cross-attention), so its baseline is what the sequential engine
does: ``whisper.decode`` one chunk after another. A second baseline, "loop only", is whisper's own task on the
whole batch with greedy decoding, which it can batch: the same model calls, whisper's hooks and Python.

The model has tiny.en's shape (or ``--dims`` of another) and random weights unless ``--model`` names real ones:
random weights never emit end-of-text, so every decode runs exactly ``--steps`` tokens and the times are per step
of a known length. Prints ms per decode step and chunk-steps per second for each batch size, and the ratios.

    python bench/decode_loop.py --device cuda --batch 1 8 32 64 --steps 128 --json decode-loop-h200.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: tiny.en's dimensions (openai-whisper's checkpoint header)
TINY_EN = dict(n_mels=80, n_vocab=51864, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
               n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4)


def build_model(device: str, model: str | None):
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    if model:
        from steps.models import load_model

        return load_model(model, device=device)
    torch.manual_seed(0)
    m = Whisper(ModelDimensions(**TINY_EN))
    # whisper's init leaves most weights at torch's defaults; scale them so activations stay finite in fp16
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    return m.to(device)


def eager(fn, *args):
    """``fn(*args)`` with the decode's steps launched op by op instead of replayed as CUDA graphs."""
    from steps import static_decode

    with mock.patch.object(static_decode, "CUDA_GRAPHS", False):
        return fn(*args)


def timed(device: str, fn) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="real weights (a name or a path) instead of random tiny.en-shaped ones")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--steps", type=int, default=64, help="tokens per decode (sample_len)")
    ap.add_argument("--repeat", type=int, default=2, help="timed decodes per method and batch; the best is kept")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--torch-profile", type=int, default=0, metavar="N",
                    help="also print torch.profiler's table of one beam decode of N chunks (CPU and device time per op)")
    args = ap.parse_args()

    import torch
    import whisper

    from steps.batch_decoder import batch_decode

    model = build_model(args.device, args.model)
    fp16 = args.device == "cuda"
    mel_all = torch.randn(max(args.batch), model.dims.n_mels, 3000, device=args.device) * 0.5
    # random weights: end-of-text is suppressed so that every decode runs exactly --steps tokens
    eot = whisper.tokenizer.get_tokenizer(model.is_multilingual).eot
    fixed = dict(language="en", fp16=fp16, sample_len=args.steps, suppress_tokens=f"-1,{eot}",
                 without_timestamps=args.model is None)
    if args.model:
        fixed.pop("suppress_tokens")
    beam = whisper.DecodingOptions(beam_size=args.beam, **fixed)
    greedy = whisper.DecodingOptions(**fixed)
    rows = []
    batch_decode(model, mel_all[:2], beam)  # kernels, cuBLAS handles and the cast weights, once
    whisper.decode(model, mel_all[0], beam)
    for n in args.batch:
        mel = mel_all[:n]
        methods = {
            "kubescribe batch_decode, beam": lambda: batch_decode(model, mel, beam),
            "kubescribe batch_decode, beam, eager steps": lambda: eager(batch_decode, model, mel, beam),
            "whisper.decode per chunk, beam": lambda: [whisper.decode(model, m, beam) for m in mel],
            "kubescribe batch_decode, greedy": lambda: batch_decode(model, mel, greedy),
            "whisper DecodingTask on the batch, greedy": lambda: whisper.decode(model, mel, greedy),
        }
        for name, fn in methods.items():
            if n > 8 and name.startswith("whisper.decode per chunk"):
                # linear in n: measured on 8 and scaled, to keep the run short
                per = min(timed(args.device, lambda: [whisper.decode(model, m, beam) for m in mel_all[:8]])
                          for _ in range(args.repeat)) / 8
                wall = per * n
            else:
                wall = min(timed(args.device, fn) for _ in range(args.repeat))
            scaled = n > 8 and name.startswith("whisper.decode per chunk")
            rows.append({"batch": n, "method": name, "wall_s": round(wall, 4), **({"scaled_from_batch": 8} if scaled else {}),
                         "ms_per_step": round(1000 * wall / args.steps, 3),
                         "chunk_steps_per_s": round(n * args.steps / wall, 1)})
            print(f"batch {n:3d}  {name:45s} {wall:8.3f} s  {1000 * wall / args.steps:8.2f} ms/step  "
                  f"{n * args.steps / wall:10.0f} chunk-steps/s", flush=True)
        by = {r["method"]: r["wall_s"] for r in rows if r["batch"] == n}
        same = None
        if args.model:  # random weights make near-ties everywhere; real ones tell whether fp16 graphs change tokens
            same = [r.tokens for r in batch_decode(model, mel, beam)] == [
                r.tokens for r in eager(batch_decode, model, mel, beam)]
            rows.append({"batch": n, "method": "graph steps choose the eager steps' tokens", "same": same})
        graphs_gain = by["kubescribe batch_decode, beam, eager steps"] / by["kubescribe batch_decode, beam"]
        print(f"batch {n:3d}  graphs: {graphs_gain:.2f}x the eager steps (same tokens: {same})", flush=True)
        print(f"batch {n:3d}  ratio beam: {by['whisper.decode per chunk, beam'] / by['kubescribe batch_decode, beam']:.2f}x "
              f"whisper.decode per chunk; greedy: {by['whisper DecodingTask on the batch, greedy'] / by['kubescribe batch_decode, greedy']:.2f}x "
              "whisper's loop on the same batch", flush=True)
    if args.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
        with profile(activities=activities) as prof:
            timed(args.device, lambda: batch_decode(model, mel_all[: args.torch_profile], beam))
        sort = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        print(prof.key_averages().table(sort_by=sort, row_limit=12))
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "steps": args.steps, "beam": args.beam,
                                         "model": args.model or "random tiny.en-shaped", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
