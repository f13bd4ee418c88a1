"""What ``kubescribe run`` transcribes: one folder, one or more files, or globs, local or ``s3://``.

Every form becomes one input root (the folder or prefix the plan step reads, ``--input``) and, unless the whole
root was asked for, a selection of keys and folders under it that the plan step reads from the run's state
(``steps.plan.selection_key``). The root is the deepest folder holding every selected input, so input names in
the report, and output names, are relative to it: ``kubescribe run calls/a.wav`` writes ``transcripts/a.txt``, as
``kubescribe run calls/`` does. Symbolic links are not staged: the plan reads the user's files where they are.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from steps.store import open_store

_WILDCARDS = set("*?[")


class InputError(ValueError):
    """An input argument names nothing usable (a usage error: exit 2, one line)."""


@dataclass(frozen=True)
class Inputs:
    """``root``: a local absolute folder or ``s3://bucket/prefix``; ``include``: keys (``a.wav``) and folders
    (``calls/``) relative to it, or None for everything under it."""

    root: str
    include: list[str] | None = None

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")


def has_glob(text: str) -> bool:
    return bool(_WILDCARDS.intersection(text))


def resolve_inputs(args: list[str]) -> Inputs:
    """The root and selection for the ``run`` arguments. Raises :class:`InputError` for a path that does not
    exist, a pattern that matches nothing, or local and S3 inputs mixed. S3 arguments are looked up (listed), so
    the S3 endpoint must answer (the caller checks it first)."""
    if not args:
        raise InputError("no input given: name a folder, files or a glob")
    s3 = [a.startswith("s3://") for a in args]
    if any(s3) and not all(s3):
        raise InputError("inputs mix local paths and s3:// URLs: give one kind per run")
    return _resolve_s3(args) if all(s3) else _resolve_local(args)


# --- local ---------------------------------------------------------------------------------------------------------


def _resolve_local(args: list[str]) -> Inputs:
    entries: list[tuple[Path, bool]] = []  # (absolute path, is a folder)
    for arg in args:
        expanded = os.path.expanduser(arg)
        if has_glob(expanded) and not os.path.lexists(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                raise InputError(f"no file matches {arg}")
            entries += [(Path(m).absolute(), os.path.isdir(m)) for m in matches]
        elif os.path.isdir(expanded):
            entries.append((Path(os.path.abspath(expanded)), True))
        elif os.path.lexists(expanded):  # a file (or a broken link, a pipe: the plan says why it fails)
            entries.append((Path(os.path.abspath(expanded)), False))
        else:
            raise InputError(f"audio input not found: {arg}")
    if len(entries) == 1 and entries[0][1]:
        return Inputs(str(entries[0][0]))
    folders = [p if is_dir else p.parent for p, is_dir in entries]
    root = Path(os.path.commonpath([str(f) for f in folders]))
    include = [_rel(p.relative_to(root).as_posix(), is_dir) for p, is_dir in entries]
    return Inputs(str(root), None if "" in include else _unique(include))


# --- S3 --------------------------------------------------------------------------------------------------------------


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key.strip("/")


def _resolve_s3(args: list[str]) -> Inputs:
    entries: list[tuple[str, str, bool]] = []  # (bucket, key, is a folder)
    for arg in args:
        bucket, key = _split(arg)
        if not bucket:
            raise InputError(f"no bucket in {arg}")
        if has_glob(key):
            parts = key.split("/")
            fixed = next(i for i, p in enumerate(parts) if has_glob(p))
            base = "/".join(parts[:fixed])
            store = open_store(f"s3://{bucket}/{base}")
            pattern = "/".join(parts[fixed:])
            matches = [o.key for o in store.list() if fnmatch.fnmatchcase(o.key, pattern)]
            if not matches:
                raise InputError(f"no object matches {arg}")
            entries += [(bucket, posixpath.join(base, m) if base else m, False) for m in matches]
            continue
        parent, _, name = key.rpartition("/")
        if name and open_store(f"s3://{bucket}/{parent}").exists(name):
            entries.append((bucket, key, False))  # an object: a file
        else:
            entries.append((bucket, key, True))  # a prefix (empty or missing ones are caught as "no audio found")
    if len({b for b, _, _ in entries}) > 1:
        raise InputError("inputs are in more than one bucket: give one bucket per run")
    bucket = entries[0][0]
    if len(entries) == 1 and entries[0][2]:
        return Inputs(f"s3://{bucket}/{entries[0][1]}".rstrip("/"))
    folders = [k if is_dir else posixpath.dirname(k) for _, k, is_dir in entries]
    root = _common_prefix(folders)
    include = [_rel(k[len(root):].lstrip("/") if root else k, is_dir) for _, k, is_dir in entries]
    url = f"s3://{bucket}/{root}".rstrip("/")
    return Inputs(url, None if "" in include else _unique(include))


def _common_prefix(keys: list[str]) -> str:
    split = [k.split("/") if k else [] for k in keys]
    common: list[str] = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def _rel(key: str, is_dir: bool) -> str:
    if key in ("", "."):
        return ""
    return key + "/" if is_dir else key


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
