"""Output artifacts: after an attempt, store each declared ``outputs.artifacts`` path in a local repository.

Upstream (argo-workflows v4.1.2):

* ``workflow/executor/postmain.go`` ``PostMain``: artifacts are saved once the main container has exited,
  whatever its exit status (so a failed attempt's artifacts are kept too);
* ``workflow/executor/executor.go`` ``SaveArtifacts`` / ``saveArtifact``: an ``optional`` artifact whose path
  does not exist is skipped; a missing non-optional one is an error of the attempt (locally: a Succeeded
  attempt becomes Error, a Failed one keeps its own failure);
* ``executor.go`` ``stageArchiveFile``: ``archive: {none: {}}`` stores the file (or folder) as it is, under the
  base name of its path; no ``archive`` (or ``tar``) stores ``<name>.tgz``, a gzip tarball whose entries start
  with that base name (``util/archive/archive.go`` ``TarGzToWriter``), at ``tar.compressionLevel``;
* the repository key is ``{{workflow.name}}/{{pod.name}}`` (the default ``keyFormat``); locally each attempt
  is its own "pod": ``<workdir>/artifacts/<run>/<node id>/attempt-<n>/``.

Everything else about artifacts (input artifacts, s3/git/http/... locations, zip, artifactGC, globalName) is
refused up front by :mod:`.validate`.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["store_artifacts", "stored_name"]


def stored_name(artifact: Mapping[str, Any]) -> str:
    """The file name Argo gives the artifact in the repository (stageArchiveFile)."""
    if "none" in (artifact.get("archive") or {}):
        return posixpath.basename(posixpath.normpath(str(artifact["path"])))
    return f"{artifact['name']}.tgz"


def _tgz(src: Path, dest: Path, level: int) -> None:
    # Go's gzip.DefaultCompression (-1) is zlib's level 6.
    with tarfile.open(dest, "w:gz", compresslevel=6 if level < 0 else level) as tar:
        tar.add(src, arcname=src.name)


def store_artifacts(
    declared: list[Mapping[str, Any]], local: Callable[[str], Path], dest: Path
) -> tuple[dict[str, Path], list[str]]:
    """Copy each declared artifact from ``local(path)`` into ``dest``.

    Returns ``(stored, problems)``: name -> stored file or folder, and one message per non-optional artifact
    that is missing, and per artifact that could not be stored.
    """
    stored: dict[str, Path] = {}
    problems: list[str] = []
    for art in declared:
        name, path = str(art["name"]), str(art["path"])
        src = local(path)
        if not src.exists():
            if not art.get("optional"):
                problems.append(f"output artifact {name!r}: {path} no such file or directory "
                                f"(looked for the local path {src})")
            continue
        target = dest / stored_name(art)
        archive = art.get("archive") or {}
        try:
            dest.mkdir(parents=True, exist_ok=True)
            if "none" not in archive:
                level = (archive.get("tar") or {}).get("compressionLevel")
                _tgz(src, target, -1 if level is None else int(level))
            elif src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, target)
        except OSError as exc:  # Argo: the upload failed, an error of the attempt
            problems.append(f"output artifact {name!r}: cannot store {path}: {exc}")
            continue
        stored[name] = target
    return stored, problems
