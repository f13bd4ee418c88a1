"""Model output (and server error text) is untrusted: strip what a terminal would execute.

A reply such as ``"\\x1b[2J\\x1b]0;pwned\\x07 hello"`` would clear the screen and retitle the terminal of
whoever runs ``kubescribe run --show`` or ``cat``s the summary. :func:`strip_control` removes whole terminal
escape sequences (CSI, OSC, DCS/SOS/PM/APC and two-byte ESC sequences), then every remaining C0/C1 control
character except newline and tab, and the Unicode bidi embedding/override/isolate characters (which can make
displayed text read differently from the stored bytes). Line ends are normalised to ``\\n``.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re

__all__ = ["show_control", "strip_control"]

_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ params intermediates final
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"  # OSC ... BEL or ST
    r"|(?:\x1b[P^_X]|[\x90\x98\x9e\x9f])[^\x1b\x9c\n]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC ... ST
    r"|\x1b[ -/]*[0-~]?"  # other ESC sequences (charset selection, ESC c reset, ...)
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# For display: every control and bidi character, newline and tab included (one line per message).
_SHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    """``text`` without escape sequences and control characters; ``\\n`` and ``\\t`` are kept."""
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def show_control(text: str) -> str:
    """``text`` for a log line or a terminal: control characters become visible escapes (``\\x1b``), and the
    undecodable bytes of a non-UTF-8 file name (surrogate escapes) become ``\\xff``; nothing is executed."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _SHOWN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
