"""Extended-resource admission, like a queue (Kueue) in front of the cluster would do.

Only extended resources (names containing ``/``, e.g. ``nvidia.com/gpu`` or
``nvidia.com/mig-1g.10gb``) are counted; cpu and memory are ignored locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import WorkflowError

__all__ = ["parse_quantity", "extended_requests", "capacity_problem", "ResourcePool"]


def parse_quantity(value: Any, what: str = "quantity") -> float:
    """A Kubernetes quantity (``1``, ``"2"``, ``"500m"``, ``"1Gi"``) as a number: ``kubernetes.utils.parse_quantity``
    (the one parser), with its errors as :class:`WorkflowError` naming ``what``."""
    from kubernetes.utils import parse_quantity as k8s_quantity  # imported when needed: kubernetes takes ~0.3 s

    if isinstance(value, bool):
        raise WorkflowError(f"{what}: invalid quantity {value!r}")
    try:
        number = k8s_quantity(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, ArithmeticError):
        raise WorkflowError(f"{what}: invalid quantity {value!r}") from None
    if not number.is_finite():
        raise WorkflowError(f"{what}: invalid quantity {value!r}")
    return float(number)


def extended_requests(resources: Mapping[str, Any] | None, what: str = "resources") -> dict[str, float]:
    """Extended resources a container asks for: per name, the larger of its limit and request."""
    needs: dict[str, float] = {}
    for section in ("requests", "limits"):
        for name, qty in ((resources or {}).get(section) or {}).items():
            if "/" in name:
                amount = parse_quantity(qty, f"{what}.{section}.{name}")
                needs[name] = max(needs.get(name, 0.0), amount)
    return {k: v for k, v in needs.items() if v > 0}


def capacity_problem(needs: Mapping[str, float], capacity: Mapping[str, float]) -> str | None:
    """Why ``needs`` can never be admitted under ``capacity`` (None when it can)."""
    for name, amount in needs.items():
        if name not in capacity or capacity[name] <= 0:
            return (
                f"no local capacity for {name}; pass capacity={{{name!r}: N}} to LocalRunner "
                f"(the task asks for {amount:g})"
            )
        if amount > capacity[name]:
            return f"local capacity for {name} is {capacity[name]:g} but the task asks for {amount:g}"
    return None


class ResourcePool:
    """Counts free extended resources. Not thread-safe: used only by the walker thread."""

    def __init__(self, capacity: Mapping[str, Any] | None) -> None:
        self.capacity = {k: parse_quantity(v, f"capacity[{k}]") for k, v in (capacity or {}).items()}
        self.used: dict[str, float] = {k: 0.0 for k in self.capacity}

    def fits(self, needs: Mapping[str, float]) -> bool:
        return all(self.used.get(k, 0.0) + v <= self.capacity.get(k, 0.0) + 1e-9 for k, v in needs.items())

    def acquire(self, needs: Mapping[str, float]) -> None:
        for k, v in needs.items():
            self.used[k] = self.used.get(k, 0.0) + v

    def release(self, needs: Mapping[str, float]) -> None:
        for k, v in needs.items():
            self.used[k] = max(0.0, self.used.get(k, 0.0) - v)
