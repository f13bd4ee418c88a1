"""Transcription with the real tiny.en weights on checked-in speech: accuracy, outputs, bad input, work avoidance."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from steps import layout
from steps.audio import AudioError, load_audio, speech_regions
from steps.markers import transcript_key
from steps.plan import make_plan
from steps.records import ShardResult
from steps.runstate import write_plan
from steps.store import LocalStore
from steps.transcribe import TranscribeOptions, Transcriber, run_shard
from tests.support import FIXTURES, JFK_REFERENCE, SAMPLES

pytestmark = pytest.mark.integration

SPEECH = FIXTURES / "speech"
REFERENCES = {**json.loads((SPEECH / "references.json").read_text())}
normalize = EnglishTextNormalizer()


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalize(reference), normalize(hypothesis))


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber("tiny.en", TranscribeOptions(), device="cpu", threads=1)


@pytest.fixture(scope="module")
def speech_results(transcriber) -> dict[str, dict]:
    clips = {name: SPEECH / name for name in REFERENCES} | {"jfk.flac": SAMPLES / "jfk.flac"}
    return {name: transcriber.transcribe_audio(load_audio(str(path))) for name, path in clips.items()}


def test_word_error_rate_on_synthetic_and_real_speech(speech_results):
    refs = REFERENCES | {"jfk.flac": JFK_REFERENCE}
    rates = {name: wer(refs[name], r["text"]) for name, r in speech_results.items()}
    # tiny.en on espeak voices measured 0.00-0.24 here; the bound catches a broken model, decoder or resampler.
    assert all(rate <= 0.35 for rate in rates.values()), rates
    assert sum(rates.values()) / len(rates) <= 0.2, rates
    assert rates["jfk.flac"] <= 0.1, speech_results["jfk.flac"]["text"]


def test_every_container_and_stereo_decodes(speech_results):
    assert {"weather.wav", "budget.flac", "launch.mp3", "stereo.ogg"} <= set(speech_results)
    assert all(r["text"].strip() for r in speech_results.values())


def test_segments_carry_word_timestamps_in_order(speech_results):
    for r in speech_results.values():
        assert r["segments"]
        for seg in r["segments"]:
            assert 0 <= seg["start"] < seg["end"]
            words = seg["words"]
            assert words and all(w["start"] <= w["end"] for w in words)
            assert seg["start"] <= words[0]["start"] + 0.5


def test_silence_gives_an_empty_transcript_not_invented_words(transcriber):
    audio = load_audio(str(FIXTURES / "bad" / "silence.flac"))
    assert speech_regions(audio) == []
    result = transcriber.transcribe_audio(audio)
    assert result["text"] == "" and result["segments"] == []


def test_vad_regions_cover_the_speech(transcriber):
    audio = load_audio(str(SPEECH / "weather.wav"))
    regions = speech_regions(audio)
    assert regions and regions[0][0] < 0.5 and regions[-1][1] > len(audio) / 16000 - 1.0


def test_the_silence_gate_thresholds_are_options_and_part_of_the_cache_key(transcriber, monkeypatch):
    gate = {"threshold_dbfs": -40.0, "frame_s": 0.02, "min_gap_s": 0.5, "pad_s": 0.1, "min_speech_s": 0.3}
    options = TranscribeOptions(**{f"vad_{k}": v for k, v in gate.items()})
    key = transcript_key("0" * 64, "model", TranscribeOptions().cache_fields())
    for name, value in gate.items():
        changed = replace(TranscribeOptions(), **{f"vad_{name}": value})
        assert transcript_key("0" * 64, "model", changed.cache_fields()) != key, name
    seen = []
    monkeypatch.setattr("steps.transcribe.speech_regions", lambda audio, **kw: seen.append(kw) or [])
    monkeypatch.setattr(transcriber, "options", options)
    assert transcriber.transcribe_audio(np.zeros(16000, dtype=np.float32))["segments"] == []
    assert seen == [gate]  # the step decodes with the options' gate, not the function's defaults


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty.wav", r"empty file \(0 bytes\)"), ("notes.mp3", "not decodable"), ("corrupt.wav", "not decodable")],
)
def test_bad_audio_raises_a_clear_error(name, reason):
    with pytest.raises(AudioError, match=reason):
        load_audio(str(FIXTURES / "bad" / name))


def _plan_folder(tmp_path, names: list[tuple[str, object]]):
    src = tmp_path / "in"
    src.mkdir()
    for name, path in names:
        shutil.copy(path, src / name)
    out = LocalStore(tmp_path / "out")
    plan = make_plan(LocalStore(src), out.url, "run-1", shard_seconds=10_000)
    write_plan(plan, out)
    return src, out


def test_shard_with_bad_files_fails_them_alone_and_writes_all_formats(tmp_path):
    _, out = _plan_folder(
        tmp_path,
        [("weather.wav", SPEECH / "weather.wav"), ("corrupt.wav", FIXTURES / "bad" / "corrupt.wav"),
         ("empty.wav", FIXTURES / "bad" / "empty.wav"), ("silence.flac", FIXTURES / "bad" / "silence.flac")],
    )
    result = run_shard(out.url, "run-1", 0, "tiny.en", device="cpu", threads=1)
    by_input = {r.input: r for r in result.files}
    assert by_input["weather.wav"].status == "succeeded"
    assert by_input["silence.flac"].status == "succeeded"
    assert by_input["corrupt.wav"].status == "failed" and by_input["corrupt.wav"].error.startswith("corrupt.wav: ")
    assert by_input["empty.wav"].error == "empty.wav: empty file (0 bytes)"
    assert out.read_text("transcripts/silence.txt").strip() == ""
    srt = out.read_text("transcripts/weather.srt")
    vtt = out.read_text("transcripts/weather.vtt")
    assert srt.startswith("1\n00:00:0") and "-->" in srt
    assert vtt.startswith("WEBVTT")
    doc = json.loads(out.read_text("transcripts/weather.json"))
    assert doc["language"] == "en" and doc["segments"][0]["words"]
    assert wer(REFERENCES["weather.wav"], out.read_text("transcripts/weather.txt")) <= 0.35
    stored = ShardResult.from_json(out.read_text(layout.shard_result("run-1", 0)))
    assert [r.input for r in stored.files] == [r.input for r in result.files]


def test_rerun_reuses_finished_files_and_restores_missing_outputs(tmp_path):
    _, out = _plan_folder(tmp_path, [("a.wav", SPEECH / "weather.wav"), ("b.flac", SPEECH / "budget.flac")])
    first = run_shard(out.url, "run-1", 0, "tiny.en", device="cpu", threads=1)
    assert [r.cached for r in first.files] == [False, False]
    mtime = out.path("transcripts/a.txt").stat().st_mtime_ns
    vtt = out.read_text("transcripts/b.vtt")
    out.path("transcripts/b.vtt").unlink()  # an incomplete result is restored from the marker, not re-decoded
    second = run_shard(out.url, "run-1", 0, "tiny.en", device="cpu", threads=1)
    assert {r.input: r.cached for r in second.files} == {"a.wav": True, "b.flac": True}
    assert out.path("transcripts/a.txt").stat().st_mtime_ns == mtime  # untouched: it still holds our text
    assert out.read_text("transcripts/b.vtt") == vtt
    # Other options are other results: nothing is reused.
    third = run_shard(out.url, "run-1", 0, "tiny.en", TranscribeOptions(beam_size=1, best_of=1), device="cpu", threads=1)
    assert not any(r.cached for r in third.files)


def test_ffmpeg_on_path_is_never_used(tmp_path, monkeypatch):
    """Decoding and probing use the project's ffmpeg (imageio-ffmpeg), whatever PATH holds."""
    import imageio_ffmpeg

    from steps import audio

    called = tmp_path / "path-ffmpeg-was-called"
    shim = tmp_path / "bin" / "ffmpeg"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:/usr/bin:/bin")
    audio.ffmpeg_exe.cache_clear()
    try:
        assert audio.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
        samples = load_audio(str(SAMPLES / "jfk.flac"))
        assert abs(samples.size / 16000 - 11.0) < 0.1
        assert audio.probe_duration(str(SAMPLES / "jfk.flac")) == pytest.approx(11.0, abs=0.1)
    finally:
        audio.ffmpeg_exe.cache_clear()
    assert not called.exists()


def test_audio_over_the_length_limit_is_refused():
    with pytest.raises(AudioError, match="longer than the limit of 5 s"):
        load_audio(str(SAMPLES / "jfk.flac"), max_seconds=5)
