"""Batched decoding for openai-whisper: worker threads' ``model.decode`` calls gathered into one batched search.

Split out of ``steps.batched`` (the engine that feeds it): this module only turns many single-chunk decode calls
into one encoder pass and one KV-cached beam search over the batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchDecoder", "batch_decode"]


@dataclass
class _Request:
    mel: Any
    options: Any
    result: Any = None
    error: BaseException | None = None
    done: bool = False


def _batch_task():
    """openai-whisper's ``DecodingTask``, fixed for a batch decoded with beam search or best-of-n.

    openai-whisper 20250625 repeats the tokens ``n_group`` times per audio but not the encoder output, which
    only broadcasts for one audio: a batch of several fails in cross-attention (``size of tensor a (15) must
    match ... (3)``). Repeating the audio features here is what ``run`` already expects (it takes every
    ``n_group``-th row back); language detection still sees one row per audio.
    """
    from whisper.decoding import DecodingTask

    class BatchDecodingTask(DecodingTask):
        def _get_audio_features(self, mel):
            features = super()._get_audio_features(mel)
            return features.repeat_interleave(self.n_group, dim=0) if self.n_group > 1 else features

        def _detect_language(self, audio_features, tokens):
            return super()._detect_language(audio_features[:: self.n_group], tokens)

    return BatchDecodingTask


def batch_decode(model, mel, options) -> list:
    """Decode a batch of log-mels (``n, n_mels, 3000``) with one encoder pass and one KV-cached search."""
    import torch

    with torch.no_grad():
        return _batch_task()(model, options).run(mel)


class BatchDecoder:
    """Collects ``model.decode`` calls from worker threads and runs them as batches on one thread."""

    def __init__(self, model, max_batch: int, model_lock: threading.RLock, threads: int = 0):
        self.threads = threads
        self.model = model
        self.max_batch = max_batch
        self.model_lock = model_lock
        self.cv = threading.Condition()
        self.pending: list[_Request] = []
        self.busy = 0  # workers holding a chunk
        self.closed = False
        self.batches: list[int] = []  # sizes of the batches decoded, for the benchmark
        self.thread = threading.Thread(target=self._loop, name="batch-decoder", daemon=True)
        self.thread.start()

    def enter(self) -> None:
        with self.cv:
            self.busy += 1

    def leave(self) -> None:
        with self.cv:
            self.busy -= 1
            self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        self.thread.join()

    def decode(self, mel, options):
        single = mel.ndim == 2
        req = _Request(mel if single else mel[0], options)
        with self.cv:
            self.pending.append(req)
            self.cv.notify_all()
            while not req.done:
                self.cv.wait()
        if req.error is not None:
            raise req.error
        return req.result if single else [req.result]

    def _ready(self) -> bool:
        return bool(self.pending) and (len(self.pending) >= min(self.busy, self.max_batch) or self.closed)

    def _loop(self) -> None:
        import torch

        if self.threads > 0:  # OpenMP's thread count is per thread: set it where the work runs
            torch.set_num_threads(self.threads)
        while True:
            with self.cv:
                while not self._ready():
                    if self.closed and not self.pending:
                        return
                    self.cv.wait()
                first = self.pending[0].options
                group = [r for r in self.pending if r.options == first][: self.max_batch]
                taken = {id(r) for r in group}
                self.pending = [r for r in self.pending if id(r) not in taken]
            try:
                with self.model_lock:
                    results = batch_decode(self.model, torch.stack([r.mel for r in group]), first)
                for r, res in zip(group, results):
                    r.result = res
                self.batches.append(len(group))
            except BaseException as e:  # noqa: BLE001 - handed to every requester
                for r in group:
                    r.error = e
            with self.cv:
                for r in group:
                    r.done = True
                self.cv.notify_all()
