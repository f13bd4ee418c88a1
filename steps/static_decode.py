"""openai-whisper's text decoder with a preallocated KV cache, and a beam search that stays on the device.

``steps.batch_decoder`` plugs these into whisper's own ``DecodingTask`` (its prompts, logit filters, finalize and
ranking are untouched); this module only replaces the parts that set the pace of a batched decode on a GPU:

* :class:`StaticKVInference` stands in for whisper's ``PyTorchInference``. Whisper grows each layer's self-attention
  cache with ``torch.cat`` in forward hooks, casts every fp32 weight to fp16 on every call (its ``Linear`` does
  ``weight.to(x.dtype)``), and copies every row's cross-attention keys and values for each beam. Here the weights
  are cast once per model, the self-attention cache is written in place, and the beams of one audio share its
  cross-attention keys and values (their queries are stacked into one attention call instead). The arithmetic is
  whisper's, in the same order and precision (layer norms in fp32, SDPA attention), so the tokens are the same.
* After the prompt, each token's decoder step has fixed shapes (its position is a device tensor, its attention reads
  the whole cache with the keys past that position masked), and on CUDA it is captured once per decode as a CUDA
  graph and replayed: one launch per token instead of about 110 from Python. Masked keys add nothing to the
  attention, so the step computes what the eager one does (``tests/test_batched.py``; on an H200 the graph steps
  chose the eager steps' tokens, ``bench/decode_loop.py --model``).
* :func:`vectorized_beam_search` is whisper's ``BeamSearchDecoder`` with ``update`` done as tensor operations over
  every row at once: no Python per candidate, no host transfer per step other than the one "all done?" flag.
  Finished hypotheses are kept in device buffers and handed to whisper's ``finalize`` in whisper's format.
* A row caught in a repetition loop (:func:`loop_periods`) is stopped instead of being decoded to the 224-token
  limit while the rest of the batch waits: a beam-searched audio is done when its best beam loops, a sampled or
  greedy row gets its end-of-text. ``steps.batch_decoder`` then gives the result the compression ratio of the
  loop run on to that limit, so whisper's temperature fallback rejects it as it would have.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["LOOP_SPAN", "StaticKVInference", "loop_periods", "stopping_greedy", "vectorized_beam_search"]

#: A decode whose last LOOP_SPAN sampled tokens repeat with a period of at most LOOP_MAX_PERIOD tokens (every
#: timestamp counted as one kind of token, since a looping segment repeats with new times) is in a repetition loop.
#: Whisper runs such a row to its 224-token limit and then rejects it on its compression ratio; in a batch every
#: other row waits for it (bench/README.md: every decode of the KJV corpus on the H200 ran all 224 steps).
LOOP_SPAN = 48
LOOP_MAX_PERIOD = 24
#: Steps between loop checks (each check is a few small operations per period).
LOOP_CHECK_EVERY = 4


def loop_periods(tokens, sample_begin: int, timestamp_begin: int):
    """For each row of ``tokens`` (``rows, length``; sampling starts at ``sample_begin``), the period of the
    repetition its tail is caught in, or 0."""
    import torch

    sampled = tokens[:, sample_begin:]
    n = sampled.shape[1]
    if n <= LOOP_SPAN:
        return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    longest = min(LOOP_MAX_PERIOD, n - LOOP_SPAN)
    kinds = sampled[:, n - LOOP_SPAN - longest:].clamp(max=timestamp_begin)
    # window j is the span that starts j tokens in; the last one is the tail, which repeats with period longest - j
    spans = kinds.unfold(1, LOOP_SPAN, 1)
    repeats = (spans[:, :-1] == spans[:, -1:]).all(dim=-1)
    j = torch.where(repeats, torch.arange(longest, device=tokens.device), -1).max(dim=1).values
    return torch.where(j >= 0, longest - j, 0)  # the shortest period is the one reported


@dataclass
class _Weights:
    """The decoder's weights cast once to the compute dtype (layer norms stay fp32, as whisper computes them)."""

    token_embedding: Any  # fp32, as whisper adds the positional embedding before casting
    positional_embedding: Any
    token_embedding_t: Any  # compute dtype, for the logits
    blocks: list[dict[str, Any]]
    ln: tuple[Any, Any]


_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights(model, dtype) -> _Weights:
    """The model's decoder weights in ``dtype``, cached per model (a pod decodes thousands of batches)."""
    per_model = _WEIGHTS.setdefault(model, {})
    if dtype not in per_model:
        dec = model.decoder

        def lin(m):
            return m.weight.detach().to(dtype), None if m.bias is None else m.bias.detach().to(dtype)

        def ln(m):
            return m.weight.detach(), m.bias.detach()

        blocks = [{
            "attn_ln": ln(b.attn_ln), "q": lin(b.attn.query), "k": lin(b.attn.key), "v": lin(b.attn.value),
            "o": lin(b.attn.out), "cross_ln": ln(b.cross_attn_ln), "cq": lin(b.cross_attn.query),
            "ck": lin(b.cross_attn.key), "cv": lin(b.cross_attn.value), "co": lin(b.cross_attn.out),
            "mlp_ln": ln(b.mlp_ln), "fc1": lin(b.mlp[0]), "fc2": lin(b.mlp[2]),
        } for b in dec.blocks]
        per_model[dtype] = _Weights(dec.token_embedding.weight.detach(), dec.positional_embedding.detach(),
                                    dec.token_embedding.weight.detach().to(dtype).t(), blocks, ln(dec.ln))
    return per_model[dtype]


#: Whether one-token steps on CUDA are replayed as CUDA graphs (bench/throughput.py's ``batched-eager`` turns it off
#: to measure what they gain).
CUDA_GRAPHS = True
#: Per thread, the stream graphs are captured on (its cuBLAS workspace is set up once).
_CAPTURE = threading.local()


class StaticKVInference:
    """whisper's ``Inference`` interface (``logits``, ``rearrange_kv_cache``, ``cleanup_caching``) over a
    preallocated cache. ``n_group`` rows (beams or best-of samples) share one audio's cross-attention.

    After the prompt pass every step feeds one token per row, at a position held in a device tensor, attending over
    the whole cache with the keys past that position masked, so the step's shapes do not change from token to
    token. On CUDA it is captured once per decode as a CUDA graph and replayed: a step of tiny.en's decoder is about
    110 small kernels, and launching them one by one from Python, not the GPU, set the pace of a decode
    (bench/README.md). ``graphs=False`` runs the same step eagerly over the keys written so far (the CPU always
    does)."""

    def __init__(self, model, initial_token_length: int, n_group: int, graphs: bool | None = None):
        self.model = model
        self.initial_token_length = initial_token_length
        self.n_group = n_group
        self.n_head = model.dims.n_text_head
        self.graphs = graphs
        self.length = 0
        self.k = self.v = self.cross = None
        self._graph = None

    def _allocate(self, audio_features) -> None:
        import torch
        import torch.nn.functional as F

        d = self.model.dims
        dtype = audio_features.dtype
        self.w = _weights(self.model, dtype)
        rows = audio_features.shape[0]
        head = d.n_text_state // self.n_head
        shape = (d.n_text_layer, rows, self.n_head, d.n_text_ctx, head)
        if self.graphs is None:
            self.graphs = CUDA_GRAPHS and audio_features.is_cuda
        # a graph's step reads the keys past its position too, masked: they must be finite (NaN times 0 is NaN)
        allocate = torch.zeros if self.graphs else torch.empty
        self.k = allocate(shape, dtype=dtype, device=audio_features.device)
        self.v = allocate(shape, dtype=dtype, device=audio_features.device)
        xa = audio_features[:: self.n_group]  # one row per audio: its beams share it
        self.cross = [(self._heads(F.linear(xa, *b["ck"])), self._heads(F.linear(xa, *b["cv"]))) for b in self.w.blocks]
        self._token = torch.zeros(rows, 1, dtype=torch.long, device=audio_features.device)
        self._position = torch.zeros(1, dtype=torch.long, device=audio_features.device)
        self._key_index = torch.arange(d.n_text_ctx, device=audio_features.device)

    def _heads(self, x):
        return x.view(*x.shape[:2], self.n_head, -1).transpose(1, 2)  # (n, T, D) -> (n, H, T, D/H)

    @staticmethod
    def _ln(x, params):
        import torch.nn.functional as F

        return F.layer_norm(x.float(), (x.shape[-1],), *params).to(x.dtype)

    def logits(self, tokens, audio_features):
        if self.k is None:
            self._allocate(audio_features)
        start = self.length
        if tokens.shape[-1] > self.initial_token_length:
            self.length = start + 1
            return self._one_token(tokens[:, -1:], start)
        self.length = start + tokens.shape[-1]
        return self._forward(tokens, start, start + tokens.shape[-1])

    def _one_token(self, token, position: int):
        """The step for one new token per row: the captured graph's replay, or the same step run eagerly."""
        self._token.copy_(token)
        self._position.fill_(position)
        if not self.graphs:
            return self._forward(self._token, self._position, position + 1)
        if self._graph is None:
            self._graph = self._capture()
        self._graph[0].replay()
        return self._graph[1]

    def _capture(self):
        """The one-token step as a CUDA graph, and its output buffer. A first eager run on the capture stream sets
        up what kernels set up lazily (PyTorch's rule for capturing); it writes the keys and values the replay
        writes. Not ``torch.cuda.graph``: it collects garbage and empties the allocator's cache on every capture,
        and a pod captures a graph per decode."""
        import torch

        if not hasattr(_CAPTURE, "stream"):
            _CAPTURE.stream = torch.cuda.Stream()
        stream, span = _CAPTURE.stream, self.model.dims.n_text_ctx
        graph = torch.cuda.CUDAGraph()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._forward(self._token, self._position, span)
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                out = self._forward(self._token, self._position, span)
            finally:
                graph.capture_end()
        torch.cuda.current_stream().wait_stream(stream)
        return graph, out

    def _forward(self, tokens, start, end: int):
        """The decoder over ``tokens`` written at positions ``start`` (an int: the prompt pass, which attends
        causally over ``[0, end)``; or a one-element device tensor: one token per row, attending over the keys
        ``[0, end)`` up to its position)."""
        import torch
        import torch.nn.functional as F

        w = self.w
        dtype = self.k.dtype
        rows, n_new = tokens.shape
        if torch.is_tensor(start):
            positional = w.positional_embedding.index_select(0, start)
            mask = (self._key_index[:end] <= start)[None]  # keys past the position are not written yet
        else:
            positional, mask = w.positional_embedding[start:start + n_new], None
        x = (w.token_embedding[tokens] + positional).to(dtype)
        n_audio = rows // self.n_group
        for i, b in enumerate(w.blocks):
            h = self._ln(x, b["attn_ln"])
            k, v = self._heads(F.linear(h, *b["k"])), self._heads(F.linear(h, *b["v"]))
            if mask is None:
                self.k[i, :, :, start:end] = k
                self.v[i, :, :, start:end] = v
            else:
                self.k[i].index_copy_(2, start, k)
                self.v[i].index_copy_(2, start, v)
            # the prompt pass starts at 0 with every query, so the top-left causal mask of SDPA is whisper's
            a = F.scaled_dot_product_attention(self._heads(F.linear(h, *b["q"])), self.k[i, :, :, :end],
                                               self.v[i, :, :, :end], attn_mask=mask,
                                               is_causal=mask is None and n_new > 1)
            x = x + F.linear(a.transpose(1, 2).flatten(2), *b["o"])
            h = self._ln(x, b["cross_ln"])
            q = self._heads(F.linear(h, *b["cq"]))  # (rows, H, T, D/H); rows are audio-major
            head = q.shape[-1]
            q = q.view(n_audio, self.n_group, self.n_head, n_new, head).transpose(1, 2).reshape(
                n_audio, self.n_head, self.n_group * n_new, head)
            ck, cv = self.cross[i]
            a = F.scaled_dot_product_attention(q, ck, cv)
            a = a.view(n_audio, self.n_head, self.n_group, n_new, head).permute(0, 2, 3, 1, 4).reshape(rows, n_new, -1)
            x = x + F.linear(a, *b["co"])
            h = self._ln(x, b["mlp_ln"])
            x = x + F.linear(F.gelu(F.linear(h, *b["fc1"])), *b["fc2"])
        x = self._ln(x, w.ln)
        return (x @ w.token_embedding_t).float()

    def rearrange_kv_cache(self, source_indices) -> None:
        """Rows take the cache of the rows they continue (``source_indices``: a device tensor or a list)."""
        import torch

        if not torch.is_tensor(source_indices):
            source_indices = torch.tensor(source_indices, device=self.k.device)
        end = self.length
        self.k[:, :, :, :end] = self.k[:, :, :, :end].index_select(1, source_indices)
        self.v[:, :, :, :end] = self.v[:, :, :, :end].index_select(1, source_indices)

    def cleanup_caching(self) -> None:
        self.k = self.v = self.cross = None
        self._graph = None
        self.length = 0


def vectorized_beam_search(base):
    """whisper's ``BeamSearchDecoder`` class made to update every row with tensor operations on the device.

    Same rules as whisper's ``update``: each audio's ``beam_size * (beam_size + 1)`` candidates are ranked by
    summed log-probability (ties keep whisper's order: by row, then by rank); those ending in EOT that rank above
    the ``beam_size``-th live one are finished, in rank order, until ``max_candidates`` are; the ``beam_size``
    best others continue. In the first step every beam holds the same prefix, so only the first beam's
    candidates count (whisper's dict of sequences merges the copies).
    """
    import torch
    import torch.nn.functional as F

    class VectorizedBeamSearchDecoder(base):
        def reset(self):
            super().reset()
            self._state = None

        def _init_state(self, tokens):
            n_audio = tokens.shape[0] // self.beam_size
            dev = tokens.device
            slots = self.max_candidates + 1  # the last slot takes the writes of candidates not kept
            self._state = {
                "n_audio": n_audio,
                "buf": torch.zeros(n_audio * slots, self.inference.model.dims.n_text_ctx + 1, dtype=tokens.dtype, device=dev),
                "len": torch.zeros(n_audio * slots, dtype=torch.long, device=dev),
                "score": torch.zeros(n_audio * slots, dtype=torch.float32, device=dev),
                "count": torch.zeros(n_audio, dtype=torch.long, device=dev),
                "looped": torch.zeros(n_audio, dtype=torch.bool, device=dev),
                "steps": 0,
            }

        def update(self, tokens, logits, sum_logprobs):
            if tokens.shape[0] % self.beam_size != 0:
                raise ValueError(f"{tokens.shape}[0] % {self.beam_size} != 0")
            if self._state is None:
                self._init_state(tokens)
            st, beams, dev = self._state, self.beam_size, tokens.device
            n_audio, width, length = st["n_audio"], beams + 1, tokens.shape[1]
            n_cand = beams * width
            top_logprobs, top_tokens = F.log_softmax(logits.float(), dim=-1).topk(width)
            scores = (sum_logprobs[:, None] + top_logprobs).view(n_audio, n_cand)
            valid = torch.ones(n_audio, beams, width, dtype=torch.bool, device=dev)
            if st["steps"] == 0:
                valid[:, 1:] = False
            valid = valid.view(n_audio, n_cand)
            order = torch.where(valid, scores, -math.inf).sort(dim=1, descending=True, stable=True).indices
            ranked_scores = scores.gather(1, order)
            ranked_tokens = top_tokens.view(n_audio, n_cand).gather(1, order)
            ranked_valid = valid.gather(1, order)
            source = order // width + torch.arange(n_audio, device=dev)[:, None] * beams  # global row
            is_eot = ranked_tokens == self.eot
            live = ranked_valid & ~is_eot
            live_rank = live.cumsum(1)
            kept = live & (live_rank <= beams)
            # candidates ranked above the beams-th live one; whisper stops looking there
            cutoff = (live & (live_rank == beams)).int().argmax(1, keepdim=True)
            positions = torch.arange(n_cand, device=dev)[None]
            finished = ranked_valid & is_eot & (positions < cutoff)
            accepted = finished & (st["count"][:, None] + finished.cumsum(1) <= self.max_candidates)

            # the beams that continue, in rank order
            slot = torch.where(kept, live_rank - 1, beams)
            next_source = torch.zeros(n_audio, beams + 1, dtype=torch.long, device=dev).scatter_(1, slot, source)[:, :beams]
            next_token = torch.zeros(n_audio, beams + 1, dtype=tokens.dtype, device=dev).scatter_(1, slot, ranked_tokens)[:, :beams]
            next_score = torch.zeros(n_audio, beams + 1, dtype=sum_logprobs.dtype, device=dev).scatter_(1, slot, ranked_scores)[:, :beams]

            # finished hypotheses into their audio's next free slots (the others into the spare slot)
            slots = self.max_candidates + 1
            fin_slot = torch.where(accepted, st["count"][:, None] + accepted.cumsum(1) - 1, self.max_candidates)
            target = (torch.arange(n_audio, device=dev)[:, None] * slots + fin_slot).flatten()
            st["buf"][target, :length] = tokens[source.flatten()]
            st["buf"][target, length] = self.eot
            st["len"][target] = length + 1
            st["score"][target] = ranked_scores.flatten()
            st["count"] += accepted.sum(1)

            next_source = next_source.flatten()
            sum_logprobs.copy_(next_score.flatten())
            tokens = torch.cat([tokens[next_source], next_token.flatten()[:, None]], dim=-1)
            self.inference.rearrange_kv_cache(next_source)
            st["steps"] += 1
            if st["steps"] % LOOP_CHECK_EVERY == 0:  # rows are in rank order: every beams-th is an audio's best
                st["looped"] |= loop_periods(tokens[::beams], *self.loop_rule) > 0
            completed = bool(((st["count"] >= self.max_candidates) | st["looped"]).all())
            return tokens, completed

        def finalize(self, preceding_tokens, sum_logprobs):
            st = self._state
            slots = self.max_candidates + 1
            self.finished_sequences = []
            if st is not None:
                buf, lens, scores, counts = (st[k].tolist() for k in ("buf", "len", "score", "count"))
                for a, count in enumerate(counts):
                    rows = range(a * slots, a * slots + count)
                    self.finished_sequences.append({tuple(buf[r][: lens[r]]): scores[r] for r in rows})
            else:  # never stepped
                self.finished_sequences = [{} for _ in range(preceding_tokens.shape[0])]
            return super().finalize(preceding_tokens, sum_logprobs)

    return VectorizedBeamSearchDecoder


def stopping_greedy(base):
    """whisper's ``GreedyDecoder`` class (greedy or sampled rows) with a row caught in a loop ended at once."""
    import torch

    class LoopStoppingGreedyDecoder(base):
        def reset(self):
            super().reset()
            self._steps = 0

        def update(self, tokens, logits, sum_logprobs):
            tokens, completed = super().update(tokens, logits, sum_logprobs)
            self._steps += 1
            if self._steps % LOOP_CHECK_EVERY == 0:
                looping = (tokens[:, -1] != self.eot) & (loop_periods(tokens, *self.loop_rule) > 0)
                tokens[:, -1] = torch.where(looping, self.eot, tokens[:, -1])
                completed = (tokens[:, -1] == self.eot).all()
            return tokens, completed

    return LoopStoppingGreedyDecoder
