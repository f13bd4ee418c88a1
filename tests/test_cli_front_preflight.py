"""`kubescribe run`'s preflight, through the real CLI: every setup problem is found before any heavy work (no LLM
server started, nothing transcribed), exits 2 and says so in one line naming the option. Before the preflight these
cost a transcription (a dead --llm-url, a missing model), started the LLM server first (--beam-size 0, an empty
folder), or ended in a traceback (--out naming a file)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import FakeLLM, cli_env
from tests.support import FIXTURES, ROOT

pytestmark = pytest.mark.e2e

WEATHER = FIXTURES / "speech" / "weather.wav"


def kubescribe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=cli_env(**(env or {})))


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed at preflight: exit 2, a single line on stderr, nothing on stdout, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and not result.stdout
    return lines[0]


@pytest.fixture
def one_file(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(WEATHER, src / "weather.wav")
    return src


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_bad_option_value_is_named_before_the_llm_server_starts(tmp_path: Path, one_file: Path) -> None:
    # No --llm-url: the local llama-server would start first (and say so); the preflight comes before it.
    line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--beam-size", "0"))
    assert line.startswith("error: --beam-size 0:") and "greater than or equal to 1" in line
    line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--temperature", "3"))
    assert line.startswith("error: --temperature 3")


def test_missing_model_fails_at_once_naming_it(tmp_path: Path, one_file: Path) -> None:
    with FakeLLM() as llm:
        missing = tmp_path / "models" / "large.pt"
        line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--model", str(missing),
                                    "--llm-url", llm.url))
        assert line == f"error: --model {missing}: no such file or folder"
        line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--model", "huge",
                                    "--llm-url", llm.url))
        assert line.startswith("error: --model huge: unknown model")
    assert not (tmp_path / "out" / "transcripts").exists()


def test_dead_llm_endpoint_fails_before_transcribing(tmp_path: Path, one_file: Path) -> None:
    url = dead_url()
    line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--llm-url", url))
    assert line == f"error: --llm-url {url}: not answering (connection refused)"
    assert not (tmp_path / "out" / "transcripts").exists()


def test_a_gateway_that_refuses_the_key_fails_before_transcribing(tmp_path: Path, one_file: Path) -> None:
    """The preflight asks with the summarize step's own client and credentials (LLM_API_KEY as the bearer token)."""
    with FakeLLM(token="right-key") as llm:
        line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--llm-url", llm.url,
                                    env={"LLM_API_KEY": "wrong-key"}))
        assert line == (f"error: --llm-url {llm.url}: the server refused the credentials (HTTP 401; LLM_API_KEY or "
                        "user:password in the URL)")
        assert "wrong-key" not in line
    assert not (tmp_path / "out" / "transcripts").exists()


def test_out_naming_a_file_is_one_line(tmp_path: Path, one_file: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    line = one_error(kubescribe("run", str(one_file), "--out", str(target), "--llm-url", dead_url()))
    assert line == f"error: --out {target}: exists and is not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_out_not_writable_is_one_line(tmp_path: Path, one_file: Path) -> None:  # pragma: no cover - CI runs as root
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    line = one_error(kubescribe("run", str(one_file), "--out", str(locked), "--llm-url", dead_url()))
    assert line.startswith(f"error: --out {locked}: not writable")


def test_empty_folder_is_found_before_the_llm_server_starts(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not audio")
    line = one_error(kubescribe("run", str(tmp_path / "empty"), "--out", str(tmp_path / "out")))
    assert line == f"error: no audio files found in {tmp_path / 'empty'}"


def test_unreachable_s3_output_fails_at_once(tmp_path: Path, one_file: Path) -> None:
    endpoint = dead_url().removesuffix("/v1")
    line = one_error(kubescribe("run", str(one_file), "--out", "s3://results/x", "--llm-url", dead_url(),
                                env={"KUBESCRIBE_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "a",
                                     "AWS_SECRET_ACCESS_KEY": "b"}))
    assert line.startswith("error: --out s3://results/x:") and endpoint.split("//")[1] in line


def test_missing_input_and_empty_glob_are_usage_errors(tmp_path: Path) -> None:
    line = one_error(kubescribe("run", str(tmp_path / "nope.wav"), "--out", str(tmp_path / "out")))
    assert line == f"error: audio input not found: {tmp_path / 'nope.wav'}"
    line = one_error(kubescribe("run", str(tmp_path / "*.wav"), "--out", str(tmp_path / "out")))
    assert line == f"error: no file matches {tmp_path / '*.wav'}"


def test_translate_on_an_english_only_model_is_refused_up_front(tmp_path: Path, one_file: Path) -> None:
    line = one_error(kubescribe("run", str(one_file), "--out", str(tmp_path / "out"), "--task", "translate"))
    assert line.startswith("error: --task translate needs a multilingual model; tiny.en is English-only")


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = kubescribe("run", str(tmp_path))  # no --out
    assert result.returncode == 2 and "--out" in result.stderr and "Traceback" not in result.stderr
    result = kubescribe("run", str(tmp_path), "--out", str(tmp_path / "o"), "--beam-size", "five")
    assert result.returncode == 2 and "--beam-size" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_during_preflight_is_one_line_not_a_traceback(tmp_path: Path, one_file: Path) -> None:
    """An LLM endpoint that accepts the connection and never answers holds the preflight; Ctrl-C there ends the
    CLI with exit 130 and one line."""
    import signal
    import threading

    from tests.cli_support import output_of, start_cli, wait_until

    held: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    cli = start_cli(["run", str(one_file), "--out", str(tmp_path / "out"), "--llm-url", url], tmp_path / "logs")
    try:
        wait_until(lambda: held, 120, "the preflight to ask the LLM endpoint")
        cli.send_signal(signal.SIGINT)
        code = cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
        listener.close()
        for s in held:
            s.close()
    stdout, stderr = output_of(tmp_path / "logs")
    assert code == 130 and "Traceback" not in stdout + stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("stopped by SIGINT")
