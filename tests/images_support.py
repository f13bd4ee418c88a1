"""The Dockerfiles of images/, parsed (a small parser: stages, ARG/ENV/LABEL pairs), for the offline image checks
(tests/test_images.py) and the runs of the built images (tests/test_images_run.py)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

IMAGES = ROOT / "images"
VARIANTS = ("whisper", "steps")


# --- a small Dockerfile parser ----------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def values(self, keyword: str) -> list[str]:
        return [v for k, v in self.instructions if k == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def all(self, keyword: str) -> list[str]:
        return [v for s in self.stages for v in s.values(keyword)]


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # comments inside a continued instruction are dropped
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def pairs(value: str) -> dict[str, str]:
    """``K=V K2="v 2"`` (ENV / LABEL / ARG); the legacy ``ENV K V`` form too."""
    words = shlex.split(value)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) if "=" in w else (w, "") for w in words)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            words = [w for w in value.split() if not w.startswith("--platform")]
            base = _expand(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            parent = next((s for s in stages if s.name == base), None)
            stages.append(Stage(base, name, env=dict(parent.env) if parent else {}))
            continue
        if not stages:
            assert keyword == "ARG", f"{path}: only ARG may precede the first FROM, got {keyword}"
            global_args.update(pairs(value))
            continue
        stage = stages[-1]
        stage.instructions.append((keyword, value))
        if keyword == "ENV":
            stage.env.update({k: _expand(v, stage.env) for k, v in pairs(value).items()})
        if keyword == "LABEL":
            stage.labels.update(pairs(value))
    return Dockerfile(path, global_args, stages)


DOCKERFILES = {v: parse_dockerfile(IMAGES / v / "Dockerfile") for v in VARIANTS}
