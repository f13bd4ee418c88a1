"""What ``kubescribe run`` shows besides progress (``workflows/run_progress.py``): the report table, transcripts
and summaries (``--show``), a failed step in one line, and what finished when a run broke off.

Outside text (file names, paths, error messages, transcripts, summaries) is printed only through :func:`safe`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
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


def step_failed_line(ev) -> str | None:
    """One line for a step that failed (a runner event), or None. The report step's exit 1 means "files failed"
    (each is listed once with the report), not that the step failed."""
    if ev.kind not in ("node-failed", "node-error") or not ev.leaf:
        return None
    if ev.template == "report" and "exit code 1)" in (ev.message or ""):
        return None
    return f"[red]step {safe(ev.node)} {ev.phase.lower()}[/red]: {safe(ev.message)}"


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
    rows = [(f["input"], f["status"], f"{f['duration_s']:.1f}" if f["duration_s"] else "-",
             f["outputs"]["txt"] or "-", f["outputs"]["summary"] or "-") for f in report["files"]]
    header = ("input", "status", "audio s", "transcript", "summary")
    widths = [max([len(show_control(str(r[i]))) for r in rows] + [len(header[i])]) for i in range(len(header))]
    title = f"kubescribe report ({safe(report['run_id'])})"
    if sum(widths) + 3 * len(widths) + 1 <= console_out.width:  # the table fits: no cell is ever wrapped
        table = Table(title=title)
        for col in header:
            table.add_column(col, no_wrap=True)
        for r in rows:
            status = "[green]succeeded[/green]" if r[1] == "succeeded" else "[red]failed[/red]"
            table.add_row(safe(r[0]), status, r[2], safe(r[3]), safe(r[4]))
        console_out.print(table)
    else:  # too narrow for a table: one line per file, long paths kept whole (the terminal wraps them)
        console_out.print(title)
        for name, status, audio, txt, summary in rows:
            colour = "green" if status == "succeeded" else "red"
            console_out.print(f"[{colour}]{status:<9}[/{colour}] {audio:>7}  {safe(name)}  →  {safe(txt)}, {safe(summary)}",
                              soft_wrap=True)
    for f in report["files"]:
        if f["error"]:
            console_out.print(f"[red]failed[/red] {safe(f['error'])}", soft_wrap=True)
        for w in f.get("warnings") or []:
            console_out.print(f"[yellow]warning[/yellow] {safe(f['input'])}: {safe(w)}", soft_wrap=True)
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


def print_partial(result, progress) -> None:
    """What finished before a run broke off, from the steps' events (``progress``: a
    :class:`~workflows.run_progress.RunProgress`; the store may be unreachable)."""
    for step, verb in (("transcribe", "transcribed"), ("summarize", "summarized")):
        done = [name for name, status in progress.done[step].items() if status != "failed"]
        names = ", ".join(safe(n) for n in done) or "nothing"
        console.print(f"{verb} before the run ended: {names}", soft_wrap=True)
    for name, node in result.nodes.items():
        if node.phase in ("Failed", "Error") and node.log_path:
            console.print(f"  {safe(name)}: {safe(step_error(node))} (log: {safe(node.log_path)})", soft_wrap=True)
    console.print(f"task logs: {safe(result.run_dir)}", soft_wrap=True)


def stopped_line(e, workdir: Path | None) -> str:
    logs = f"; task logs under {safe(workdir)}" if workdir is not None else ""
    return (f"[yellow]stopped by {e.name}[/yellow]: every process it started was ended and nothing new started; "
            f"finished outputs are kept, re-run to resume{logs}")


