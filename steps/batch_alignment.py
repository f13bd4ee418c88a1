"""Word timings for many decoded windows with one model pass: openai-whisper's ``find_alignment``, batched.

Whisper times words by running the model once more over a window's text and reading the cross-attention of its
alignment heads (``whisper.timing.find_alignment``), one window at a time, encoder included. Here the windows of a
batch go through one decoder pass over the encoder output their decode already computed: their token rows are padded
at the end with end-of-text, which the causal self-attention keeps from touching the real positions, and each row's
attention is then cut to its own tokens and frames and put through whisper's own steps (the same softmax,
normalisation and median filter on the device, then whisper's CPU DTW, numba, on that row alone; the rows come to
the host in one transfer). Whisper's triton kernels for the median filter and DTW are not used: compiling them cost
seconds of each pod's warm-up, and a DTW per row on the device a sync per row. The result is whisper's
``WordTiming`` list per window, which ``whisper.timing.add_word_timestamps`` turns into words
(``steps.chunk_transcribe`` hands it over); ``tests/test_batched.py`` compares it with whisper's own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AlignmentRequest", "align_batch"]


@dataclass
class AlignmentRequest:
    """One window to time: its text tokens (no timestamps, no end-of-text), the encoder's output for its log-mel
    (``n_audio_ctx, n_audio_state``, on the model's device: the decode computed it already) and how many of its
    mel frames are audio."""

    tokenizer: Any
    text_tokens: list[int]
    audio_features: Any
    num_frames: int


def align_batch(model, requests: list[AlignmentRequest], *, medfilt_width: int = 7,
                qk_scale: float = 1.0) -> list[list]:
    """``whisper.timing.find_alignment`` for every request, with one decoder pass over all of them."""
    import torch
    from whisper.model import disable_sdpa

    results: list[list] = [[] for _ in requests]
    todo = [i for i, r in enumerate(requests) if r.text_tokens]
    if not todo:
        return results
    rows = [[*requests[i].tokenizer.sot_sequence, requests[i].tokenizer.no_timestamps, *requests[i].text_tokens,
             requests[i].tokenizer.eot] for i in todo]
    width = max(map(len, rows))
    eot = requests[todo[0]].tokenizer.eot
    tokens = torch.tensor([r + [eot] * (width - len(r)) for r in rows], device=model.device)
    features = torch.stack([requests[i].audio_features for i in todo])

    qks: list[Any] = [None] * model.dims.n_text_layer
    hooks = [block.cross_attn.register_forward_hook(lambda _, ins, outs, index=i: qks.__setitem__(index, outs[-1]))
             for i, block in enumerate(model.decoder.blocks)]
    try:
        with torch.no_grad(), disable_sdpa():
            logits = model.decoder(tokens, features)
    finally:
        for hook in hooks:
            hook.remove()
    heads = model.alignment_heads.indices().T.tolist()
    with torch.no_grad():
        rows_on_device = [_row_matrix(requests[i], logits[row], [qks[layer][row, head] for layer, head in heads],
                                      len(rows[row]), medfilt_width, qk_scale) for row, i in enumerate(todo)]
        # one transfer for the whole batch: a sync per row would cost more than the row's own work
        flat = torch.cat([t.flatten().double() for pair in rows_on_device for t in pair]).cpu().numpy()
    at = 0
    for (probs, matrix), i in zip(rows_on_device, todo):
        token_probs = flat[at:at + probs.numel()]
        at += probs.numel()
        cost = flat[at:at + matrix.numel()].reshape(matrix.shape)
        at += matrix.numel()
        results[i] = _word_timings(requests[i], token_probs, cost)
    return results


def _row_matrix(req: AlignmentRequest, logits, head_weights, length: int, medfilt_width: int, qk_scale: float):
    """The device part of whisper's ``find_alignment`` for one row (its tokens are ``length`` long): the text
    tokens' probabilities and the DTW cost matrix. The median filter is whisper's own formula without its triton
    kernel (compiling that kernel cost seconds of each pod's warm-up)."""
    import torch
    import torch.nn.functional as F

    tokenizer, text_tokens = req.tokenizer, req.text_tokens
    sot = len(tokenizer.sot_sequence)
    token_probs = logits[sot:length, : tokenizer.eot].float().softmax(dim=-1)
    text_token_probs = token_probs[np.arange(len(text_tokens)), text_tokens]
    weights = torch.stack(head_weights)[:, :length, : req.num_frames // 2]
    weights = (weights * qk_scale).softmax(dim=-1)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / std
    pad = medfilt_width // 2
    if weights.shape[-1] > pad:
        weights = F.pad(weights, (pad, pad, 0, 0), mode="reflect")
        weights = weights.unfold(-1, medfilt_width, 1).sort()[0][..., pad]
    matrix = weights.mean(axis=0)[sot:-1]
    return text_token_probs, -matrix


@functools.cache
def _dtw():
    """whisper's CPU DTW, compiled by numba with its on-disk cache: whisper's own is compiled again in every process
    (about 2 s on 2 cores), which a pod, a per-file process or a local run would pay before its first words."""
    import numba
    from whisper.timing import dtw_cpu

    try:
        return numba.njit(cache=True)(dtw_cpu.py_func)
    except RuntimeError:  # nowhere writable to cache it (read-only image, no NUMBA_CACHE_DIR): compile per process
        return dtw_cpu


def _word_timings(req: AlignmentRequest, text_token_probs: np.ndarray, cost: np.ndarray) -> list:
    """The host part of whisper's ``find_alignment``: its DTW (numba, on the CPU) and the words' times."""
    from whisper.timing import TOKENS_PER_SECOND, WordTiming

    tokenizer, text_tokens = req.tokenizer, req.text_tokens
    text_indices, time_indices = _dtw()(cost)
    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    word_boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    start_times = jump_times[word_boundaries[:-1]]
    end_times = jump_times[word_boundaries[1:]]
    probabilities = [np.mean(text_token_probs[i:j]) for i, j in zip(word_boundaries[:-1], word_boundaries[1:])]
    return [WordTiming(w, t, s, e, p)
            for w, t, s, e, p in zip(words, word_tokens, start_times, end_times, probabilities)]
