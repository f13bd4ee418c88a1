"""Whisper's command-line options as the transcribe step reads them, and the language rules users expect.

* ``--language``: an ISO code or a language name (``fr``, ``French``); ``auto`` or empty means detect. On an
  English-only model (``*.en``) another language cannot be honoured: the audio is transcribed as English, the
  file's result carries a warning and records ``en``, never the language that was asked for.
* ``--task translate`` needs a multilingual model: asking an English-only one is a configuration error.
* English-only models cannot detect a language. Speech they cannot make sense of (a language they do not know)
  decodes with a very low log-probability: such a file is transcribed, with a warning that it may not be English.
* ``--output-format``: whisper's writers (txt, srt, vtt, tsv, json, all), comma-separated; txt is always written.
* ``--temperature``/``--temperature-increment-on-fallback``: whisper's fallback schedule.

:func:`english_only` knows whisper's model names, and reads other checkpoints' dimensions without loading their
weights.
This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from steps.layout import WHISPER_FORMATS

#: The vocabulary size of English-only checkpoints; multilingual ones have more tokens.
_ENGLISH_VOCAB = 51864
#: ``avg_logprob`` of a segment an English-only model did not understand.
#: English speech decodes at -0.3 to -0.7 with tiny.en (tests/fixtures, samples/); reversed speech at -4 to -5.
NOT_ENGLISH_LOGPROB = -1.5
#: A segment compressing better than this is the model repeating itself (whisper's own threshold).
LOOP_COMPRESSION = 2.4
#: A segment whose text is the text of this many segments is part of a loop too.
REPEATED_SEGMENT = 3


def parse_language(value: str | None) -> str | None:
    """ISO code for ``--language`` (``fr``, ``French``, ``FR``), or None to detect (``auto``, empty, None)."""
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    v = (value or "").strip().lower()
    if v in ("", "auto"):
        return None
    if v in LANGUAGES:
        return v
    if v in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[v]
    raise ValueError(f"--language {value!r}: not a language whisper knows; use an ISO code such as en, fr, de, or "
                     "'auto' to detect")


def parse_task(value: str) -> str:
    if value not in ("transcribe", "translate"):
        raise ValueError(f"--task {value!r}: choose transcribe or translate")
    return value


def parse_output_formats(value: str) -> tuple[str, ...]:
    """The formats ``--output-format`` asks for (``all`` or a comma-separated list), txt always among them."""
    asked = [v.strip().lower() for v in (value or "").split(",") if v.strip()]
    if "all" in asked:
        return WHISPER_FORMATS
    unknown = [v for v in asked if v not in WHISPER_FORMATS]
    if unknown or not asked:
        raise ValueError(f"--output-format {value!r}: choose from {', '.join(WHISPER_FORMATS)} or all "
                         "(comma-separated)")
    return tuple(f for f in WHISPER_FORMATS if f == "txt" or f in asked)


def temperatures(start: float, increment: float) -> tuple[float, ...]:
    """Whisper's schedule: ``start``, then up to 1.0 in steps of ``increment`` (none when it is 0)."""
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"--temperature {start:g}: must be between 0 and 1")
    if increment < 0:
        raise ValueError(f"--temperature-increment-on-fallback {increment:g}: must not be negative")
    if increment == 0:
        return (round(start, 6),)
    out, t = [], start
    while t <= 1.0 + 1e-6:
        out.append(round(t, 6))
        t = start + len(out) * increment
    return tuple(out)


def english_only(spec: str, checkpoint: Path) -> bool:
    """True for an English-only Whisper model (``tiny.en``...): from its name, else from its vocabulary size."""
    if spec.endswith(".en"):  # whisper's names (tiny.en, base.en...), or a folder named after one
        return True
    from whisper import available_models

    if spec in available_models():
        return False
    return _vocabulary(checkpoint) == _ENGLISH_VOCAB


def _vocabulary(checkpoint: Path) -> int | None:
    import zipfile

    import torch

    mmap = zipfile.is_zipfile(checkpoint)  # the legacy format cannot be mmapped
    data = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=mmap)
    dims = data.get("dims") if isinstance(data, dict) else None
    return dims.get("n_vocab") if isinstance(dims, dict) else None


def for_model(language: str | None, task: str, english: bool, model: str) -> tuple[str | None, list[str]]:
    """The language to decode with on this model, and the warnings every file of the run carries.

    On an English-only model a language other than English becomes None (whisper then decodes English, and the
    cache key is the plain English one): the transcript is English, so is what the report records."""
    if english and task == "translate":
        raise ValueError(f"--task translate needs a multilingual model; {model} is English-only (pass e.g. "
                         "--model small, or --task transcribe)")
    if english and language not in (None, "en"):
        return None, [f"{model} is an English-only model: --language {language} was not used, the audio was "
                      "transcribed as English; use a multilingual model (e.g. small) for other languages"]
    return language, []


#: An empty transcript of at least this many seconds of segmented sound is not "no speech" but speech (or music,
#: noise) the model heard no words in: tiny.en drops a whole spoken German meeting so (bench/README.md).
UNHEARD_MIN_S = 5.0


def speech_warnings(result: dict[str, Any], english: bool, model: str, sound_s: float | None = None) -> list[str]:
    """A warning when the model did not understand the sound it was given: an English-only model that did not
    make sense of most of the speech (likely another language: most of the spoken time is in segments whisper's
    own checks would reject, a log-probability below :data:`NOT_ENGLISH_LOGPROB` or a compression ratio above
    :data:`LOOP_COMPRESSION`, or in segments saying what :data:`REPEATED_SEGMENT` segments say: the model
    looping), or any model that made no words at all of ``sound_s`` seconds
    of sound its segmenter kept (at least :data:`UNHEARD_MIN_S`)."""
    segments = result.get("segments") or []
    if not segments:
        if sound_s is None or sound_s < UNHEARD_MIN_S:
            return []  # silence, or a click: "no speech" is the truth
        hint = (f"{model} is English-only (other languages are dropped or come out as noise); if this is speech in "
                "another language use a multilingual model (e.g. small) with --language auto" if english else
                "it may be music or noise, or speech the model cannot transcribe")
        return [f"the model heard no words in {sound_s:.0f} s of sound: {hint}"]
    if not english or "avg_logprob" not in segments[0]:
        return []
    # a loop can also be spread over segments, each compressing normally ("I am Secretary-signal L'Yaughan." as
    # every segment of the German meeting, once, through the ct2 engine)
    texts = [" ".join(s["text"].lower().split()) for s in segments]
    said = Counter(texts)
    spoken = sum(max(s["end"] - s["start"], 0.0) for s in segments)
    lost = sum(max(s["end"] - s["start"], 0.0) for s, text in zip(segments, texts)
               if s["avg_logprob"] < NOT_ENGLISH_LOGPROB or s.get("compression_ratio", 0.0) > LOOP_COMPRESSION
               or said[text] >= REPEATED_SEGMENT)
    if spoken <= 0 or lost < 0.5 * spoken:
        return []
    return [f"the speech may not be English: {model} is English-only and did not make sense of "
            f"{lost / spoken:.0%} of it (other languages come out as English-sounding noise); use a multilingual "
            "model (e.g. small) with --language auto"]
