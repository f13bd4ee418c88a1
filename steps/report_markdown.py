"""The run report for people: a markdown table of every file, and the one-line result shown in the Argo UI.

The report step publishes both as output artifacts (beside ``report.json``), so a user browsing a workflow in the
Argo UI sees what happened to each recording without opening a log. File names and errors are user-controlled
text: control characters are stripped and markdown/HTML metacharacters escaped, so a name cannot forge table
cells, links or markup.
"""

from __future__ import annotations

import re
from typing import Any

from steps.sanitize import strip_control

__all__ = ["markdown_summary", "one_line", "summary_line"]

_MARKDOWN_META = re.compile(r"([\\`*_{}\[\]()<>#+|!~])")


def _cell(text: object) -> str:
    return _MARKDOWN_META.sub(r"\\\1", " ".join(strip_control(str(text)).split()))


def one_line(report: dict[str, Any]) -> str:
    """``12/13 succeeded, 1 failed, 3 transcripts reused, 41.0 min of audio`` (what `argo get` shows)."""
    t = report["totals"]
    parts = [f"{t['succeeded']}/{t['files']} succeeded"]
    if t["failed"]:
        parts.append(f"{t['failed']} failed")
    if t["transcripts_cached"]:
        parts.append(f"{t['transcripts_cached']} transcripts reused")
    parts.append(f"{(t['audio_seconds'] or 0) / 60:.1f} min of audio")
    if t.get("already_processed"):
        parts.append(f"{t['already_processed']} already processed earlier")
    return ", ".join(parts)


def summary_line(report: dict[str, Any]) -> str | None:
    """``summaries: 3 json_schema, 1 low-confidence, 2 of 40 stated values not in the transcript (left out)``."""
    t = report["totals"]
    formats = t.get("summary_formats") or {}
    if not formats:
        return None
    parts = [", ".join(f"{n} {name}" for name, n in sorted(formats.items()))]
    if t.get("summaries_low_confidence"):
        parts.append(f"{t['summaries_low_confidence']} low-confidence")
    if t.get("summary_facts_checked"):
        parts.append(f"{t.get('summary_ungrounded', 0)} of {t['summary_facts_checked']} stated values not in the "
                     "transcript (left out)")
    return "summaries: " + ", ".join(parts)


def markdown_summary(report: dict[str, Any], uri) -> str:
    """Markdown for ``report``; ``uri(key)`` turns an output key into the full location a user can open."""
    quality = summary_line(report)
    lines = [f"# kubescribe run {_cell(report['run_id'])}", "", one_line(report), "",
             *([_cell(quality), ""] if quality else []),
             f"Input: {_cell(report['input'])}  ", f"Output: {_cell(report['output'])}", "",
             "| input | status | audio s | transcript | summary | error |", "|---|---|---|---|---|---|"]
    for f in report["files"]:
        txt, summary = f["outputs"].get("txt"), f["outputs"].get("summary")
        low = " (low confidence)" if (f.get("summary") or {}).get("confidence") == "low" else ""
        duration = f"{f['duration_s']:.1f}" if f.get("duration_s") else "-"
        lines.append("| " + " | ".join([
            _cell(f["input"]), f["status"], duration,
            _cell(uri(txt)) if txt else "-", _cell(uri(summary)) + low if summary else "-",
            _cell(f["error"]) if f["error"] else "",
        ]) + " |")
    if report.get("ignored"):
        lines += ["", "Not inputs (listed, not processed):", ""]
        lines += [f"- {_cell(e['input'])}: {_cell(e['reason'])}" for e in report["ignored"]]
    return "\n".join(lines) + "\n"
