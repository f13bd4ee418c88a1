"""In-pod paths of a template's declared outputs, mapped to a private folder of each attempt.

In a pod, a step writes its output parameters and artifacts to paths of its own filesystem (the pipeline's are
under ``/tmp/outputs`` on an emptyDir volume); the Argo executor reads them from there after the main container
exits (``workflow/executor/executor.go`` ``SaveParameters``, ``saveArtifact``). Locally, processes share one
filesystem, so every declared output path ``P`` lives at ``<attempt dir>/fs/P`` instead, and each mention of
it in the process's argv, environment and script source is rewritten. So is a mention of the folder that holds
``P`` (unless that folder is ``/`` or a volume's mount point): ``--artifacts-dir /tmp/outputs`` reaches the
same private folder as the declared ``/tmp/outputs/report.json``. Mentions are matched on path boundaries
(``/tmp/outputs`` is not rewritten inside ``/x/tmp/outputs`` or ``/tmp/outputs2``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PrivatePaths"]

_PATH_CHAR = r"A-Za-z0-9._~\-"


class PrivatePaths:
    """The private locations of one attempt's declared output paths, and the rewriting of their mentions."""

    def __init__(self, attempt_dir: Path, declared: Iterable[str], mount_points: Iterable[str] = ()) -> None:
        self.root = attempt_dir / "fs"
        mounts = {posixpath.normpath(m) for m in mount_points}
        prefixes: set[str] = set()
        for raw in declared:
            path = posixpath.normpath(str(raw))
            parent = posixpath.dirname(path)
            shared = parent in ("/", "") or parent in mounts
            prefixes.add(path if shared else parent)
            self.local(path).parent.mkdir(parents=True, exist_ok=True)
        ordered = sorted(prefixes, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(f"(?<![{_PATH_CHAR}/]){re.escape(p)}(?![{_PATH_CHAR}])" for p in ordered))
            if ordered else None
        )

    def local(self, in_pod: str) -> Path:
        """Where the in-pod path ``in_pod`` is on this machine for this attempt."""
        return self.root / posixpath.normpath(str(in_pod)).lstrip("/")

    def rewrite(self, text: str) -> str:
        """``text`` with every mention of a private in-pod path replaced by its local path."""
        if self._pattern is None or "/" not in text:
            return text
        return self._pattern.sub(lambda m: str(self.local(m.group(0))), text)
