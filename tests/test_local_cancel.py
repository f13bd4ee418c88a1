"""LocalRunner.cancel and the children-die-with-their-parent guard, with real processes (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.argo_support import OK, ctr, task, workflow
from tests.cli_support import alive, cmdline, descendants, wait_until
from workflows.local import LocalRunner

PY = sys.executable

# A task that starts a grandchild in its process group, writes both pids, then sleeps: cancel must end both.
SLOW_TREE = (
    "import os,subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); "
    "open(sys.argv[1],'w').write(f'{os.getpid()} {c.pid}'); time.sleep(60)"
)


def test_cancel_kills_running_tasks_and_starts_nothing_new(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    wf = workflow([task("slow", "slow"), task("next", "ok", depends="slow")],
                  ctr("slow", SLOW_TREE, str(pids)), OK)
    runner = LocalRunner(tmp_path / "runs")
    canceller = threading.Thread(target=lambda: (wait_until(pids.exists, 60, "the task to start"),
                                                 time.sleep(0.2), runner.cancel("stopped by SIGTERM")))
    canceller.start()
    t0 = time.monotonic()
    result = runner.run(wf)
    canceller.join()
    assert time.monotonic() - t0 < 60  # generous: proves it returned, not how fast
    assert result.phase == "Failed" and result.message == "stopped by SIGTERM"
    slow = result.nodes["slow"]
    assert slow.phase == "Failed" and "stopped" in slow.message and slow.attempts == 1
    assert "next" not in result.nodes  # nothing started after the cancel
    for pid in map(int, pids.read_text().split()):
        st = Path(f"/proc/{pid}/stat")
        wait_until(lambda: not st.exists() or st.read_text().rsplit(")", 1)[1].split()[0] == "Z", 30,
                   f"pid {pid} to exit")


def test_cancel_before_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    wf = workflow([task("a", "touch")], ctr("touch", "import sys; open(sys.argv[1],'w').write('x')", str(marker)))
    runner = LocalRunner(tmp_path / "runs")
    runner.cancel("stopped by SIGINT")
    result = runner.run(wf)
    assert result.phase == "Failed" and result.message == "stopped by SIGINT"
    assert result.nodes["a"].phase == "Failed" and not marker.exists()


def test_cancel_retries_nothing(tmp_path: Path) -> None:
    """A cancelled attempt of a task with retries is not retried."""
    pids = tmp_path / "pids"
    slow = {**ctr("slow", SLOW_TREE, str(pids)), "retryStrategy": {"limit": 3, "retryPolicy": "Always"}}
    runner = LocalRunner(tmp_path / "runs")
    threading.Thread(target=lambda: (wait_until(pids.exists, 60, "the task to start"), runner.cancel())).start()
    result = runner.run(workflow([task("slow", "slow")], slow))
    assert result.nodes["slow"].phase == "Failed" and result.nodes["slow"].attempts == 1


def test_children_die_with_the_runner_process(tmp_path: Path) -> None:
    """SIGKILL of a process running a LocalRunner (no handler can run) still ends its task processes: the kernel
    kills them (PR_SET_PDEATHSIG), so nothing is left reparented to init."""
    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pids = tmp_path / "pids"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.argo_support import ctr, task, workflow; from workflows.local import LocalRunner;"
        f"LocalRunner(sys.argv[2]).run(workflow([task('slow', 'slow')], ctr('slow', {SLOW_TREE!r}, sys.argv[3])))"
    )
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([PY, "-c", script, root, str(tmp_path / "runs"), str(pids)], cwd=root)
    try:
        wait_until(pids.exists, 60, "the task to start")
        task_pid = int(pids.read_text().split()[0])
        kids = {pid: v for pid, v in descendants(proc.pid).items() if pid == task_pid}
        assert kids, "the task runs as a child of the runner"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_until(lambda: not any(alive(pid, st) for pid, (st, _) in kids.items()), 30, "the task to die")
    finally:
        if proc.poll() is None:
            proc.kill()
        if pids.exists():  # the orphaned grandchild (a plain sleep without the guard): do not leave it around
            for pid in map(int, pids.read_text().split()):
                if "time.sleep(60)" in cmdline(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


def test_signal_stop_cancels_inside_a_run_and_raises_outside() -> None:
    """SIGTERM/SIGINT: inside ``cancels`` only the cancel function runs (once; a second signal is ignored) and
    Interrupted follows the block; outside, Interrupted is raised at once. Handlers are restored afterwards."""
    import pytest

    from workflows.local.shutdown import Interrupted, SignalStop

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as raised, SignalStop():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before this ends
    assert raised.value.exit_code == 143
    calls: list[str] = []
    with SignalStop() as stop, pytest.raises(Interrupted) as raised:
        with stop.cancels(calls.append):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            wait_until(lambda: calls, 5, "the cancel call")
            time.sleep(0.1)
    assert calls == ["stopped by SIGINT"] and raised.value.exit_code == 130
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
