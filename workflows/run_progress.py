"""``kubescribe run``'s progress, from the steps' structured events (``steps/events.py``), never their log lines.

The local runner gives every task attempt its own events file (``LocalRunner(events_env=..., events_dir=...)``);
:class:`EventsTail` reads what was appended to each since the last look, :class:`RunProgress` keeps the counts (by
input, so a retried shard that reports a file again counts it once) and :class:`ProgressView` draws them: one bar
per step, whose timer starts when the step does, and one bar per file being transcribed (seconds of audio done, ETA).
``-o json`` prints the same events as JSON lines instead (:class:`JsonView`).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from steps.events import Event, read_events

STEPS = ("plan", "transcribe", "summarize", "report")
#: Files shown with their own bar at once (a batched shard decodes many files together).
MAX_FILE_BARS = 4


class EventsTail:
    """Every events file under a folder, read from where the previous :meth:`poll` stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[Path, int] = {}

    def poll(self) -> list[Event]:
        events: list[Event] = []
        if not self.folder.is_dir():
            return events
        for path in sorted(self.folder.glob("*.jsonl")):
            new, self.offsets[path] = read_events(path, self.offsets.get(path, 0))
            events += new
        return sorted(events, key=lambda e: e.t)  # stable: one file's own order is kept


class RunProgress:
    """What the events say so far: the plan, and each input's outcome per step."""

    def __init__(self) -> None:
        self.planned: Event | None = None
        self.done: dict[str, dict[str, str]] = {"transcribe": {}, "summarize": {}}  # step -> input -> status
        self.errors: dict[str, str] = {}  # input -> its first error
        self.warnings: dict[str, list[str]] = {}
        self.rejected: set[str] = set()

    def add(self, ev: Event) -> None:
        if ev.event == "planned":
            self.planned = ev
        elif ev.event == "file_done" and ev.input is not None and ev.status:
            self.done["transcribe"][ev.input] = ev.status
            if ev.step == "plan":  # unreadable at planning: failed, never planned for transcription
                self.rejected.add(ev.input)
        elif ev.event == "summary_done" and ev.input is not None:
            self.done["summarize"][ev.input] = ev.status or "succeeded"
        if ev.input is not None and ev.error and ev.status == "failed":
            self.errors.setdefault(ev.input, ev.error)
        if ev.input is not None and ev.warnings:
            self.warnings.setdefault(ev.input, list(ev.warnings))

    def total(self, step: str) -> int | None:
        if self.planned is None:
            return None
        n = (self.planned.files or 0)
        if step == "summarize":  # files that failed transcription are not summarized
            n -= sum(s == "failed" and i not in self.rejected for i, s in self.done["transcribe"].items())
        return max(n, len(self.done[step]))

    def count(self, step: str) -> str:
        statuses = list(self.done[step].values())
        total = self.total(step)
        text = f"{len(statuses)}/{total if total is not None else '?'}"
        extra = [f"{statuses.count(s)} {s}" for s in ("cached", "failed") if statuses.count(s)]
        return text + (f" ({', '.join(extra)})" if extra else "")


class ProgressView:
    """Rich progress bars for steps and for files being transcribed. Thread-safe: events arrive from the poller,
    runner events from the run loop."""

    def __init__(self, progress: Progress, verbose: bool = False) -> None:
        self.progress = progress
        self.verbose = verbose
        self.state = RunProgress()
        self.steps: dict[str, TaskID] = {}
        self.files: dict[str, TaskID] = {}
        self.started: set[str] = set()
        self.said: set[str] = set()  # steps whose own event filled in their bar's text
        self.lock = threading.Lock()

    @staticmethod
    def make_progress(console) -> Progress:
        return Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.fields[count]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)

    def _step(self, step: str) -> TaskID:
        if step not in self.steps:
            self.steps[step] = self.progress.add_task(step, total=None, start=False, count="")
        return self.steps[step]

    def start_step(self, step: str) -> None:
        task = self._step(step)
        if step not in self.started:  # the timer starts with the step, not before
            self.started.add(step)
            self.progress.start_task(task)

    def on_runner_event(self, ev) -> None:
        """The local runner's node events: a step's timer starts when its first task runs."""
        template = ev.template or ""
        with self.lock:
            if template in STEPS and ev.leaf and ev.kind == "node-running":
                self.start_step(template)
            if template in ("plan", "report") and ev.leaf and ev.kind in ("node-succeeded", "node-failed",
                                                                             "node-error"):
                task = self._step(template)
                if template not in self.said:  # the step's own event says more than the phase
                    self.progress.update(task, count=ev.phase.lower() if ev.phase else "")
                self.progress.update(task, total=1, completed=1)
                self.progress.stop_task(task)

    def on_events(self, events: list[Event]) -> None:
        with self.lock:
            for ev in events:
                self.state.add(ev)
                self._draw(ev)

    def _draw(self, ev: Event) -> None:
        p = self.progress
        if ev.event == "planned":
            self.start_step("plan")
            parts = [f"{ev.files or 0} file(s)", f"{(ev.audio_s or 0):.0f} s of audio"]
            if ev.cached:
                parts.append(f"{ev.cached} already done")
            p.update(self._step("plan"), total=1, completed=1, count=", ".join(parts))
            self.said.add("plan")
        elif ev.event in ("file_started", "file_progress") and ev.input is not None:
            self.start_step("transcribe")
            if ev.input not in self.files and len(self.files) < MAX_FILE_BARS:  # a batched shard starts many
                self.files[ev.input] = p.add_task(f"  {_short(ev.input)}", total=ev.duration_s,
                                                  count=f"0/{ev.duration_s:.0f} s" if ev.duration_s else "")
        if ev.event == "file_progress" and ev.input in self.files:
            total = ev.duration_s
            p.update(self.files[ev.input], completed=ev.done_s or 0, total=total,
                     count=f"{ev.done_s or 0:.0f}/{total:.0f} s" if total else f"{ev.done_s or 0:.0f} s")
        elif ev.event == "file_done" and ev.input is not None:
            self.start_step("transcribe")
            if ev.input in self.files:
                p.remove_task(self.files.pop(ev.input))
        elif ev.event in ("summary_started", "summary_done"):
            self.start_step("summarize")
        elif ev.event == "report":
            self.start_step("report")
            p.update(self._step("report"), total=1, completed=1,
                     count=f"{ev.succeeded or 0} succeeded, {ev.failed or 0} failed")
            self.said.add("report")
        for step in ("transcribe", "summarize"):
            if step in self.steps or self.state.done[step]:
                task = self._step(step)
                p.update(task, total=self.state.total(step), completed=len(self.state.done[step]),
                         count=self.state.count(step))
        if self.verbose and ev.event in ("file_done", "summary_done") and ev.input is not None:
            what = ev.status or "succeeded"
            p.console.print(f"{ev.step:<10} {what:<9} {_safe(ev.input)}", soft_wrap=True)

    def finish(self) -> None:
        with self.lock:
            for task in list(self.files.values()):
                self.progress.remove_task(task)
            self.files.clear()


class JsonView:
    """``-o json``: every event as one JSON line on stdout, as the steps wrote it (``print_events`` False: only
    kept, for ``-q``)."""

    def __init__(self, print_events: bool = True) -> None:
        self.state = RunProgress()
        self.print_events = print_events
        self.lock = threading.Lock()

    def on_runner_event(self, ev) -> None:
        pass

    def on_events(self, events: list[Event]) -> None:
        with self.lock:
            for ev in events:
                self.state.add(ev)
                if self.print_events:
                    sys.stdout.write(ev.model_dump_json(exclude_none=True) + "\n")
            sys.stdout.flush()

    def finish(self) -> None:
        pass


class Poller:
    """Feeds a view from an :class:`EventsTail` every ``interval`` seconds on a thread, and once more at the end."""

    def __init__(self, tail: EventsTail, view, interval: float = 0.25) -> None:
        self.tail, self.view, self.interval = tail, view, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kubescribe-events")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.view.on_events(self.tail.poll())

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.view.on_events(self.tail.poll())
        self.view.finish()


def _safe(text: str) -> str:
    from workflows.run_view import safe

    return safe(text)


def _short(name: str, width: int = 40) -> str:
    """A file name for a bar's label: whole when it fits, else its end (the file name) after an ellipsis."""
    return _safe(name if len(name) <= width else "…" + name[-(width - 1):])
