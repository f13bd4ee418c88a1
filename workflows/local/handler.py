"""Task handlers: how one resolved leaf attempt (a :class:`TaskSpec`) is executed.

The runner resolves everything (argv, env, output paths, timeout) and calls
``handler.run(task)`` on a worker thread; the handler only runs it and reports back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Protocol, runtime_checkable

from .model import ERROR, FAILED, SUCCEEDED, TaskOutcome, TaskSpec
from .shutdown import die_with_parent

__all__ = ["TaskHandler", "SubprocessHandler", "RESULT_LIMIT"]

#: Like Argo, keep at most the last 256 KiB of stdout as ``outputs.result``.
RESULT_LIMIT = 256 * 1024


@runtime_checkable
class TaskHandler(Protocol):
    """Runs one attempt. Must honour ``task.timeout`` and ``task.cancel`` and never raise."""

    def run(self, task: TaskSpec) -> TaskOutcome: ...


class SubprocessHandler:
    """Runs ``argv`` as a local process (the container image is ignored).

    * ``PATH`` is prefixed with the directory of ``sys.executable`` so the active venv's
      console scripts (``kubescribe-step``) resolve.
    * stdout and stderr go, line by line, to ``task.log_path`` and to ``task.on_log``;
      stdout is also kept (last 256 KiB) for ``outputs.result``.
    * On timeout or cancel the whole process group gets SIGTERM, then SIGKILL after
      ``kill_grace`` seconds. An attempt cancelled before it started is not started.
    * The process is SIGKILLed by the kernel if this runner dies (``die_with_parent``).
    """

    def __init__(self, kill_grace: float = 2.0, poll_interval: float = 0.05) -> None:
        self.kill_grace = kill_grace
        self.poll_interval = poll_interval

    def run(self, task: TaskSpec) -> TaskOutcome:
        started = time.time()
        try:
            return self._run(task, started)
        except Exception as exc:  # a handler reports, it never raises
            return TaskOutcome(ERROR, f"local runner could not run the task: {exc}", started=started, finished=time.time())

    def _run(self, task: TaskSpec, started: float) -> TaskOutcome:
        env = dict(task.env)
        venv_bin = os.path.dirname(sys.executable)
        env["PATH"] = venv_bin + (os.pathsep + env["PATH"] if env.get("PATH") else "")
        if not task.argv:
            return TaskOutcome(ERROR, "container has no command", started=started, finished=time.time())
        exe = task.argv[0]
        resolved = exe if os.sep in exe else shutil.which(exe, path=env["PATH"])
        if resolved is None or not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
            return TaskOutcome(
                ERROR, f"executable {exe!r} not found (PATH={env['PATH']})", started=started, finished=time.time()
            )
        cwd = task.working_dir if task.working_dir is not None and task.working_dir.is_dir() else None
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        if task.cancel.is_set():
            return TaskOutcome(FAILED, "terminated: the local run was stopped before the task started",
                               started=started, finished=time.time())
        with open(task.log_path, "w", encoding="utf-8", errors="replace") as log:
            try:
                proc = subprocess.Popen(
                    [resolved, *task.argv[1:]],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=die_with_parent(),  # this worker thread waits for it, so it is the right parent
                )
            except OSError as exc:
                return TaskOutcome(ERROR, f"cannot start {exe!r}: {exc}", started=started, finished=time.time())
            lock = threading.Lock()
            stdout_tail: deque[str] = deque()
            tail_size = [0]

            def pump(stream: IO[bytes], keep: bool) -> None:
                for raw in iter(stream.readline, b""):
                    line = raw.decode("utf-8", errors="replace")
                    with lock:
                        log.write(line)
                        log.flush()
                        if keep:
                            stdout_tail.append(line)
                            tail_size[0] += len(line)
                            while tail_size[0] > RESULT_LIMIT and len(stdout_tail) > 1:
                                tail_size[0] -= len(stdout_tail.popleft())
                    if task.on_log is not None:
                        try:
                            task.on_log(task.node_name, line.rstrip("\r\n"))
                        except Exception:  # a broken callback must not kill the pump
                            pass
                stream.close()

            pumps = [
                threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
                threading.Thread(target=pump, args=(proc.stderr, False), daemon=True),
            ]
            for t in pumps:
                t.start()
            killed_for = self._wait(proc, task, started)
            for t in pumps:
                t.join(timeout=5)
            finished = time.time()
        stdout = "".join(stdout_tail)[-RESULT_LIMIT:]
        code = proc.returncode
        if killed_for is not None:
            return TaskOutcome(FAILED, killed_for, exit_code=code, stdout=stdout, started=started, finished=finished)
        if code == 0:
            return TaskOutcome(SUCCEEDED, "", exit_code=0, stdout=stdout, started=started, finished=finished)
        if code is not None and code < 0:
            message = f"terminated by signal {-code}"
        else:
            message = f"Error (exit code {code})"
        return TaskOutcome(FAILED, message, exit_code=code, stdout=stdout, started=started, finished=finished)

    def _wait(self, proc: subprocess.Popen[bytes], task: TaskSpec, started: float) -> str | None:
        """Wait for exit; on timeout/cancel kill the process group and return why."""
        deadline = None if task.timeout is None else started + task.timeout
        while True:
            try:
                proc.wait(timeout=self.poll_interval)
                return None
            except subprocess.TimeoutExpired:
                pass
            if task.cancel.is_set():
                reason = "terminated: the local run was stopped"
                break
            if deadline is not None and time.time() >= deadline:
                reason = f"timeout: process killed after exceeding its deadline of {task.timeout:g}s"
                break
        self._kill(proc)
        return reason

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=wait)
                # the group may still hold children that keep our pipes open
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return
            except subprocess.TimeoutExpired:
                continue
