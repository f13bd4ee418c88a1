"""Kueue's admission, as far as it decides when a Whisper pod may start: one ClusterQueue, a nominal quota per
resource, workloads ordered by priority then creation time.

* ``BestEffortFIFO``: a workload that does not fit the free quota is set aside and the ones behind it are tried
  (Kueue marks it inadmissible and requeues it when quota frees).
* ``StrictFIFO``: the head blocks the queue until it fits: nothing behind it is admitted (head-of-line blocking).
* Preemption (``withinClusterQueue: LowerPriority``): a pending workload that does not fit evicts admitted ones of
  lower priority, lowest priority and most recently admitted first, until it fits.

Quota is counted, not placed: Kueue does not know where a MIG profile fits, so it can admit a mix DAS cannot
place (ecosystem.md §1.5); those pods then wait in the scheduler. The simulator models exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Workload:
    name: str
    resource: str
    priority: int
    created: float
    seq: int
    admitted_at: float | None = None

    def order(self) -> tuple[int, float, int]:
        return (-self.priority, self.created, self.seq)


class ClusterQueue:
    def __init__(self, quota: dict[str, int], strategy: str = "BestEffortFIFO", preemption: bool = False):
        if strategy not in ("BestEffortFIFO", "StrictFIFO"):
            raise ValueError(f"queueing strategy {strategy!r}: BestEffortFIFO or StrictFIFO")
        bad = {k: v for k, v in quota.items() if v < 0}
        if bad:
            raise ValueError(f"negative quota: {bad}")
        self.quota = dict(quota)
        self.strategy = strategy
        self.preemption = preemption
        self.usage = {k: 0 for k in quota}
        self.pending: list[Workload] = []
        self.admitted: dict[str, Workload] = {}

    def covers(self, resource: str) -> bool:
        return resource in self.quota

    def submit(self, w: Workload) -> None:
        if not self.covers(w.resource):
            raise ValueError(f"the ClusterQueue has no quota for {w.resource} (quota: {self.quota})")
        self.pending.append(w)

    def finish(self, name: str) -> None:
        w = self.admitted.pop(name)
        self.usage[w.resource] -= 1

    def _fits(self, w: Workload) -> bool:
        return self.usage[w.resource] + 1 <= self.quota[w.resource]

    def _take(self, w: Workload, now: float) -> None:
        self.usage[w.resource] += 1
        w.admitted_at = now
        self.admitted[w.name] = w
        self.pending.remove(w)

    def _victims(self, w: Workload) -> list[Workload] | None:
        """Admitted workloads to evict so ``w`` fits, or None when evicting every lower-priority one is not enough."""
        candidates = sorted((a for a in self.admitted.values() if a.resource == w.resource and a.priority < w.priority),
                            key=lambda a: (a.priority, -(a.admitted_at or 0.0), -a.seq))
        need = self.usage[w.resource] + 1 - self.quota[w.resource]
        return candidates[:need] if len(candidates) >= need else None

    def admit(self, now: float) -> tuple[list[Workload], list[Workload]]:
        """One admission pass: (admitted now, evicted now). Evicted workloads are back in ``pending``."""
        admitted: list[Workload] = []
        evicted: list[Workload] = []
        for w in sorted(self.pending, key=Workload.order):
            if self._fits(w):
                self._take(w, now)
                admitted.append(w)
                continue
            victims = self._victims(w) if self.preemption else None
            if victims:
                for v in victims:
                    self.finish(v.name)
                    v.admitted_at = None
                    self.pending.append(v)
                    evicted.append(v)
                self._take(w, now)
                admitted.append(w)
                continue
            if self.strategy == "StrictFIFO":
                break
        return admitted, evicted
