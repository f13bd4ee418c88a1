"""Batched decoding for openai-whisper: many 30 s windows, one encoder pass and one KV-cached search.

``steps.chunk_transcribe`` feeds it the windows of many chunks that share decoding options; this module only
decodes them together, with whisper's own ``DecodingTask`` made to work and to be fast for a batch.
"""

from __future__ import annotations

import math
from dataclasses import replace

from steps.static_decode import StaticKVInference, loop_periods, stopping_greedy, vectorized_beam_search

__all__ = ["batch_decode", "decode_with_features"]


def _batch_task():
    """openai-whisper's ``DecodingTask``, fixed and made fast for a batch decoded with beam search or best-of-n.

    * openai-whisper 20250625 repeats the tokens ``n_group`` times per audio but not the encoder output, which
      only broadcasts for one audio: a batch of several fails in cross-attention (``size of tensor a (15) must
      match ... (3)``). Repeating the audio features here is what ``run`` already expects (it takes every
      ``n_group``-th row back); language detection still sees one row per audio.
    * Its timestamp rules and beam-search update walk the rows one by one in Python, with a device sync per row
      and per candidate (``.item()``, ``.tolist()``, a tensor compared in an ``if``): about a thousand syncs per
      token for a batch of 20 chunks at beam 5. On a GPU those syncs, not the model, set the pace, so batching
      gained only 1.18x over the sequential engine on an H200 (bench/README.md). The same rules are computed
      here for all rows at once on the device, and the decoder runs over a preallocated KV cache
      (``steps.static_decode``); ``tests/test_batched.py`` checks the tokens against whisper's own classes.
    """
    from whisper.decoding import ApplyTimestampRules, BeamSearchDecoder, DecodingTask, GreedyDecoder, SuppressTokens
    from whisper.utils import compression_ratio

    class BatchDecodingTask(DecodingTask):
        def __init__(self, model, options):
            super().__init__(model, options)
            self.inference = StaticKVInference(model, len(self.initial_tokens), self.n_group)
            if isinstance(self.decoder, BeamSearchDecoder):
                self.decoder = vectorized_beam_search(BeamSearchDecoder)(
                    self.decoder.beam_size, self.decoder.eot, self.inference, self.decoder.patience)
            else:
                self.decoder = stopping_greedy(GreedyDecoder)(self.decoder.temperature, self.decoder.eot)
            self.decoder.loop_rule = (self.sample_begin, self.tokenizer.timestamp_begin)
            self.logit_filters = [_vectorized_timestamp_rules(f) if isinstance(f, ApplyTimestampRules)
                                  else _indexed_suppression(f, model.device) if isinstance(f, SuppressTokens)
                                  else f for f in self.logit_filters]

        def _get_audio_features(self, mel):
            features = self.audio_features = super()._get_audio_features(mel)
            return features.repeat_interleave(self.n_group, dim=0) if self.n_group > 1 else features

        def _detect_language(self, audio_features, tokens):
            return super()._detect_language(audio_features[:: self.n_group], tokens)

        def run(self, mel):
            return [self._judged_loop(r) for r in super().run(mel)]

        def _judged_loop(self, result):
            """A result stopped in a loop gets the compression ratio of that loop run on to the sample length,
            what whisper would have decoded and then judged (its fallback threshold is on this ratio)."""
            import torch

            tokens = list(result.tokens or [])
            period = int(loop_periods(torch.tensor([tokens]), 0, self.tokenizer.timestamp_begin)[0]) if tokens else 0
            if not period:
                return result
            while len(tokens) < self.sample_len:
                tokens.append(tokens[-period])
            return replace(result, compression_ratio=compression_ratio(self.tokenizer.decode(tokens).strip()))

    return BatchDecodingTask


def _indexed_suppression(suppress, device):
    """whisper's ``SuppressTokens`` with its token list moved to the device once, not on every step."""
    import torch

    index = torch.tensor(suppress.suppress_tokens, dtype=torch.long, device=device)
    suppress.apply = lambda logits, tokens: logits.index_fill_(1, index, -math.inf)
    return suppress


def _vectorized_timestamp_rules(rules):
    """``rules`` (whisper's ``ApplyTimestampRules``) with its ``apply`` done for every row at once."""
    import torch
    import torch.nn.functional as F

    tokenizer, sample_begin = rules.tokenizer, rules.sample_begin
    begin, eot = tokenizer.timestamp_begin, tokenizer.eot

    def apply(logits, tokens) -> None:
        if tokenizer.no_timestamps is not None:
            logits[:, tokenizer.no_timestamps] = -math.inf
        sampled = tokens[:, sample_begin:]
        n, length = sampled.shape
        if length:
            is_ts = sampled >= begin
            last = is_ts[:, -1]
            penultimate = is_ts[:, -2] if length >= 2 else torch.ones_like(last)
            # timestamps come in pairs, except directly before EOT
            logits[last & penultimate, begin:] = -math.inf
            logits[last & ~penultimate, :eot] = -math.inf
            # timestamps never decrease, and a segment has a nonzero length
            positions = torch.arange(1, length + 1, device=sampled.device)
            last_ts = sampled.gather(1, (positions * is_ts).argmax(dim=1, keepdim=True)).squeeze(1)
            upper = torch.where(last & ~penultimate, last_ts, last_ts + 1)
            columns = torch.arange(begin, logits.shape[-1], device=logits.device)
            logits[:, begin:].masked_fill_(is_ts.any(dim=1, keepdim=True) & (columns < upper[:, None]), -math.inf)
        if tokens.shape[1] == sample_begin:
            logits[:, :begin] = -math.inf
            if rules.max_initial_timestamp_index is not None:
                logits[:, begin + rules.max_initial_timestamp_index + 1:] = -math.inf
        # if the timestamps together are likelier than any text token, a timestamp comes next
        logprobs = F.log_softmax(logits.float(), dim=-1)
        timestamp_wins = logprobs[:, begin:].logsumexp(dim=-1) > logprobs[:, :begin].max(dim=-1).values
        logits[timestamp_wins, :begin] = -math.inf

    rules.apply = apply
    return rules


def batch_decode(model, mel, options) -> list:
    """Decode a batch of log-mels (``n, n_mels, 3000``) with one encoder pass and one KV-cached search (its steps
    CUDA graphs on CUDA: ``steps.static_decode.StaticKVInference``)."""
    return decode_with_features(model, mel, options)[0]


def decode_with_features(model, mel, options) -> tuple[list, object]:
    """:func:`batch_decode`, and the encoder's output for each log-mel (the word-timing pass reuses it)."""
    import torch

    with torch.no_grad():
        task = _batch_task()(model, options)
        results = task.run(mel)
    return results, task.audio_features
