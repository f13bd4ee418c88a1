"""What a cluster is made of, for the capacity model: GPU types, their MIG profiles, and how slices are placed.

MIG profile tables are NVIDIA's (MIG user guide, "Supported MIG Profiles",
https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html): each profile has a fraction of
the GPU's streaming multiprocessors (``g``/7), a number of the 8 memory slices, a per-GPU maximum, and the memory
slices it may start at (``nvidia-smi mig -lgipp`` placements; A100-40GB and H100-80GB share the same layout, the
names differ by memory size). A layout is valid when no two instances share a memory slice and their compute
slices add up to at most 7: this is what the simulator enforces for static mixes and for DAS alike. ``+me``
profiles are left out (the chart rejects them, see charts/kubescribe/values.yaml ``whisper.accelerator``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Compute slices (GPCs) and memory slices of a MIG-capable GPU of the A100/H100 generation.
COMPUTE_SLICES = 7
MEMORY_SLICES = 8
WHOLE = "gpu"  # resource kind of a whole GPU (nvidia.com/gpu)


@dataclass(frozen=True)
class MigProfile:
    name: str  # "1g.5gb"
    compute: int  # compute slices (g)
    memory_slices: int  # of 8
    memory_gb: float
    max_count: int  # instances per GPU
    starts: tuple[int, ...]  # memory slices it may start at

    @property
    def share(self) -> float:
        """Fraction of the GPU a job on this slice can use: its SMs or its memory bandwidth, whichever is less."""
        return min(self.compute / COMPUTE_SLICES, self.memory_slices / MEMORY_SLICES)

    @property
    def resource(self) -> str:
        return f"nvidia.com/mig-{self.name}"


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gb: float
    profiles: tuple[MigProfile, ...]

    def profile(self, name: str) -> MigProfile:
        for p in self.profiles:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.profiles)
        raise ValueError(f"{self.name} has no MIG profile {name!r} (known: {known})")


def _table(unit_gb: int) -> tuple[MigProfile, ...]:
    """The A100/H100 profile layout with ``unit_gb`` GB per memory slice (5 for A100-40GB, 10 for H100-80GB)."""
    u = unit_gb
    return (
        MigProfile(f"1g.{u}gb", 1, 1, u, 7, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(f"1g.{2 * u}gb", 1, 2, 2 * u, 4, (0, 2, 4, 6)),
        MigProfile(f"2g.{2 * u}gb", 2, 2, 2 * u, 3, (0, 2, 4)),
        MigProfile(f"3g.{4 * u}gb", 3, 4, 4 * u, 2, (0, 4)),
        MigProfile(f"4g.{4 * u}gb", 4, 4, 4 * u, 1, (0,)),
        MigProfile(f"7g.{8 * u}gb", 7, 8, 8 * u, 1, (0,)),
    )


GPU_TYPES: dict[str, GpuType] = {
    "A100-40GB": GpuType("A100-40GB", 40, _table(5)),
    "H100-80GB": GpuType("H100-80GB", 80, _table(10)),
}


def gpu_type(name: str) -> GpuType:
    for key, t in GPU_TYPES.items():
        if key.lower() == name.lower():
            return t
    raise ValueError(f"unknown GPU type {name!r} (known: {', '.join(GPU_TYPES)})")


@dataclass(frozen=True)
class Placed:
    profile: MigProfile
    start: int

    @property
    def slices(self) -> range:
        return range(self.start, self.start + self.profile.memory_slices)


class MigLayout:
    """The MIG instances on one GPU; ``place`` finds a start for a new one (first fit), or None."""

    def __init__(self, gpu: GpuType):
        self.gpu = gpu
        self.instances: list[Placed] = []

    @property
    def compute_used(self) -> int:
        return sum(p.profile.compute for p in self.instances)

    def used_slices(self) -> set[int]:
        return {s for p in self.instances for s in p.slices}

    def count(self, name: str) -> int:
        return sum(1 for p in self.instances if p.profile.name == name)

    def where(self, profile: MigProfile) -> int | None:
        if self.count(profile.name) >= profile.max_count or self.compute_used + profile.compute > COMPUTE_SLICES:
            return None
        used = self.used_slices()
        for start in profile.starts:
            span = range(start, start + profile.memory_slices)
            if span.stop <= MEMORY_SLICES and not used.intersection(span):
                return start
        return None

    def place(self, profile: MigProfile) -> Placed | None:
        start = self.where(profile)
        if start is None:
            return None
        placed = Placed(profile, start)
        self.instances.append(placed)
        return placed

    def remove(self, placed: Placed) -> None:
        self.instances.remove(placed)

    def valid(self) -> bool:
        seen: set[int] = set()
        for p in self.instances:
            if p.start not in p.profile.starts or p.slices.stop > MEMORY_SLICES or seen.intersection(p.slices):
                return False
            seen.update(p.slices)
        counts_ok = all(self.count(p.profile.name) <= p.profile.max_count for p in self.instances)
        return counts_ok and self.compute_used <= COMPUTE_SLICES


def static_layout(gpu: GpuType, names: Iterable[str]) -> MigLayout:
    """A static MIG mix (what the GPU operator's mig-manager would create), checked against the profile table."""
    layout = MigLayout(gpu)
    for name in names:
        if layout.place(gpu.profile(name)) is None:
            raise ValueError(f"MIG mix does not fit one {gpu.name}: {' + '.join(names)} (at {name})")
    return layout


@dataclass(frozen=True)
class Inventory:
    """``count`` GPUs of one type, ``per_node`` to a node (image pulls are per node)."""

    gpu: GpuType
    count: int
    per_node: int

    @classmethod
    def parse(cls, text: str, per_node: int) -> Inventory:
        """``8xA100-40GB`` (also ``8*A100-40GB``, ``A100-40GB``)."""
        t = text.strip().replace("*", "x")
        count_s, _, name = t.partition("x") if t[:1].isdigit() else ("1", "", t)
        if not count_s.isdigit() or int(count_s) < 1:
            raise ValueError(f"GPU inventory {text!r}: expected COUNTxTYPE, e.g. 8xA100-40GB")
        return cls(gpu_type(name), int(count_s), max(1, per_node))

    def __str__(self) -> str:
        return f"{self.count}x{self.gpu.name}"


@dataclass(frozen=True)
class Slicing:
    """How the GPUs are cut: ``whole`` GPUs, a ``static`` MIG mix per GPU, or ``das`` (slices made per pod)."""

    mode: str  # whole | static | das
    mix: tuple[str, ...] = ()  # static: the profiles on every GPU

    def label(self) -> str:
        if self.mode == "static":
            return "static " + "+".join(self.mix)
        return {"whole": "whole GPUs", "das": "DAS"}[self.mode]


@dataclass(frozen=True)
class QueueConfig:
    """Kueue in front of the Whisper pods (``enabled``), or none: every pod is created and waits in the scheduler."""

    enabled: bool = True
    quota: dict[str, int] | None = None  # resource kind -> units; None: the physical capacity
    strategy: str = "BestEffortFIFO"  # or StrictFIFO
    preemption: bool = False  # withinClusterQueue: LowerPriority

    def label(self) -> str:
        if not self.enabled:
            return "no queue"
        quota = "" if self.quota is None else " quota " + ",".join(f"{k}={v}" for k, v in sorted(self.quota.items()))
        return f"kueue {self.strategy}{quota}{' +preempt' if self.preemption else ''}"


@dataclass
class WorkItem:
    """One recording: ``audio_s`` seconds of it."""

    name: str
    audio_s: float


@dataclass
class PodSpec:
    """One Whisper pod (a paper Job, or a kubescribe shard): the files it transcribes, on what it asks for."""

    name: str
    model: str
    resource: str  # WHOLE or a MIG profile name
    items: list[WorkItem]
    priority: int = 0
    batched: bool = False  # kubescribe's batched engine: every file of the pod is decoded together
    cached_weights: bool = False  # weights in the image / a volume: no download at start

    @property
    def audio_s(self) -> float:
        return sum(i.audio_s for i in self.items)
