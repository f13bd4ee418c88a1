"""`kubescribe run` takes what whisper users type: one file, several files, globs (local or s3://), a folder, and
Whisper's own options; the results table keeps every path whole at 80 columns. Through the real CLI, real Whisper
and a fake OpenAI server (and a real S3-protocol server for s3:// globs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from tests.cli_support import FakeLLM, cli_env
from tests.support import FIXTURES, ROOT, make_bucket

pytestmark = pytest.mark.e2e

SPEECH = FIXTURES / "speech"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM("A short summary.") as server:
        yield server


def kubescribe(*args: str, columns: int = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=cli_env(COLUMNS=str(columns), **(env or {})))


def fast(llm: FakeLLM) -> list[str]:
    return ["--llm-url", llm.url, "--llm-model", "fake-model", "--beam-size", "1", "--max-output-tokens", "16"]


def inputs_of(out: Path) -> dict[str, dict]:
    return {f["input"]: f for f in json.loads((out / "report.json").read_text())["files"]}


def test_one_file(tmp_path: Path, llm: FakeLLM) -> None:
    (tmp_path / "one").mkdir()
    shutil.copy(SPEECH / "weather.wav", tmp_path / "one" / "hello.wav")
    shutil.copy(SPEECH / "budget.flac", tmp_path / "one" / "other.flac")  # next to it, not asked for
    out = tmp_path / "x"
    result = kubescribe("run", str(tmp_path / "one" / "hello.wav"), "--out", str(out), *fast(llm))
    assert result.returncode == 0, result.stderr[-3000:]
    files = inputs_of(out)
    assert list(files) == ["hello.wav"]  # relative to the file's folder, as for a folder run
    assert files["hello.wav"]["outputs"]["txt"] == "transcripts/hello.txt"
    assert "weather" in (out / "transcripts" / "hello.txt").read_text().lower()


def test_files_in_several_folders_and_a_glob(tmp_path: Path, llm: FakeLLM) -> None:
    calls = tmp_path / "rec" / "calls"
    calls.mkdir(parents=True)
    shutil.copy(SPEECH / "weather.wav", calls / "a.wav")
    shutil.copy(SPEECH / "launch.mp3", calls / "b.mp3")
    (tmp_path / "rec" / "notes").mkdir()
    shutil.copy(SPEECH / "budget.flac", tmp_path / "rec" / "notes" / "c.flac")
    out = tmp_path / "out"
    # a quoted glob (expanded here, not by a shell) plus a file in another folder
    result = kubescribe("run", str(calls / "*.wav"), str(tmp_path / "rec" / "notes" / "c.flac"), "--out", str(out),
                        *fast(llm))
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(inputs_of(out)) == {"calls/a.wav", "notes/c.flac"}  # relative to their common folder; b.mp3 not asked


def test_s3_glob(tmp_path: Path, llm: FakeLLM, s3_env: str) -> None:
    make_bucket(s3_env, "globbed")
    client = Minio(s3_env.split("://")[1], access_key="test-access", secret_key="test-secret", secure=False)
    client.fput_object("globbed", "in/day1/a.wav", str(SPEECH / "weather.wav"))
    client.fput_object("globbed", "in/day1/b.mp3", str(SPEECH / "launch.mp3"))
    client.fput_object("globbed", "in/day2/c.wav", str(SPEECH / "weather.wav"))
    out = tmp_path / "out"
    result = kubescribe("run", "s3://globbed/in/*/*.wav", "--out", str(out), *fast(llm),
                        "--workdir", str(tmp_path / "work"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(inputs_of(out)) == {"day1/a.wav", "day2/c.wav"}


def test_whisper_options_and_an_80_column_table(tmp_path: Path, llm: FakeLLM) -> None:
    deep = tmp_path / "recordings" / "quarterly-review-meetings" / "engineering-department"
    deep.mkdir(parents=True)
    name = "2026-11-30-weekly-status-meeting-with-everyone.wav"
    shutil.copy(SPEECH / "weather.wav", deep / name)
    shutil.copy(SPEECH / "budget.flac", deep / "budget.flac")
    out = tmp_path / "out"
    result = kubescribe("run", str(tmp_path / "recordings"), "--out", str(out), *fast(llm), "--output-format",
                        "txt,tsv", "--language", "auto", "--initial-prompt", "Weather report.", "--no-vad",
                        "--temperature", "0.2", "--no-word-timestamps", columns=80)
    assert result.returncode == 0, result.stderr[-3000:]
    key = f"quarterly-review-meetings/engineering-department/{name}"
    files = inputs_of(out)
    assert files[key]["status"] == "succeeded"
    stem = key.rsplit(".", 1)[0]
    assert (out / "transcripts" / f"{stem}.tsv").is_file() and (out / "transcripts" / f"{stem}.txt").is_file()
    assert not (out / "transcripts" / f"{stem}.srt").exists()
    # The results: every input name and output path whole on one line, never broken mid-word.
    for text in (key, f"transcripts/{stem}.txt", f"summaries/{stem}.md"):
        assert any(text in line for line in result.stdout.splitlines()), (text, result.stdout)
