"""A sampling profiler for the benchmarks: where each kind of thread spends its time, without extra packages.

Every ``interval`` seconds it reads every thread's Python stack (``sys._current_frames``) and counts, per thread
group (the thread's name without its number: ``chunk-decoder``, ``chunk-reader``, ``MainThread``...), the
functions on the stack (inclusive share) and the innermost one (self share). Python only: time inside a C call
(a CUDA launch, ffmpeg's pipe, a lock) is charged to the Python function that made it, which is what a decode
loop bound by launches and locks needs to show.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["StackSampler"]


def _group(name: str) -> str:
    return re.sub(r"[-_]?\d+$", "", name) or name


def _key(frame) -> str:
    return f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_name}"


class StackSampler:
    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: Counter = Counter()
        self.inclusive: dict[str, Counter] = defaultdict(Counter)
        self.own: dict[str, Counter] = defaultdict(Counter)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                group = _group(names.get(ident, "?"))
                self.samples[group] += 1
                self.own[group][_key(frame)] += 1
                seen = set()
                while frame is not None:
                    seen.add(_key(frame))
                    frame = frame.f_back
                self.inclusive[group].update(seen)

    def report(self, top: int = 12) -> dict:
        """Per thread group: samples, and the ``top`` functions by inclusive and by self share (fractions)."""
        out = {}
        for group, n in self.samples.most_common():
            out[group] = {
                "samples": n,
                "inclusive": {k: round(c / n, 3) for k, c in self.inclusive[group].most_common(top)},
                "self": {k: round(c / n, 3) for k, c in self.own[group].most_common(top)},
            }
        return out
