"""What both transcription engines (``steps/transcribe.py``, ``steps/batched.py``) share about a whisper result:
its rendering into output files by whisper's own writers, and the error (and its bound) that replaces a decode
that stopped advancing. A module below both engines, so neither imports the other.
"""

from __future__ import annotations

import io
import math
from typing import Any

from steps import layout

__all__ = ["EMPTY_CHUNK", "DecodeStalled", "decode_budget", "render_outputs"]


class DecodeStalled(RuntimeError):
    """Whisper's decoding loop stopped advancing through the audio; the file fails instead of hanging."""


#: Why a window of no audio stops the file: whisper would decode its padding without ever advancing.
EMPTY_CHUNK = "whisper was handed an empty chunk (the decode loop would not advance)"


def decode_budget(temperatures: int, seconds: float, clips: int) -> int:
    """How many decodes whisper's loop may make for ``seconds`` of audio in ``clips`` spans before it counts as
    stalled. Whisper advances by up to 30 s per decode; one decode per second of audio per temperature, plus a
    few per clip, is far more than any real decode needs and still a finite bound on a loop that stalls."""
    return temperatures * (math.ceil(seconds) + 3 * clips + 10)


def render_outputs(result: dict[str, Any], stem: str, formats: tuple[str, ...] | None = None
                   ) -> dict[str, tuple[str, str, str]]:
    """``{fmt: (key, text, content type)}`` of a whisper result, rendered by whisper's own writers
    (``whisper.utils.get_writer``)."""
    from whisper.utils import get_writer

    writer_options = {"max_line_width": None, "max_line_count": None, "highlight_words": False, "max_words_per_line": None}
    rendered = {}
    for fmt in formats or layout.TRANSCRIPT_FORMATS:
        buf = io.StringIO()
        get_writer(fmt, ".").write_result(result, buf, writer_options)
        rendered[fmt] = (layout.transcript(stem, fmt), buf.getvalue(), _content_type(fmt))
    return rendered


def _content_type(fmt: str) -> str:
    return {"json": "application/json", "vtt": "text/vtt", "srt": "application/x-subrip",
            "tsv": "text/tab-separated-values"}.get(fmt, "text/plain") + (
        "; charset=utf-8" if fmt != "json" else ""
    )
