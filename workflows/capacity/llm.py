"""The summarize stage: requests to a pool of LLM replicas behind a router, as a fluid model in small time steps.

A replica (``LLMProfile``) has a KV memory of ``kv_tokens`` that holds the running sequences and, in the rest, an
LRU prefix cache of prompts it computed before (vLLM's automatic prefix caching, llama-server's prompt cache). A
prompt is a chain of segments (the stable instruction block, then the transcript or a part of it); the tokens of
the longest chain prefix the replica still holds are not computed again. Prefill of the rest is shared equally by
the requests prefilling at once (``prefill_tps`` per replica, at most ``prefill_chunk`` tokens an iteration); TTFT
ends with the iteration that finishes the prefill. Decoding ``n`` sequences costs ``(1 + slowdown * (n - 1)) /
decode_tps`` an iteration, in the same iterations as the prefill chunks (see ``Replica.step``).

Routers: ``round-robin``; ``random`` (the paper's baseline, llm-d's random-picker); ``prefix``: llm-d's
precise-prefix-cache profile, score = 3 x cached-prefix fraction + 2 x (1 - KV use) + 2 x (1 - queue share), the
highest wins. Prefix routing only helps when the same content comes back (the same transcript again: a load
generator cycling a dataset, a re-run, a retry) and the pool's cache can hold it while one replica's cannot.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from workflows.capacity import defaults as D
from workflows.capacity.calibration import LLMProfile

Prompt = tuple[tuple[str, int], ...]  # (segment key, tokens), stable prefix first


@dataclass
class Request:
    rid: int
    prompt: Prompt
    out_tokens: int
    tag: str = ""
    sent: float = 0.0
    ttft: float | None = None
    done: float | None = None
    cached: int = 0
    prefill_left: float = 0.0
    generated: float = 0.0
    replica: int = -1

    @property
    def tokens(self) -> int:
        return sum(t for _, t in self.prompt)


def _chains(prompt: Prompt) -> list[tuple[tuple[str, ...], int]]:
    keys: list[str] = []
    out = []
    for key, tokens in prompt:
        keys.append(key)
        out.append((tuple(keys), tokens))
    return out


@dataclass
class Replica:
    profile: LLMProfile
    cache: OrderedDict = field(default_factory=OrderedDict)  # chain key -> tokens of its last segment
    cached_tokens: int = 0
    waiting: list[Request] = field(default_factory=list)
    running: list[Request] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return int(self.profile.kv_tokens.value)

    def hit(self, prompt: Prompt) -> int:
        got = 0
        for key, tokens in _chains(prompt):
            if key not in self.cache:
                break
            got += tokens
        return got

    def running_tokens(self) -> int:
        return sum(r.tokens + int(r.generated) for r in self.running)

    def _remember(self, prompt: Prompt) -> None:
        for key, tokens in _chains(prompt):
            if key not in self.cache:
                self.cache[key] = tokens
                self.cached_tokens += tokens
            self.cache.move_to_end(key)
        pinned = {k for r in self.running for k, _ in _chains(r.prompt)}
        for key in list(self.cache):  # LRU first; prompts of running sequences stay
            if self.cached_tokens <= self.capacity:
                break
            if key not in pinned:
                self.cached_tokens -= self.cache.pop(key)

    def admit(self) -> None:
        while self.waiting and len(self.running) < self.profile.max_batch:
            r = self.waiting[0]
            if self.running and self.running_tokens() + r.tokens + r.out_tokens > self.capacity:
                break
            self.waiting.pop(0)
            r.cached = self.hit(r.prompt)
            r.prefill_left = r.tokens - r.cached
            self.running.append(r)
            self._remember(r.prompt)

    def step(self, now: float, dt: float) -> list[Request]:
        """Advance ``dt``; returns the requests that finished.

        Iteration-level batching, as llama-server and vLLM (chunked prefill) run: each iteration computes up to
        ``prefill_chunk`` prompt tokens (shared by the requests prefilling) and one token of every decoding
        sequence, and takes as long as both; so a long prefill slows everyone's decoding and vice versa."""
        self.admit()
        pre = [r for r in self.running if r.prefill_left > 0]
        decoding = [r for r in self.running if r.prefill_left <= 0]
        p = self.profile
        chunk = min(p.prefill_chunk, sum(r.prefill_left for r in pre))
        t_decode = (1 + p.decode_slowdown.value * (len(decoding) - 1)) / p.decode_tps.value if decoding else 0.0
        iteration = chunk / p.prefill_tps.value + t_decode
        if iteration <= 0:
            return []
        iterations = dt / iteration
        for r in pre:
            r.prefill_left -= chunk * iterations / len(pre)
            if r.prefill_left <= 0 and r.ttft is None:  # the first token comes with the iteration that ends it
                r.ttft = now + dt + iteration - r.sent
        for r in decoding:
            if r.ttft is None:  # a prompt served wholly from cache: its first token is this iteration's
                r.ttft = now + iteration - r.sent
            r.generated += iterations
        finished = [r for r in decoding if r.generated >= r.out_tokens]
        for r in finished:
            r.done = now + dt
            self.running.remove(r)
        return finished


class Router:
    def __init__(self, policy: str, replicas: list[Replica], seed: int = D.SEED):
        if policy not in ("round-robin", "random", "prefix"):
            raise ValueError(f"routing policy {policy!r}: round-robin, random or prefix")
        self.policy, self.replicas, self.n = policy, replicas, 0
        self.rng = random.Random(seed)

    def pick(self, r: Request) -> int:
        if self.policy == "round-robin":
            self.n += 1
            return (self.n - 1) % len(self.replicas)
        if self.policy == "random":
            return self.rng.randrange(len(self.replicas))
        queues = [len(x.waiting) + len(x.running) for x in self.replicas]
        most = max(max(queues), 1)

        def score(i: int) -> float:
            x = self.replicas[i]
            prefix = x.hit(r.prompt) / max(r.tokens, 1)
            kv = min(1.0, x.running_tokens() / max(x.capacity, 1))
            return 3 * prefix + 2 * (1 - kv) + 2 * (1 - queues[i] / most)

        scores = [score(i) for i in range(len(self.replicas))]
        best = max(scores)
        # llm-d's max-score picker takes one of the best at random: no herding onto replica 0 on a tie.
        return self.rng.choice([i for i, s in enumerate(scores) if s >= best - 1e-12])


def run_closed_loop(pool: list[Replica], router: Router, requests: list[Request], concurrency: int,
                    start: float = 0.0, dt: float = D.LLM_STEP_S) -> float:
    """Send ``requests`` in order with ``concurrency`` in flight (GuideLLM's concurrent mode); returns the end time."""
    todo = list(requests)
    in_flight = 0
    now = start

    def send() -> None:
        nonlocal in_flight
        while todo and in_flight < concurrency:
            r = todo.pop(0)
            r.sent = now
            r.replica = router.pick(r)
            pool[r.replica].waiting.append(r)
            in_flight += 1

    send()
    while in_flight:
        for replica in pool:
            in_flight -= len(replica.step(now, dt))
        now += dt
        send()
    return now


def pool_of(profile: LLMProfile, replicas: int) -> list[Replica]:
    return [Replica(profile) for _ in range(replicas)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]
