"""Run management through the real CLI: `kubescribe runs OUT` lists past runs with their counts, `kubescribe show
OUT RUN|FILE` prints transcripts and summaries, and `--only-new` with nothing new leaves report.json as it was
(it used to rewrite it with zero files)."""

from __future__ import annotations

import json
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


def kubescribe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=cli_env(COLUMNS="200"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, list[str], str]]:
    """An output folder after one run over weather.wav and corrupt.wav: (src, out, run args, run id)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("runs") / "out"
    shutil.copy(SPEECH / "weather.wav", src / "weather.wav")
    shutil.copy(BAD / "corrupt.wav", src / "corrupt.wav")
    with FakeLLM("The weather will be sunny.") as llm:
        args = ["run", str(src), "--out", str(out), "--llm-url", llm.url, "--llm-model", "fake-model",
                "--beam-size", "1", "--max-output-tokens", "16"]
        result = kubescribe(*args, "-o", "json")
        assert result.returncode == 1, result.stderr[-3000:]
        run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
        yield src, out, args, run_id


def test_runs_lists_past_runs_with_counts(finished) -> None:
    _, out, _, run_id = finished
    result = kubescribe("runs", str(out), "-o", "json")
    assert result.returncode == 0, result.stderr
    (run,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert run["run_id"] == run_id and (run["files"], run["succeeded"], run["failed"]) == (2, 1, 1)
    assert run["state"] == "finished" and run["created"] > 0
    text = kubescribe("runs", str(out))
    assert text.returncode == 0 and run_id in text.stdout and "finished" in text.stdout


def test_show_prints_a_runs_or_a_files_transcript_and_summary(finished) -> None:
    _, out, _, run_id = finished
    by_run = kubescribe("show", str(out), run_id)
    assert by_run.returncode == 0, by_run.stderr
    assert "weather.wav — transcript" in by_run.stdout and "weather.wav — summary" in by_run.stdout
    assert "corrupt.wav: failed: corrupt.wav: not decodable" in by_run.stderr
    by_file = kubescribe("show", str(out), "weather.wav")
    assert by_file.returncode == 0, by_file.stderr
    transcript = (out / "transcripts" / "weather.txt").read_text().strip()
    assert transcript and transcript.splitlines()[0] in by_file.stdout and "corrupt" not in by_file.stdout
    missing = kubescribe("show", str(out), "nope.wav")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no run or input named nope.wav")
    assert kubescribe("runs", str(out / "absent")).returncode == 2


def test_only_new_with_nothing_new_keeps_the_report(finished) -> None:
    _, out, args, _ = finished
    before = (out / "report.json").read_bytes()
    runs_before = sorted(p.name for p in (out / ".kubescribe" / "runs").iterdir())
    result = kubescribe(*args, "--only-new")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing new: 2 input(s) were already processed" in result.stderr
    assert (out / "report.json").read_bytes() == before
    assert sorted(p.name for p in (out / ".kubescribe" / "runs").iterdir()) == runs_before  # nothing ran


def test_runs_and_show_read_an_s3_output(s3_env: str) -> None:
    import io

    from minio import Minio

    from tests.support import make_bucket

    make_bucket(s3_env, "runs-listed")
    client = Minio(s3_env.split("://")[1], access_key="test-access", secret_key="test-secret", secure=False)

    def put(key: str, value: object) -> None:
        data = (value if isinstance(value, str) else json.dumps(value)).encode()
        client.put_object("runs-listed", f"out/{key}", io.BytesIO(data), len(data))

    files = [{"input": "a.wav", "status": "succeeded", "error": None,
              "outputs": {"txt": "transcripts/a.txt", "summary": "summaries/a.md"}}]
    put(".kubescribe/runs/nightly-1/plan.json", {"created": 1000.0, "files": [{}, {}], "rejected": []})
    put(".kubescribe/runs/nightly-1/report.json", {"run_id": "nightly-1", "files": files,
                                                   "totals": {"files": 2, "succeeded": 2, "failed": 0}})
    put(".kubescribe/runs/nightly-2/plan.json", {"created": 2000.0, "files": [{}], "rejected": []})  # broke off
    put("transcripts/a.txt", "Hello from the archive.\n")
    put("summaries/a.md", "A greeting.\n")
    listed = kubescribe("runs", "s3://runs-listed/out", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["run_id"], r["files"], r["succeeded"], r["state"]) for r in rows] == [
        ("nightly-1", 2, 2, "finished"), ("nightly-2", 1, None, "no report (running, or it broke off)")]
    shown = kubescribe("show", "s3://runs-listed/out", "nightly-1")
    assert shown.returncode == 0 and "Hello from the archive." in shown.stdout and "A greeting." in shown.stdout
