"""What `kubescribe run` reports while it works and at the end, through the real CLI with real Whisper and a fake
OpenAI server: progress comes from the steps' structured events (``-o json`` prints them for scripts), counts are
right for cached and failed files, each failed file is one line, and a report step that found failed files is not
shown as a failed step."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import FakeLLM, cli_env
from tests.support import FIXTURES, ROOT

pytestmark = pytest.mark.e2e

SPEECH, BAD = FIXTURES / "speech", FIXTURES / "bad"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM("A short summary.") as server:
        yield server


def kubescribe(*args: str, columns: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=cli_env(COLUMNS=str(columns)))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("mixed")
    shutil.copy(SPEECH / "weather.wav", src / "weather.wav")
    shutil.copy(BAD / "corrupt.wav", src / "corrupt.wav")
    return src


def run_args(src: Path, out: Path, llm: FakeLLM, *extra: str) -> list[str]:
    return ["run", str(src), "--out", str(out), "--llm-url", llm.url, "--llm-model", "fake-model", "--beam-size", "1",
            "--max-output-tokens", "16", *extra]


def test_json_output_is_events_then_the_report(tmp_path: Path, mixed: Path, llm: FakeLLM) -> None:
    result = kubescribe(*run_args(mixed, tmp_path / "out", llm, "-o", "json"))
    assert result.returncode == 1, result.stderr[-3000:]  # corrupt.wav failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is JSON
    events, final = lines[:-1], lines[-1]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "planned" and events[0]["files"] == 2 and kinds[-1] == "report"
    done = {e["input"]: e for e in events if e["event"] == "file_done"}
    assert done["weather.wav"]["status"] == "succeeded"
    assert done["corrupt.wav"]["status"] == "failed" and done["corrupt.wav"]["error"].startswith("corrupt.wav: ")
    assert [e["input"] for e in events if e["event"] == "summary_done"] == ["weather.wav"]
    assert any(e["event"] == "file_progress" and e["input"] == "weather.wav" for e in events)
    assert final["event"] == "result" and final["report"]["run_id"] == final["run_id"]
    assert {f["input"]: f["status"] for f in final["report"]["files"]} == {"weather.wav": "succeeded",
                                                                           "corrupt.wav": "failed"}
    assert result.stderr.count("corrupt.wav: not decodable") == 1  # the failure, once, on stderr


def test_counts_are_right_for_cached_and_failed_files_and_each_failure_is_one_line(
        tmp_path: Path, mixed: Path, llm: FakeLLM) -> None:
    out = tmp_path / "out"
    first = kubescribe(*run_args(mixed, out, llm))
    assert first.returncode == 1, first.stderr[-3000:]
    both = first.stdout + first.stderr
    assert both.count("corrupt.wav: not decodable") == 1, both  # not once per step
    assert "step report failed" not in both and "Traceback" not in both
    assert re.search(r"transcribe .* 2/2 \(1 failed\)", first.stderr), first.stderr
    assert re.search(r"summarize .* 1/1 ", first.stderr), first.stderr
    second = kubescribe(*run_args(mixed, out, llm))  # weather.wav is cached now; corrupt.wav fails again
    assert second.returncode == 1
    assert re.search(r"transcribe .* 2/2 \(1 cached, 1 failed\)", second.stderr), second.stderr
    assert re.search(r"summarize .* 1/1 \(1 cached\)", second.stderr), second.stderr
    assert (second.stdout + second.stderr).count("corrupt.wav: not decodable") == 1


def test_quiet_prints_only_the_count_and_failures(tmp_path: Path, mixed: Path, llm: FakeLLM) -> None:
    result = kubescribe(*run_args(mixed, tmp_path / "out", llm, "-q"))
    assert result.returncode == 1
    assert result.stdout.strip() == "1/2 succeeded"
    assert result.stderr.strip().splitlines() == [
        "failed corrupt.wav: not decodable audio: Invalid data found when processing input"]


def test_verbose_prints_each_files_outcome(tmp_path: Path, mixed: Path, llm: FakeLLM) -> None:
    result = kubescribe(*run_args(mixed, tmp_path / "out", llm, "-v"))
    assert result.returncode == 1
    assert re.search(r"^transcribe +succeeded +weather\.wav$", result.stderr, re.M), result.stderr
    assert re.search(r"^summarize +succeeded +weather\.wav$", result.stderr, re.M), result.stderr


def test_progress_events_file_per_task_attempt(tmp_path: Path, mixed: Path, llm: FakeLLM) -> None:
    """The local runner gives each task attempt its own events file (KUBESCRIBE_EVENTS), under the work dir."""
    work = tmp_path / "work"
    result = kubescribe(*run_args(mixed, tmp_path / "out", llm, "--workdir", str(work)))
    assert result.returncode == 1
    (run_events,) = (work / "events").iterdir()
    names = sorted(p.name.split("-")[0] for p in run_events.glob("*.jsonl"))
    assert names == ["plan", "report", "summarize", "transcribe"]
