"""Timeline of a simulated run as a PNG: one lane per GPU or slice (DAS: per GPU and placement), a bar per pod
phase (image pull, start-up, transcription, slice deletion)."""

from __future__ import annotations

import re
from pathlib import Path

from workflows.capacity.sim import Segment

COLOURS = {"pull": "#bbbbbb", "start": "#f0a030", "run": "#3070c0", "delete": "#c04040"}
MAX_LANES = 96  # beyond this a lane is a pixel: the PNG says how many were left out


def _lane_key(label: str) -> tuple[int, int, str]:
    m = re.match(r"gpu(\d+)(?:/\S+@(\d+))?", label)
    return (int(m.group(1)), int(m.group(2) or 0), label) if m else (10**9, 0, label)


def timeline_png(segments: list[Segment], path: Path, title: str, marks: dict[str, float] | None = None) -> Path:
    """Write the PNG; ``marks``: vertical lines (e.g. transcribe end, deadline) in seconds."""
    import matplotlib

    matplotlib.use("Agg")  # no display: this runs in terminals and CI
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = sorted({s.device for s in segments}, key=_lane_key)
    shown = lanes[:MAX_LANES]
    index = {lane: i for i, lane in enumerate(shown)}
    hours = 3600.0
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.22 * len(shown) + 1.5)), dpi=100)
    for s in segments:
        if s.device in index:
            ax.barh(index[s.device], (s.t1 - s.t0) / hours, left=s.t0 / hours, height=0.8,
                    color=COLOURS.get(s.phase, "#888888"), edgecolor="none")
    for label, t in (marks or {}).items():
        ax.axvline(t / hours, color="black", linestyle="--", linewidth=1)
        ax.text(t / hours, -0.6, f" {label}", fontsize=8, va="bottom")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(shown, fontsize=7 if len(shown) > 24 else 9)
    ax.invert_yaxis()
    ax.set_xlabel("hours since submission")
    more = f" ({len(lanes) - len(shown)} more lanes not shown)" if len(lanes) > len(shown) else ""
    ax.set_title(title + more, fontsize=10)
    ax.legend(handles=[Patch(color=c, label=p) for p, c in COLOURS.items()], loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
