"""Word timings for many decoded windows with one model pass: openai-whisper's ``find_alignment``, batched.

Whisper times words by running the model once more over a window's text and reading the cross-attention of its
alignment heads (``whisper.timing.find_alignment``), one window at a time, encoder included. Here the windows of a
batch go through one decoder pass over the encoder output their decode already computed: their token rows are padded
at the end with end-of-text, which the causal self-attention keeps from touching the real positions, and each row's
attention is then cut to its own tokens and frames and handed to whisper's own steps (the same softmax,
normalisation, median filter and DTW, on that row alone). The result is whisper's ``WordTiming`` list per window,
which ``whisper.timing.add_word_timestamps`` turns into words (``steps.chunk_transcribe`` hands it over);
``tests/test_batched.py`` compares it with whisper's own.
"""

from __future__ import annotations

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
    for row, i in enumerate(todo):
        results[i] = _row_alignment(requests[i], logits[row], [qks[layer][row, head] for layer, head in heads],
                                    len(rows[row]), medfilt_width, qk_scale)
    return results


def _row_alignment(req: AlignmentRequest, logits, head_weights, length: int, medfilt_width: int, qk_scale: float):
    """The rest of whisper's ``find_alignment`` for one row (its tokens are ``length`` long)."""
    import torch
    from whisper.timing import TOKENS_PER_SECOND, WordTiming, dtw, median_filter

    tokenizer, text_tokens = req.tokenizer, req.text_tokens
    sot = len(tokenizer.sot_sequence)
    with torch.no_grad():
        token_probs = logits[sot:length, : tokenizer.eot].float().softmax(dim=-1)
        text_token_probs = token_probs[np.arange(len(text_tokens)), text_tokens].tolist()
        weights = torch.stack(head_weights)[:, :length, : req.num_frames // 2]
        weights = (weights * qk_scale).softmax(dim=-1)
        std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
        weights = median_filter((weights - mean) / std, medfilt_width)
        matrix = weights.mean(axis=0)[sot:-1]
        text_indices, time_indices = dtw(-matrix)

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
