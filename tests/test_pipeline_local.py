"""End to end: `kubescribe run` compiles the hera DAG and the local runner executes it, with real Whisper weights,
a real llama.cpp server and (for the S3 case) a real S3-protocol server."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from minio import Minio

from tests.cli_support import check_contract, kubescribe
from tests.support import FIXTURES, SAMPLES, make_bucket

pytestmark = pytest.mark.e2e

SPEECH = FIXTURES / "speech"
BAD = FIXTURES / "bad"
GOOD = {"weather.wav", "budget.flac", "launch.mp3", "nested/stereo.ogg", "jfk.flac", "silence.flac"}
BROKEN = {"corrupt.wav", "empty.wav", "notes.mp3"}


def mixed_folder(root: Path) -> Path:
    src = root / "recordings"
    (src / "nested").mkdir(parents=True)
    for name in ("weather.wav", "budget.flac", "launch.mp3"):
        shutil.copy(SPEECH / name, src / name)
    shutil.copy(SPEECH / "stereo.ogg", src / "nested" / "stereo.ogg")
    shutil.copy(SAMPLES / "jfk.flac", src / "jfk.flac")
    for name in ("silence.flac", *BROKEN):
        shutil.copy(BAD / name, src / name)
    (src / "agenda.txt").write_text("not audio, not an input")
    return src


@pytest.mark.llm
def test_run_mixed_folder_end_to_end_then_resume(tmp_path, llama_server):
    src, out = mixed_folder(tmp_path), tmp_path / "out"
    args = ["run", str(src), "--out", str(out), "--llm-url", llama_server.url, "--llm-model", llama_server.model,
            "--shard-seconds", "20", "--max-shards", "3", "--context-tokens", "2048", "--max-output-tokens", "64"]
    first = kubescribe(*args)
    assert first.returncode == 1, first.stderr[-3000:]  # some inputs are broken
    assert "Traceback" not in first.stdout + first.stderr
    report = json.loads((out / "report.json").read_text())
    files = check_contract(report, lambda rel: (out / rel).is_file())
    assert set(files) == GOOD | BROKEN
    assert report["ignored"] == [{"input": "agenda.txt", "reason": "not an audio file name"}]
    assert {n for n, f in files.items() if f["status"] == "succeeded"} == GOOD
    for name in BROKEN:
        assert files[name]["error"].startswith(f"{name}: ") and files[name]["outputs"]["txt"] is None
    assert report["totals"]["shards"] == 3  # fanned out over several Whisper tasks
    jfk = files["jfk.flac"]
    assert "ask not what your country" in (out / jfk["outputs"]["txt"]).read_text().lower()
    assert (out / jfk["outputs"]["summary"]).read_text().strip()
    assert jfk["summary"]["ttft_s"] > 0 and jfk["transcribe"]["rtf"] > 0
    assert (out / "transcripts/nested/stereo.srt").is_file()
    assert (out / files["silence.flac"]["outputs"]["txt"]).read_text().strip() == ""
    assert "report.json" in first.stdout

    # Same input, same options: nothing is transcribed or summarized again, the report is the same.
    second = kubescribe(*args)
    assert second.returncode == 1
    again = json.loads((out / "report.json").read_text())
    assert again["run_id"] != report["run_id"]
    assert again["totals"]["transcripts_cached"] == len(GOOD)
    assert again["totals"]["summaries_cached"] == len(GOOD)
    assert [(f["input"], f["status"]) for f in again["files"]] == [(f["input"], f["status"]) for f in report["files"]]

    # A scheduled run over the same prefix plans only what is new: finished files and files that are bad in
    # themselves are skipped, a re-uploaded (changed) file is processed again.
    shutil.copy(SPEECH / "weather.wav", src / "new-meeting.wav")
    shutil.copy(SPEECH / "budget.flac", src / "corrupt.wav")  # the bad upload was replaced by a good one
    third = kubescribe(*args, "--only-new")
    assert third.returncode == 0, third.stderr[-3000:]
    latest = json.loads((out / "report.json").read_text())
    this_run = json.loads((out / ".kubescribe" / "runs" / latest["run_id"] / "report.json").read_text())
    assert {f["input"]: f["status"] for f in this_run["files"]} == {"new-meeting.wav": "succeeded", "corrupt.wav": "succeeded"}
    assert latest["totals"]["already_processed"] == len(GOOD) + len(BROKEN) - 1
    # report.json at the root: every input ever run here, its latest outcome and the run that produced it
    merged = {f["input"]: (f["status"], f["run_id"]) for f in latest["files"]}
    assert set(merged) == GOOD | BROKEN | {"new-meeting.wav"}
    assert merged["corrupt.wav"] == ("succeeded", latest["run_id"]) and merged["jfk.flac"][1] == again["run_id"]
    assert merged["empty.wav"][0] == "failed" and latest["this_run"]["files"] == 2
    fourth = kubescribe(*args, "--only-new")
    assert fourth.returncode == 0 and "nothing new" in fourth.stderr


@pytest.mark.llm
def test_run_against_s3_end_to_end(tmp_path, llama_server, s3_env):
    make_bucket(s3_env, "audio")
    client = Minio(s3_env.split("://")[1], access_key="test-access", secret_key="test-secret", secure=False)
    client.fput_object("audio", "incoming/calls/jfk.flac", str(SAMPLES / "jfk.flac"))
    client.fput_object("audio", "incoming/weather.wav", str(SPEECH / "weather.wav"))
    client.fput_object("audio", "incoming/corrupt.wav", str(BAD / "corrupt.wav"))
    result = kubescribe("run", "s3://audio/incoming", "--out", "s3://audio/results", "--llm-url", llama_server.url,
                        "--llm-model", llama_server.model, "--context-tokens", "2048", "--max-output-tokens", "48",
                        "--workdir", str(tmp_path / "work"))
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(client.get_object("audio", "results/report.json").read())

    def exists(rel: str) -> bool:
        return any(True for _ in client.list_objects("audio", prefix=f"results/{rel}"))

    files = check_contract(report, exists)
    assert {n: f["status"] for n, f in files.items()} == {
        "calls/jfk.flac": "succeeded", "weather.wav": "succeeded", "corrupt.wav": "failed"}
    txt = client.get_object("audio", "results/" + files["calls/jfk.flac"]["outputs"]["txt"]).read().decode()
    assert "your country" in txt.lower()


def test_unreachable_llm_is_found_before_any_transcription(tmp_path):
    """A dead --llm-url used to be found after every file was transcribed (exit 1); the preflight finds it first:
    exit 2, one line naming the option and the endpoint, nothing transcribed."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "jfk.flac", src / "jfk.flac")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = kubescribe("run", str(src), "--out", str(tmp_path / "out"), "--llm-url", url, "--llm-model", "m")
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: --llm-url") and f"127.0.0.1:{port}" in line and "refused" in line
    assert not (tmp_path / "out" / "transcripts").exists()


def test_missing_audio_dir_is_a_usage_error(tmp_path):
    result = kubescribe("run", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--llm-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2 and "audio input not found" in result.stderr


def test_unreachable_s3_is_a_clear_setup_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"KUBESCRIBE_S3_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    result = kubescribe("run", "s3://audio/in", "--out", str(tmp_path / "out"), "--llm-url", "http://127.0.0.1:9/v1",
                        env=env, timeout=120)
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_settings_are_a_clear_usage_error(tmp_path):
    (tmp_path / "in").mkdir()
    result = kubescribe("run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--accelerator", "gpu please",
                        "--llm-url", "http://127.0.0.1:9/v1", timeout=120)
    assert result.returncode == 2 and "accelerator" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.llm
def test_run_starts_and_stops_its_own_llm_server_without_llm_url(tmp_path, llama_server):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SPEECH / "weather.wav", src / "weather.wav")
    result = kubescribe("run", str(src), "--out", str(tmp_path / "out"), "--max-output-tokens", "48", "--show")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local llama-server" in result.stderr
    (f,) = json.loads((tmp_path / "out" / "report.json").read_text())["files"]
    summary = (tmp_path / "out" / f["outputs"]["summary"]).read_text().strip()
    assert summary and " ".join(summary.split()) in " ".join(result.stdout.split())  # --show printed it
    assert "weather.wav — transcript" in result.stdout
    log = (tmp_path / "out" / ".kubescribe" / "llama-server.log").read_text()
    assert "127.0.0.1" in log  # bound to loopback only


@pytest.mark.llm
def test_report_json_accumulates_runs_and_only_new_with_nothing_new_keeps_it(tmp_path, llama_server):
    """report.json at the output root is the current state of every input ever run into it, each entry naming its
    run; a scheduled --only-new run that finds nothing new once rewrote it with zero files."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(SPEECH / "weather.wav", src / "weather.wav")
    llm = ["--llm-url", llama_server.url, "--llm-model", llama_server.model, "--context-tokens", "2048",
           "--max-output-tokens", "48"]

    def run() -> dict:
        result = kubescribe("run", str(src), "--out", str(out), "--only-new", *llm)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((out / "report.json").read_text())

    first = run()
    (entry,) = first["files"]
    assert entry["input"] == "weather.wav" and entry["run_id"] == first["run_id"]
    nothing_new = run()
    assert [(f["input"], f["status"], f["run_id"]) for f in nothing_new["files"]] == [
        ("weather.wav", "succeeded", first["run_id"])]
    shutil.copy(SAMPLES / "jfk.flac", src / "jfk.flac")
    third = run()
    assert {f["input"]: f["run_id"] for f in third["files"]} == {"weather.wav": first["run_id"],
                                                                  "jfk.flac": third["run_id"]}
    assert third["totals"]["files"] == 2 and third["totals"]["succeeded"] == 2 and third["this_run"]["files"] == 1
    run_report = out / ".kubescribe" / "runs" / third["run_id"] / "report.json"
    assert [f["input"] for f in json.loads(run_report.read_text())["files"]] == ["jfk.flac"]  # the run alone
    check_contract(third, lambda rel: (out / rel).is_file())
