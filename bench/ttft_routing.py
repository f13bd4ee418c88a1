"""Prefix-aware vs random routing of kubescribe's own summarize requests, on two real llama-server replicas.

The paper's GAIE result (mean TTFT −82 %, ``../shared/docs/paper.md`` §4.3) compares llm-d's precise-prefix-cache
routing with random endpoint picking. No cluster runs here, so this benchmark puts a small router in front of two
real ``llama-server`` replicas on this machine (the bundled SmolLM2-135M, prompt cache on) and sends the requests
kubescribe itself builds (``steps.llm.prompts.build_messages``; the 26-minute meeting is split into map parts by
``steps.llm.mapreduce.split_text`` exactly as a run would) for every transcript under ``bench/summaries/``.

Load, as the paper's GuideLLM job: a closed loop of C concurrent streams (C = 5, 10, 15, 20) cycling through the
dataset, after a warm-up pass with 1 output token. Each (policy, C) starts from two freshly started replicas, so
no cache carries over between cells.

Routers:

* ``random``: a seeded uniform pick, llm-d's ``random-picker`` (the paper's baseline). Not round-robin: with a
  dataset of even size cycled in order, request i mod 2 sends every prompt to the same replica each time, which
  is accidental affinity (two first runs here were made with it).
* ``prefix``: a miniature of llm-d's EPP profile (prefix scorer weight 3, queue scorer weight 2, max-score
  picker). The prefix score is the fraction of the request's 64-character blocks of its serialised messages
  (chained hashes, as the EPP's indexer does) that the replica has already seen, from an LRU the size of the
  replica's prompt cache; the queue score is 1 − in-flight/most in-flight.

Cache capacity is what makes routing matter: a replica that holds every prompt serves repeats from cache whatever
the router does, and one that holds too few (with the dataset cycled in order, LRU evicts the prompt that comes
next) misses whatever the router does. The effect lives in between: the pool's cache holds the working set, one
replica's does not. The paper's setup can be there (16 transcripts of ~10 k tokens, Qwen3-8B KV 144 KiB/token,
~20 GB of KV per A100-40GB: ~13 prompts per replica, 8 each under affinity, all 16 under random picking).

Here a replica's cache is its slots: ``--parallel 10`` slots per replica, each keeping the KV of its last prompt,
``--slot-prompt-similarity 0.9`` so a request takes the slot holding the same prompt (else the least recently used
one, whose common prefix, the stable instruction block, is still reused), and the host RAM prompt cache off
(``--cache-ram 0``): in two first runs (48 and 200 MiB of it, 2 slots) this build of llama-server did not restore
the long map-part prompts from it, so neither policy got hits beyond the slots (README). 18 distinct prompts:
affinity sends ~9 to a replica, which fits its 10 slots; random picking sends all 18 to each, which do not. Also recorded
per request: prompt tokens, tokens taken from the cache (``timings.cache_n``) and prompt time.

Two shared CPU cores host both replicas (``-t 1`` each): absolute times are slow and noisy, ratios are the result.
Not a test: nothing timed in CI. Run: ``.venv/bin/python bench/ttft_routing.py --json
bench/results/ttft-routing-cpu.json`` (a few minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import json
import statistics
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.llm.mapreduce import _input_budget_tokens, split_text  # noqa: E402
from steps.llm.prompts import CHARS_PER_TOKEN, build_messages  # noqa: E402
from steps.llm.settings import LLMSettings  # noqa: E402
from workflows.local.llm_server import LlamaServer  # noqa: E402

DATA = ROOT / "bench" / "summaries"
BLOCK_CHARS = 64  # the EPP's indexer hashes 64-token blocks; characters stand in for tokens here
LEVELS = (5, 10, 15, 20)


def dataset(ctx_per_slot: int, max_tokens: int) -> list[tuple[str, list[dict]]]:
    """(name, messages) of every request a kubescribe run makes for bench/summaries/ (map parts for long ones).

    The reduce request is left out: its input is the map answers, which depend on the model's output."""
    settings = LLMSettings(url="http://unused/v1", model="m", context_tokens=ctx_per_slot, max_output_tokens=max_tokens)
    max_chars = int(_input_budget_tokens(settings) * CHARS_PER_TOKEN)
    out = []
    for path in sorted(DATA.glob("*.txt")):
        text = "\n".join(" ".join(line.split()) for line in path.read_text().splitlines() if line.strip())
        chunks = split_text(text, max_chars)
        if len(chunks) == 1:
            out.append((path.stem, build_messages(text, "full")))
        else:
            out += [(f"{path.stem}#{i + 1}", build_messages(c, "map")) for i, c in enumerate(chunks)]
    return out


def block_hashes(messages: list[dict]) -> list[str]:
    """Chained hashes of the 64-char blocks of the serialised messages: block i's hash covers blocks 0..i."""
    raw = json.dumps(messages, ensure_ascii=False)
    h, out = hashlib.sha256(), []
    for i in range(0, len(raw) - len(raw) % BLOCK_CHARS, BLOCK_CHARS):
        h.update(raw[i:i + BLOCK_CHARS].encode())
        out.append(h.copy().hexdigest()[:16])
    return out


class Router:
    """Picks a replica per request; ``prefix`` keeps an LRU of block hashes per replica (its cache, approximately)."""

    def __init__(self, policy: str, n: int, cache_blocks: int):
        self.policy, self.n, self.cache_blocks = policy, n, cache_blocks
        self.inflight = [0] * n
        self.seen: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(n)]
        self.rng = random.Random(7)
        self.lock = threading.Lock()

    def pick(self, blocks: list[str]) -> int:
        with self.lock:
            if self.policy == "random":
                r = self.rng.randrange(self.n)
            else:
                busiest = max(max(self.inflight), 1)

                def score(i: int) -> tuple[float, int, int]:
                    match = 0
                    for b in blocks:  # chained hashes: the first miss ends the shared prefix
                        if b not in self.seen[i]:
                            break
                        match += 1
                    prefix = match / max(len(blocks), 1)
                    return (3 * prefix + 2 * (1 - self.inflight[i] / busiest), -self.inflight[i], -i)

                r = max(range(self.n), key=score)
            self.inflight[r] += 1
            seen = self.seen[r]
            for b in blocks:
                seen[b] = None
                seen.move_to_end(b)
            while len(seen) > self.cache_blocks:
                seen.popitem(last=False)
            return r

    def done(self, r: int) -> None:
        with self.lock:
            self.inflight[r] -= 1


def one_request(client: httpx.Client, url: str, model: str, messages: list[dict], max_tokens: int,
                cache: bool = True) -> dict:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "cache_prompt": cache}
    t0 = time.monotonic()
    ttft = None
    timings: dict = {}
    with client.stream("POST", f"{url}/chat/completions", json=body, timeout=600) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                ttft = time.monotonic() - t0
            timings = chunk.get("timings") or timings
    total = time.monotonic() - t0
    return {"ttft_s": ttft if ttft is not None else total, "total_s": total,
            "prompt_n": timings.get("prompt_n"), "cache_n": timings.get("cache_n"),
            "prompt_ms": timings.get("prompt_ms"), "predicted_per_second": timings.get("predicted_per_second")}


def probe_speed(data: list, args: argparse.Namespace, logs: Path) -> dict:
    """One replica, one request at a time, no cache: prefill and decode tokens/s of a replica working alone (the
    routing model's calibration; per-request times under load overlap and would understate it)."""
    longest = sorted(data, key=lambda d: -len(json.dumps(d[1])))[:3]
    with LlamaServer(ctx_per_slot=args.ctx, parallel=1, threads=1, extra_args=["--cache-ram", "0"],
                     log_path=logs / "probe.log") as server, \
            httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        rows = [one_request(client, server.url, server.model, m, 32, cache=False) for _, m in longest]
    prompt = sum(r["prompt_n"] for r in rows)
    return {"prefill_tokens_per_s": round(prompt / (sum(r["prompt_ms"] for r in rows) / 1000), 1),
            "decode_tokens_per_s": round(statistics.median(r["predicted_per_second"] for r in rows), 1),
            "probe_prompt_tokens": prompt}


def run_cell(policy: str, level: int, data: list, args: argparse.Namespace, logs: Path) -> dict:
    extra = ["--cache-ram", "0", "--slot-prompt-similarity", str(args.similarity)]
    servers = [LlamaServer(ctx_per_slot=args.ctx, parallel=args.slots, threads=1, extra_args=extra,
                           log_path=logs / f"{policy}-{level}-{i}.log") for i in range(2)]
    # The router's idea of a replica's cache: its slots, in blocks of the mean prompt.
    mean_chars = sum(len(json.dumps(m, ensure_ascii=False)) for _, m in data) / len(data)
    router = Router(policy, 2, cache_blocks=int(args.slots * mean_chars / BLOCK_CHARS))
    try:
        for s in servers:
            s.start()
        urls = [s.url for s in servers]
        model = servers[0].model

        def drive(items: list, max_tokens: int) -> list[dict]:
            rows: list[dict] = []
            lock = threading.Lock()
            it = iter(items)

            def worker() -> None:
                with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
                    while True:  # one connection per request: llama-server may close an idle keep-alive one
                        with lock:
                            nxt = next(it, None)
                        if nxt is None:
                            return
                        name, messages = nxt
                        r = router.pick(block_hashes(messages))
                        try:
                            row = one_request(client, urls[r], model, messages, max_tokens)
                        finally:
                            router.done(r)
                        with lock:
                            rows.append({"name": name, "replica": r, **row})

            with ThreadPoolExecutor(level) as pool:
                for f in [pool.submit(worker) for _ in range(level)]:
                    f.result()
            return rows

        drive(list(data), 1)  # warm-up pass, as GuideLLM's rate-25 / 1-token run
        t0 = time.monotonic()
        rows = drive([data[i % len(data)] for i in range(args.rounds * len(data))], args.max_tokens)
        wall = time.monotonic() - t0
    finally:
        for s in servers:
            s.stop()
    ttfts = sorted(r["ttft_s"] for r in rows)
    p99 = ttfts[min(len(ttfts) - 1, int(round(0.99 * (len(ttfts) - 1))))]
    prompt = sum(r["prompt_n"] or 0 for r in rows) + sum(r["cache_n"] or 0 for r in rows)
    cached = sum(r["cache_n"] or 0 for r in rows)
    return {"policy": policy, "concurrency": level, "requests": len(rows), "wall_s": round(wall, 2),
            "ttft_mean_s": round(statistics.fmean(ttfts), 3), "ttft_p50_s": round(statistics.median(ttfts), 3),
            "ttft_p99_s": round(p99, 3), "cached_token_share": round(cached / prompt, 3) if prompt else None,
            "per_replica": [sum(1 for r in rows if r["replica"] == i) for i in range(2)], "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    ap.add_argument("--rounds", type=int, default=2, help="passes over the dataset per measured cell")
    ap.add_argument("--max-tokens", type=int, default=16, help="output tokens per measured request (small: CPU)")
    ap.add_argument("--ctx", type=int, default=1536, help="context per slot; sets the map-part size")
    ap.add_argument("--slots", type=int, default=10, help="--parallel of each replica: its prompt cache, in prompts")
    ap.add_argument("--similarity", type=float, default=0.9, help="--slot-prompt-similarity of each replica")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = dataset(args.ctx, args.max_tokens)
    logs = Path("/tmp") / f"ttft-routing-{int(time.time())}"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"{len(data)} distinct requests, {args.rounds} rounds per cell, max_tokens {args.max_tokens}, "
          f"{args.slots} slots per replica (similarity {args.similarity}); logs {logs}", flush=True)
    speed = probe_speed(data, args, logs)
    print(f"one replica alone: prefill {speed['prefill_tokens_per_s']} tok/s, decode {speed['decode_tokens_per_s']} "
          "tok/s", flush=True)
    cells = []
    for level in args.levels:
        for policy in ("random", "prefix"):
            cell = run_cell(policy, level, data, args, logs)
            cells.append(cell)
            print(f"c={level:>2} {policy:<12} ttft mean {cell['ttft_mean_s']:.3f}s p99 {cell['ttft_p99_s']:.3f}s "
                  f"cached {cell['cached_token_share']} split {cell['per_replica']} wall {cell['wall_s']}s",
                  flush=True)
    summary = []
    for level in args.levels:
        rnd, px = (next(c for c in cells if c["concurrency"] == level and c["policy"] == p)
                   for p in ("random", "prefix"))
        summary.append({"concurrency": level, "random_mean_s": rnd["ttft_mean_s"], "prefix_mean_s": px["ttft_mean_s"],
                        "mean_change": round(px["ttft_mean_s"] / rnd["ttft_mean_s"] - 1, 3),
                        "random_p99_s": rnd["ttft_p99_s"], "prefix_p99_s": px["ttft_p99_s"],
                        "p99_change": round(px["ttft_p99_s"] / rnd["ttft_p99_s"] - 1, 3),
                        "random_cached": rnd["cached_token_share"], "prefix_cached": px["cached_token_share"]})
    print("\n| concurrency | random mean / p99 | prefix-aware mean / p99 | change mean / p99 | cached tokens random / prefix |")
    print("|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['concurrency']} | {s['random_mean_s']:.2f} / {s['random_p99_s']:.2f} s | {s['prefix_mean_s']:.2f} / "
              f"{s['prefix_p99_s']:.2f} s | {s['mean_change']:+.0%} / {s['p99_change']:+.0%} | "
              f"{s['random_cached']} / {s['prefix_cached']} |")
    if args.json:
        mean_prompt = statistics.fmean(r["prompt_n"] + r["cache_n"] for c in cells for r in c["rows"]
                                       if r["prompt_n"] is not None and r["cache_n"] is not None)
        doc = {"command": " ".join(sys.argv), "model": "bundled SmolLM2-135M-Instruct Q4_1", "device": "cpu",
               "replicas": 2, "threads_per_replica": 1, "slots": args.slots, "slot_prompt_similarity": args.similarity, "cache_ram_mib": 0,
               "ctx_per_slot": args.ctx, "max_tokens": args.max_tokens, "rounds": args.rounds,
               "distinct_requests": len(data), "mean_prompt_tokens": round(mean_prompt, 1),
               **speed,
               "summary": summary,
               "cells": [{k: v for k, v in c.items() if k != "rows"} | {"rows": c["rows"]} for c in cells]}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
