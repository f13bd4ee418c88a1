"""A summary document (the JSON of ``summaries/<name>.json``) rendered to ``summaries/<name>.md``.

Model output is untrusted text, so nothing it writes becomes markup: markdown and HTML metacharacters are
escaped (no raw HTML, no emphasis or headings it did not get from us), links are shown as inert code spans, and
lines cannot start a list, quote or heading of their own. What the grounding check flagged (``grounding.py``) is
left out: list items that hold an ungrounded value, summary sentences that do, an owner that is not in the
transcript. The highlights follow under their own heading, labelled as verbatim quotes of the transcript. A
low-confidence summary says so instead of showing the rejected answer.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re
from typing import Any

from steps.llm.checks import sentences

_META = re.compile(r"([\\`*_{}\[\]()<>#+|!~&@$])")
_LINK = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]\"'`]+", re.IGNORECASE)
_LINE_START = re.compile(r"^(\s*)([-+>]|\d+[.)])")

#: Flag kinds that stand for a whole statement (the others are one value inside it).
STATEMENTS = ("unsupported", "instruction")
#: The note on a summary whose answer was cut at the output-token limit (``finish_reason`` "length").
TRUNCATED = ("Incomplete: the model's answer was cut at the output-token limit (raise --max-output-tokens); "
             "this summary may leave out the end.")
#: The label of the highlights: sentences copied from the transcript (``highlights.py``), not the model's words.
HIGHLIGHTS_NOTE = ("Sentences copied word for word from the transcript, picked by a fixed rule (numbers, dates, "
                   "names, decisions), not written by the model.")
SECTIONS = (("key_points", "Key points"), ("decisions", "Decisions"), ("action_items", "Action items"),
            ("open_questions", "Open questions"))


def escape(text: str) -> str:
    """``text`` as literal markdown on one line: metacharacters escaped, links inert."""
    text = " ".join(str(text).split())
    out, last = [], 0
    for m in _LINK.finditer(text):
        out.append(_META.sub(r"\\\1", text[last:m.start()]))
        out.append("`" + m.group().replace("`", "") + "`")
        last = m.end()
    out.append(_META.sub(r"\\\1", text[last:]))
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), "".join(out))


def _flagged(doc: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    by_field: dict[str, list[dict[str, str]]] = {}
    for flag in doc.get("ungrounded") or []:
        by_field.setdefault(flag["field"], []).append(flag)
    return by_field


def _keep_sentence(sentence: str, flags: list[dict[str, str]]) -> bool:
    for f in flags:
        if f["kind"] in STATEMENTS and f["text"].strip() == sentence.strip():
            return False
        if f["kind"] not in STATEMENTS and re.search(rf"(?<!\w){re.escape(f['text'])}(?!\w)", sentence, re.I):
            return False
    return True


def grounded_summary(doc: dict[str, Any]) -> str:
    """The summary paragraph without its flagged sentences."""
    flags = _flagged(doc).get("summary", [])
    return " ".join(s for s in sentences(doc.get("summary") or "") if _keep_sentence(s, flags))


def _quotes(doc: dict[str, Any]) -> list[str]:
    """The highlights' lines, labelled as quotes: the reader must be able to tell them from what the model wrote."""
    quotes = [f"- “{escape(q)}”" for q in doc.get("highlights") or []]
    return ["## Quoted from the transcript", "", f"_{HIGHLIGHTS_NOTE}_", "", *quotes, ""] if quotes else []


def to_markdown(doc: dict[str, Any]) -> str:
    """The markdown of one summary document."""
    if doc.get("confidence") == "low":
        unreliable = [p.split(":", 1)[1].strip() for p in doc.get("problems") or [] if p.startswith("transcript:")]
        if unreliable:  # our own warning about the transcript, not model text: safe to quote
            return ("# Summary not available (low confidence)\n\n"
                    f"The transcript was not summarized: {escape(unreliable[0])}. A summary of it would present "
                    "guesswork as facts.\n")
        kinds = dict.fromkeys(p.split(":")[0] for p in doc.get("problems") or [])  # never quote the rejected text
        reasons = ", ".join(kinds) or "rejected"
        text = ("# Summary not available (low confidence)\n\n"
                f"The model's answers were rejected twice ({escape(reasons)}), so no summary is shown. "
                "Read the transcript instead.\n")
        return text + "".join(f"\n{line}" for line in _quotes(doc))
    flags = _flagged(doc)
    lines: list[str] = []
    title = doc.get("title") or ""
    if title and "title" not in flags:
        lines += [f"# {escape(title)}", ""]
    summary = grounded_summary(doc)
    if summary:
        lines += [escape(summary), ""]
    for field, heading in SECTIONS:
        items = []
        for i, item in enumerate(doc.get(field) or []):
            if field == "action_items":
                if f"{field}[{i}].task" in flags:
                    continue
                owner = item.get("owner") if f"{field}[{i}].owner" not in flags else None
                items.append(f"- **{escape(owner)}**: {escape(item['task'])}" if owner else f"- {escape(item['task'])}")
            elif f"{field}[{i}]" not in flags:
                items.append(f"- {escape(item)}")
        if items:
            lines += [f"## {heading}", "", *items, ""]
    lines += _quotes(doc)
    every = [f for fl in flags.values() for f in fl]
    if any(f["kind"] == "instruction" for f in every):
        lines += ["_The recording contains instructions addressed to an AI assistant; they were not followed, and "
                  "statements repeating them are left out._", ""]
    dropped = len({f["field"] + f["text"] for f in every if f["kind"] != "instruction"})
    if dropped:
        lines += [f"_{dropped} statement(s) not found in the transcript left out (listed in the JSON)._", ""]
    if doc.get("truncated"):
        lines += [f"_{TRUNCATED}_", ""]
    text = "\n".join(lines).strip()
    return (text or "_Every statement of the model's summary was left out: none was found in the transcript "
                    "(listed in the JSON)._") + "\n"
