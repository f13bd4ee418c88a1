"""The GPUs of the simulated cluster and how a pod gets a device on them: a whole GPU, an instance of a static MIG
mix, or a DAS slice created for the pod (and deleted after it, which takes time during which its memory slices
stay taken).

Placement, as the schedulers do it: kube-scheduler binds a whole-GPU or static-MIG pod to any free device of the
requested resource (lowest index; with ``prefer_warm`` a node that already has the image, ImageLocality's job);
DAS's scheduler plugin places a profile on a GPU where the MIG table allows it. Which GPU DAS prefers is not
documented; this model packs (most compute slices in use first), which keeps whole GPUs free for large profiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.capacity.model import WHOLE, Inventory, MigLayout, MigProfile, Placed, Slicing, static_layout


@dataclass
class Device:
    """One allocation: a whole GPU, or a MIG instance on ``gpu``."""

    gpu: int
    node: int
    profile: MigProfile | None  # None: the whole GPU
    placed: Placed | None = None
    pod: str | None = None

    @property
    def share(self) -> float:
        return 1.0 if self.profile is None else self.profile.share

    @property
    def held_share(self) -> float:
        """Fraction of the GPU this device takes from everyone else: its compute slices or its memory slices,
        whichever is the larger share (4 x 1g.10gb use 4/7 of the SMs but all 8 memory slices: the GPU is full)."""
        if self.profile is None:
            return 1.0
        return max(self.profile.compute / 7, self.profile.memory_slices / 8)

    @property
    def memory_gb(self) -> float:
        return self.profile.memory_gb if self.profile is not None else -1.0

    def label(self) -> str:
        if self.profile is None:
            return f"gpu{self.gpu}"
        return f"gpu{self.gpu}/{self.profile.name}@{self.placed.start if self.placed else '?'}"


class Cluster:
    def __init__(self, inventory: Inventory, slicing: Slicing):
        self.inv = inventory
        self.slicing = slicing
        n = inventory.count
        self.node_of = [g // inventory.per_node for g in range(n)]
        self.static: list[Device] = []
        self.layouts: list[MigLayout] = []
        if slicing.mode == "whole":
            self.static = [Device(g, self.node_of[g], None) for g in range(n)]
        elif slicing.mode == "static":
            for g in range(n):
                layout = static_layout(inventory.gpu, slicing.mix)
                self.static += [Device(g, self.node_of[g], p.profile, p) for p in layout.instances]
        elif slicing.mode == "das":
            self.layouts = [MigLayout(inventory.gpu) for _ in range(n)]
        else:
            raise ValueError(f"unknown slicing mode {slicing.mode!r}")

    # --- what can ever run ------------------------------------------------------------------------------------
    def profile_for(self, resource: str) -> MigProfile | None:
        """The MIG profile a request names (None: a whole GPU). Under DAS a whole-GPU request is the 7g profile:
        DAS renames nvidia.com/gpu to mig.das.com/gpu (ecosystem.md §2.3)."""
        if resource == WHOLE:
            if self.slicing.mode == "das":
                return max(self.inv.gpu.profiles, key=lambda p: p.compute)
            return None
        return self.inv.gpu.profile(resource)

    def units(self, resource: str) -> int:
        """Devices of ``resource`` the cluster could hold at once: its physical capacity (the default quota)."""
        if self.slicing.mode == "das":
            p = self.profile_for(resource)
            layout = MigLayout(self.inv.gpu)
            while layout.place(p) is not None:
                pass
            return len(layout.instances) * self.inv.count
        want = self.profile_for(resource)
        return sum(1 for d in self.static if (d.profile.name if d.profile else None) == (want.name if want else None))

    def can_ever_fit(self, resource: str) -> bool:
        try:
            return self.units(resource) > 0
        except ValueError:
            return False

    # --- binding ------------------------------------------------------------------------------------------------
    def bind(self, pod: str, resource: str, warm_nodes: set[int] | None = None) -> Device | None:
        """A free device for ``pod`` now (DAS: a new instance placed on some GPU), or None."""
        if self.slicing.mode == "das":
            return self._das_place(pod, self.profile_for(resource))
        want = self.profile_for(resource)
        free = [d for d in self.static if d.pod is None and d.profile == want]
        if not free:
            return None
        if warm_nodes:
            free.sort(key=lambda d: (d.node not in warm_nodes, d.gpu))
        free[0].pod = pod
        return free[0]

    def _das_place(self, pod: str, profile: MigProfile) -> Device | None:
        order = sorted(range(len(self.layouts)), key=lambda g: (-self.layouts[g].compute_used, g))
        for g in order:
            placed = self.layouts[g].place(profile)
            if placed is not None:
                return Device(g, self.node_of[g], profile, placed, pod)
        return None

    def release(self, device: Device) -> None:
        """The device is free again (for DAS: the instance is gone, called after the deletion delay)."""
        device.pod = None
        if self.slicing.mode == "das":
            self.layouts[device.gpu].remove(device.placed)

    def devices_label(self) -> list[str]:
        if self.slicing.mode == "das":
            return [f"gpu{g}" for g in range(self.inv.count)]
        return [d.label() for d in self.static]
