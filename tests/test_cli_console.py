"""What `kubescribe run` prints, through the real CLI: odd file names are shown literally and harmlessly, and an S3
outage after the steps began ends in a one-line error plus what did finish, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import FakeLLM, TcpProxy, cli_env, output_of, start_cli, wait_until
from tests.support import FIXTURES, ROOT, make_bucket

pytestmark = pytest.mark.e2e

WEATHER = FIXTURES / "speech" / "weather.wav"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    # The summary itself carries markup and an escape sequence: --show must print it literally too.
    with FakeLLM("Summary with [bold]markup[/bold], [/oops] and \x1b[2J escapes.") as server:
        yield server


# A name rich would style, one that makes rich raise MarkupError (a folder "[" holding "x].wav"), one that would
# clear the terminal, and an emoji code.
ODD = ["[bold]x.wav", "[/x].wav", "\x1b[2Jclear.wav", "a:smile:b.wav"]


def shown(name: str) -> str:
    """How the console should show a name: control characters as visible escapes, everything else as is."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: m.group().encode("unicode_escape").decode(), name)


def test_odd_file_names_are_printed_literally_and_harmlessly(tmp_path: Path, fake_llm: FakeLLM) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ODD:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WEATHER, src / name)
    result = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "run", str(src), "--out", str(out), "--llm-url", fake_llm.url,
         "--llm-model", "fake-model", "--beam-size", "1", "--max-output-tokens", "16", "--show"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=cli_env(COLUMNS="200"),
    )
    both = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in both and "MarkupError" not in both
    report = json.loads((out / "report.json").read_text())
    assert sorted(f["input"] for f in report["files"]) == sorted(ODD)
    for name in ODD:
        assert f"{shown(name)} — transcript" in result.stdout, name  # --show's heading
        assert re.search(rf"│ {re.escape(shown(name))} +│ succeeded", result.stdout), name  # the report table
    assert "\x1b" not in both  # no raw escape at all (output is not a terminal, so rich adds none either)
    # --show prints each stored summary literally, whatever markdown/markup characters it holds (the summarize
    # step has already dropped the escape and, here, the ungrounded prose of the fake model)
    for f in report["files"]:
        stored = (out / f["outputs"]["summary"]).read_text().strip()
        assert stored and all(line in result.stdout for line in stored.splitlines() if line.strip()), stored


def test_s3_outage_after_the_steps_started_is_one_line_and_says_what_finished(tmp_path: Path, s3_server: str) -> None:
    """The output bucket answers at preflight and during transcription, then goes away (connections refused) once
    the transcribe step has written its results: summarize and report fail, and so does the CLI's own reading of
    the report. The CLI exits 2 with one error line naming the endpoint, lists the transcribed file, and points
    at the task logs."""
    make_bucket(s3_server, "outage")
    src, work, logs = tmp_path / "in", tmp_path / "work", tmp_path / "logs"
    src.mkdir()
    shutil.copy(WEATHER, src / "weather.wav")
    proxy = TcpProxy(s3_server.split("://", 1)[1])
    env = cli_env(KUBESCRIBE_S3_ENDPOINT=proxy.url, AWS_ACCESS_KEY_ID="test-access",
                  AWS_SECRET_ACCESS_KEY="test-secret", AWS_REGION="us-east-1", COLUMNS="200")
    with FakeLLM() as llm:
        cli = start_cli(["run", str(src), "--out", "s3://outage/results", "--workdir", str(work), "--llm-url", llm.url,
                         "--llm-model", "fake-model", "--beam-size", "1"], logs, env=env)
        try:
            def transcribed() -> bool:  # the step's last line, printed after its outputs are stored
                return any(re.search(r"^shard 0: 1 succeeded", p.read_text(errors="replace"), re.M)
                           for p in work.glob("*/transcribe*/attempt-*/stdout.log"))

            wait_until(transcribed, 600, "the transcribe step to finish", interval=0.02)
            proxy.down()
            code = cli.wait(timeout=600)
        finally:
            proxy.down()
            if cli.poll() is None:
                cli.kill()
    stdout, stderr = output_of(logs)
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{proxy.port}" in errors[0] and "unreachable" in errors[0], stderr
    assert "transcribed before the run ended: weather.wav" in stderr
    assert re.search(r"^  summarize: .*127\.0\.0\.1:%d.* \(log: .*stdout\.log\)$" % proxy.port, stderr, re.M), stderr
    assert f"task logs: {work}" in stderr
