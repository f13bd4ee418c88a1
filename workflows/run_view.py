"""What ``kubescribe run`` shows: progress bars from the runner's events and the steps' log lines, the report
table, transcripts and summaries (``--show``), and what finished when a run broke off.

Outside text (file names, paths, error messages, transcripts, summaries) is printed only through :func:`safe`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from steps.report_markdown import summary_line
from steps.sanitize import show_control

#: Progress, errors and notes go to stderr; the report and texts to stdout.
console = Console(stderr=True, emoji=False)


def safe(text: object, multiline: bool = False) -> str:
    """Outside text (file names, paths, error messages, transcripts, summaries) ready for a rich markup string.

    Control characters become visible escapes (a file named ``\\x1b[2Jx.wav`` must not clear the screen;
    ``multiline`` keeps newlines and tabs), then rich markup is escaped (``[bold]x.wav`` and ``[/x].wav`` are
    printed as they are, never parsed). Every print of such text in this module goes through here.
    """
    if not multiline:
        return escape(show_control(str(text)))
    return escape("\n".join(show_control(line).replace("\\t", "\t") for line in str(text).split("\n")))


class ProgressView:
    """Turns runner events and step log lines into rich progress bars."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.total_files: int | None = None

    def bar(self, name: str, total: int | None = None) -> int:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        return self.tasks[name]

    def on_event(self, ev) -> None:
        if ev.kind == "node-running" and ev.template == "plan":
            self.bar("plan", total=1)
        if ev.kind == "node-succeeded" and ev.template == "plan":
            self.progress.update(self.bar("plan", total=1), completed=1)
        if ev.kind in ("node-failed", "node-error") and ev.leaf:
            self.progress.console.print(f"[red]step {safe(ev.node)} {ev.phase.lower()}[/red]: {safe(ev.message)}")

    def on_log(self, node: str, line: str) -> None:
        template = node.split("(")[0].split(".")[-1]
        text = line.rstrip()
        if template == "plan" and text.startswith("planned "):
            self.total_files = int(text.split()[1])
            for name in ("transcribe", "summarize"):
                self.progress.update(self.bar(name, total=self.total_files), total=self.total_files)
        if template in ("transcribe", "summarize") and (text.startswith("ok ") or text.startswith("FAILED")):
            self.progress.advance(self.bar(template, total=self.total_files))
        if text.startswith("FAILED") or text.startswith("error:"):
            self.progress.console.print(f"[yellow]{safe(template)}[/yellow] {safe(text)}")


def print_texts(report: dict, store) -> None:
    console_out = Console(emoji=False)
    for f in report["files"]:
        for kind in ("txt", "summary"):
            key = f["outputs"][kind]
            if key:
                title = "transcript" if kind == "txt" else "summary"
                console_out.rule(f"{safe(f['input'])} — {title}")
                console_out.print(safe(store.read_text(key).strip() or "(empty: no speech)", multiline=True))


def print_report(report: dict, out: str) -> None:
    console_out = Console(emoji=False)
    table = Table(title=f"kubescribe report ({safe(report['run_id'])})")
    for col in ("input", "status", "audio s", "transcript", "summary"):
        table.add_column(col, overflow="fold")
    for f in report["files"]:
        ok = f["status"] == "succeeded"
        table.add_row(
            safe(f["input"]),
            "[green]succeeded[/green]" if ok else "[red]failed[/red]",
            f"{f['duration_s']:.1f}" if f["duration_s"] else "-",
            safe(f["outputs"]["txt"] or "-"),
            safe(f["outputs"]["summary"] or "-"),
        )
    console_out.print(table)
    for f in report["files"]:
        if f["error"]:
            console_out.print(f"[red]failed[/red] {safe(f['error'])}")
    t = report["totals"]
    rtf = f", real-time factor {t['transcribe_rtf']:.3f}" if t["transcribe_rtf"] else ""
    ttft = f", mean TTFT {t['ttft_mean_s']:.2f} s" if t["ttft_mean_s"] else ""
    console_out.print(f"{t['succeeded']}/{t['files']} succeeded ({t['transcripts_cached']} transcripts reused){rtf}{ttft}")
    quality = summary_line(report)
    if quality:
        console_out.print(safe(quality))
    out = safe(out)
    console_out.print(f"transcripts: {out}/transcripts/\nsummaries:   {out}/summaries/\nreport:      {out}/report.json",
                      soft_wrap=True)  # long paths stay whole (copyable); the terminal wraps them


def step_error(node) -> str:
    """A failed step's message plus its own last ``error: ...`` line (exit codes alone say little)."""
    try:
        lines = node.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    last = next((line for line in reversed(lines) if line.startswith("error: ")), None)
    return f"{node.message}: {last[len('error: '):]}" if last else node.message


def print_partial(result) -> None:
    """What finished before a run broke off, from the steps' own output (the store may be unreachable)."""
    done: dict[str, dict[str, None]] = {"transcribe": {}, "summarize": {}}
    for node in result.nodes.values():
        if node.log_path is not None and node.template in done:  # leaf attempts only, not fan-out groups
            for line in (node.result or "").splitlines():
                if line.startswith("ok "):  # "ok      calls/a.mp3 (3.1s, RTF 0.120)"
                    done[node.template][line[3:].strip().rsplit(" (", 1)[0]] = None
    for step, verb in (("transcribe", "transcribed"), ("summarize", "summarized")):
        names = ", ".join(safe(n) for n in done[step]) or "nothing"
        console.print(f"{verb} before the run ended: {names}", soft_wrap=True)
    for name, node in result.nodes.items():
        if node.phase in ("Failed", "Error") and node.log_path:
            console.print(f"  {safe(name)}: {safe(step_error(node))} (log: {safe(node.log_path)})", soft_wrap=True)
    console.print(f"task logs: {safe(result.run_dir)}", soft_wrap=True)


def stopped_line(e, workdir: Path | None) -> str:
    logs = f"; task logs under {safe(workdir)}" if workdir is not None else ""
    return (f"[yellow]stopped by {e.name}[/yellow]: every process it started was ended and nothing new started; "
            f"finished outputs are kept, re-run to resume{logs}")


