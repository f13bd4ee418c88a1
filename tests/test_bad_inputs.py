"""One bad entry harms nothing else: listing reports everything, a per-file problem fails that file alone.

The corpus test feeds a folder of hostile entries, generated here, through the real `kubescribe run` (local
runner, real tiny.en, real llama-server); the others pin each rule at the step where it lives, on a real
directory and a real S3-protocol server.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from minio import Minio

from steps import layout
from steps.audio import ffmpeg_exe, load_audio
from steps.plan import make_plan
from steps.records import FileResult, ShardResult, transcripts_by_input
from steps.report import build_report
from steps.runstate import write_plan
from steps.store import LocalStore, open_store
from steps.transcribe import TranscribeOptions, run_shard
from tests.audio_support import write_wav
from tests.cli_support import check_contract, kubescribe
from tests.support import FIXTURES, SAMPLES, make_bucket

pytestmark = pytest.mark.e2e

SPEECH = FIXTURES / "speech"
BAD = FIXTURES / "bad"


def _wav_header_only(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)


def _lying_header(path: Path) -> None:
    """A wav whose header claims an hour of audio; the file holds 9 s of it."""
    data = bytearray((SPEECH / "weather.wav").read_bytes())
    size_at = data.index(b"data") + 4
    data[size_at : size_at + 4] = (3600 * 16000 * 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def hostile_folder(root: Path) -> tuple[Path, dict[str, str], set[str], dict[str, str]]:
    """(folder, failing input → expected error fragment, succeeding inputs, ignored entry → reason fragment)."""
    src = root / "hostile"
    src.mkdir()
    fail, ok, ignored = {}, set(), {}
    for name in ("empty.wav", "corrupt.wav", "notes.mp3"):
        shutil.copy(BAD / name, src / name)
    fail |= {"empty.wav": "empty file", "corrupt.wav": "not decodable", "notes.mp3": "not decodable"}
    _wav_header_only(src / "header-only.wav")
    fail["header-only.wav"] = "no audio samples"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "2",
                    "-c:v", "mpeg4", str(src / "video-only.mp4")], check=True, timeout=60)
    fail["video-only.mp4"] = "video-only.mp4: "
    os.symlink(src / "nowhere.wav", src / "dangling.wav")
    fail["dangling.wav"] = "broken symbolic link"
    os.mkfifo(src / "pipe.wav")
    fail["pipe.wav"] = "not a regular file (named pipe)"
    os.symlink(SPEECH / "launch.mp3", src / "link-to-good.mp3")
    shutil.copy(BAD / "silence.flac", src / "silence.flac")
    for name in ("launch.mp3", "budget.flac"):
        data = (SPEECH / name).read_bytes()
        (src / f"truncated-{name}").write_bytes(data[: len(data) // 2 + 7])
    _lying_header(src / "lying-header.wav")
    (src / "folder.wav").mkdir()
    shutil.copy(SPEECH / "weather.wav", src / "folder.wav" / "inside.wav")
    for name, source in (("a.mp3", "launch.mp3"), ("a.wav", "weather.wav"), ("a.mp3.wav", "budget.flac")):
        shutil.copy(SPEECH / source, src / name)
    shutil.copy(SPEECH / "weather.wav", src / "copy of weather [1] (été).wav")
    shutil.copy(SPEECH / "stereo.ogg", src / "[bold]markup.ogg")
    (src / "tag[").mkdir()  # the key "tag[/close].wav" is rich markup that raises when printed unescaped
    shutil.copy(SPEECH / "launch.mp3", src / "tag[" / "close].mp3")
    ok |= {"link-to-good.mp3", "silence.flac", "truncated-launch.mp3", "truncated-budget.flac", "lying-header.wav",
           "folder.wav/inside.wav", "a.mp3", "a.wav", "a.mp3.wav", "copy of weather [1] (été).wav",
           "[bold]markup.ogg", "tag[/close].mp3"}
    shutil.copy(SPEECH / "weather.wav", src / ".hidden.wav")
    ignored[".hidden.wav"] = "hidden"
    (src / ".cache").mkdir()
    shutil.copy(SPEECH / "weather.wav", src / ".cache" / "x.wav")
    ignored[".cache/"] = "hidden directory"
    os.symlink(SPEECH, src / "linked-dir")
    ignored["linked-dir/"] = "not followed"
    (src / "agenda.txt").write_text("not audio")
    ignored["agenda.txt"] = "not an audio file name"
    bad_name = os.fsdecode(b"bad-\xff-name.wav")
    shutil.copy(SPEECH / "weather.wav", src / bad_name)
    fail[bad_name] = "not valid UTF-8"
    return src, fail, ok, ignored


@pytest.mark.llm
def test_hostile_corpus_through_the_cli_fails_each_bad_entry_alone(tmp_path, llama_server):
    src, fail, ok, ignored = hostile_folder(tmp_path)
    assert len(fail) + len(ok) + len(ignored) >= 20
    out = tmp_path / "out"
    args = ["run", str(src), "--out", str(out), "--llm-url", llama_server.url, "--llm-model", llama_server.model,
            "--context-tokens", "2048", "--max-output-tokens", "32", "--beam-size", "1", "--max-shards", "3",
            "--shard-seconds", "30"]
    first = kubescribe(*args, timeout=1200)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr
    report = json.loads((out / "report.json").read_text())
    files = check_contract(report, lambda rel: (out / rel).is_file())
    assert set(files) == set(fail) | ok  # every input exactly once, nothing lost
    for name, fragment in fail.items():
        assert files[name]["status"] == "failed" and files[name]["error"].startswith(f"{name}: "), files[name]
        assert fragment in files[name]["error"], files[name]["error"]
    assert {n for n, f in files.items() if f["status"] == "succeeded"} == ok
    reasons = {e["input"]: e["reason"] for e in report["ignored"]}
    assert set(reasons) == set(ignored)
    assert all(fragment in reasons[name] for name, fragment in ignored.items()), reasons
    txt = {n: (out / files[n]["outputs"]["txt"]).read_text() for n in ("a.mp3", "a.wav", "a.mp3.wav")}
    assert len(set(txt.values())) == 3  # three colliding names, three different transcripts
    assert "morning" in txt["a.wav"].lower() and "budget" in txt["a.mp3.wav"].lower()

    # A re-run on the same output resumes: nothing good is transcribed again, the bad ones fail the same way.
    second = kubescribe(*args, timeout=1200)
    assert second.returncode == 1
    again = {f["input"]: f for f in json.loads((out / "report.json").read_text())["files"]}
    assert {n: f["status"] for n, f in again.items()} == {n: f["status"] for n, f in files.items()}
    assert all(again[n]["transcribe"]["cached"] for n in ok)


def _planned(src: Path, out: LocalStore, run_id: str = "r1"):
    plan = make_plan(open_store(str(src)) if isinstance(src, str) else LocalStore(src), out.url, run_id,
                     shard_seconds=10_000)
    write_plan(plan, out)
    return plan


FAST = TranscribeOptions(beam_size=1, best_of=1)


def test_a_file_that_vanishes_after_planning_fails_alone(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        shutil.copy(SPEECH / "weather.wav", src / name)
    (src / "b.wav").write_bytes((SPEECH / "budget.flac").read_bytes())  # keep the three distinct
    out = LocalStore(tmp_path / "out")
    _planned(src, out)
    (src / "b.wav").unlink()
    result = run_shard(out.url, "r1", 0, "tiny.en", FAST, device="cpu", threads=1)
    by_input = {r.input: r for r in result.files}
    assert by_input["b.wav"].status == "failed" and by_input["b.wav"].error.startswith("b.wav: vanished")
    assert by_input["a.wav"].status == by_input["c.wav"].status == "succeeded"


def test_s3_odd_keys_are_reported_and_a_deleted_object_fails_alone(tmp_path, s3_env):
    make_bucket(s3_env, "odd")
    client = Minio(s3_env.split("://")[1], access_key="test-access", secret_key="test-secret", secure=False)
    for key in ("in//double.wav", "in/.hidden.wav", "in/good.wav", "in/gone.wav"):
        client.fput_object("odd", key, str(SPEECH / "weather.wav"))
    host = s3_env.split("://")[1]
    for key in ("in/./dot.wav", "in/sub/../up.wav"):  # minio-py refuses to write these; other clients do not
        conn = http.client.HTTPConnection(host, timeout=10)
        conn.request("PUT", f"/odd/{key}", body=b"RIFF", headers={"Content-Length": "4"})
        assert conn.getresponse().status == 200
        conn.close()
    assert {o.object_name for o in client.list_objects("odd", prefix="in/", recursive=True)} >= {"in/./dot.wav"}
    out = LocalStore(tmp_path / "out")
    plan = _planned("s3://odd/in", out)
    assert sorted(f.input for f in plan.files) == ["gone.wav", "good.wav"]
    assert [(e["input"], e["reason"][:6]) for e in plan.ignored] == [(".hidden.wav", "hidden")]
    rejected = {e["input"]: e["reason"] for e in plan.rejected}  # audio names that cannot be inputs: failed
    assert set(rejected) == {"/double.wav", "./dot.wav", "sub/../up.wav"}
    assert all("empty, '.' or '..' path segment" in reason for reason in rejected.values())
    client.remove_object("odd", "in/gone.wav")
    result = run_shard(out.url, "r1", 0, "tiny.en", FAST, device="cpu", threads=1)
    by_input = {r.input: r for r in result.files}
    assert by_input["good.wav"].status == "succeeded"
    assert by_input["gone.wav"].status == "failed" and "NoSuchKey" in by_input["gone.wav"].error
    assert by_input["gone.wav"].error.startswith("gone.wav: ")


def test_a_shard_that_died_names_the_file_it_was_on_and_keeps_what_it_finished(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (src / name).write_bytes(b"x" * (10 + ord(name[0])))
    out = LocalStore(tmp_path / "out")
    plan = _planned(src, out)
    done = FileResult(input="a.wav", stem="a", status="succeeded", outputs=layout.transcripts("a"))
    partial = ShardResult("r1", 0, "tiny.en", "id", "cpu", [done], complete=False, current="b.wav")
    out.write_text(layout.shard_result("r1", 0), partial.to_json())
    merged = transcripts_by_input(plan, {0: ShardResult.from_json(out.read_text(layout.shard_result("r1", 0)))})
    assert merged["a.wav"].status == "succeeded"
    assert "stopped while transcribing this file" in merged["b.wav"].error
    assert "stopped before reaching this file (while on b.wav)" in merged["c.wav"].error
    files = {f["input"]: f for f in build_report(out, plan).to_dict()["files"]}
    assert set(files) == {"a.wav", "b.wav", "c.wav"}


def test_long_silence_between_words_does_not_hang_either(tmp_path):
    """A recording of speech, a minute of digital silence, then speech cut at its last sample."""
    speech = load_audio(str(SPEECH / "weather.wav"))
    audio = np.concatenate([speech, np.zeros(16000 * 60, np.float32), speech[: speech.size - 37]])
    path = tmp_path / "in" / "gap.wav"
    path.parent.mkdir()
    write_wav(path, audio)
    out = LocalStore(tmp_path / "out")
    _planned(path.parent, out)
    result = run_shard(out.url, "r1", 0, "tiny.en", FAST, device="cpu", threads=1)
    assert result.files[0].status == "succeeded" and result.files[0].duration_s == pytest.approx(audio.size / 16000)
    segments = json.loads(out.read_text("transcripts/gap.json"))["segments"]
    assert segments[-1]["start"] > 60  # the second utterance sits after the gap, on the file's clock


def test_jfk_sample_still_transcribes_exactly(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "jfk.flac", src / "jfk.flac")
    out = LocalStore(tmp_path / "out")
    _planned(src, out)
    run_shard(out.url, "r1", 0, "tiny.en", device="cpu", threads=1)
    assert "ask not what your country can do for you" in out.read_text("transcripts/jfk.txt").lower()
