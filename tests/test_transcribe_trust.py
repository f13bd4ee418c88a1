"""Transcription that always ends, whose results provably belong to their inputs (real tiny.en, real files).

Each test here reproduces a failure seen on an earlier main: an endless decode loop on recordings cut
mid-word, another input's transcript reported as this one's, stale outputs passed off as cached, duplicate
content decoded on every run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from steps import layout
from steps.audio import HOP_LENGTH, SAMPLE_RATE, frame_dbfs, load_audio, speech_regions
from steps.plan import make_plan
from steps.report import build_report
from steps.runstate import read_plan, write_plan
from steps.store import LocalStore
from steps.transcribe import TranscribeOptions, Transcriber, run_shard
from steps.whisper_outputs import DecodeStalled
from steps.windows import merge_results, windows
from tests.audio_support import write_wav
from tests.support import FIXTURES

pytestmark = pytest.mark.integration

SPEECH = FIXTURES / "speech"
REFERENCES = json.loads((SPEECH / "references.json").read_text())
normalize = EnglishTextNormalizer()


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalize(reference), normalize(hypothesis))


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber("tiny.en", TranscribeOptions(beam_size=1, best_of=1), device="cpu", threads=1)


def _loud_cut(audio: np.ndarray, remainder: int) -> int:
    """A sample count inside loud speech (so speech runs to the very end) with ``count % 160 == remainder``."""
    levels = frame_dbfs(audio, HOP_LENGTH)
    frame = int(np.argmax(levels[len(levels) // 3 : 2 * len(levels) // 3])) + len(levels) // 3
    return frame * HOP_LENGTH + remainder


# --- 2. transcription never hangs ------------------------------------------------------------------------------


@pytest.mark.parametrize("remainder", [0, 1, 79, 80, 81, 120, 159])
def test_speech_regions_never_end_past_the_last_whole_frame(remainder):
    audio = load_audio(str(SPEECH / "weather.wav"))
    cut = audio[: _loud_cut(audio, remainder)]
    regions = speech_regions(cut)
    assert regions and regions[-1][1] > cut.size / SAMPLE_RATE - 0.05  # speech runs to the end
    content_frames = cut.size // HOP_LENGTH
    for start, end in regions:
        # whisper rounds clip ends to frames; one frame past the content is an empty chunk that never advances
        assert round(end * 100) <= content_frames and start < end


def test_files_cut_mid_word_at_many_offsets_finish(tmp_path):
    """Through the real step process, with a deadline: on the old main this loop never ended."""
    audio = load_audio(str(SPEECH / "weather.wav"))
    src = tmp_path / "in"
    src.mkdir()
    for r in (0, 40, 79, 80, 81, 100, 120, 159):
        write_wav(src / f"cut-{r:03d}.wav", audio[: _loud_cut(audio, r)])
    for name in ("launch.mp3", "budget.flac"):  # byte-truncated compressed files end mid-frame
        data = (SPEECH / name).read_bytes()
        (src / f"truncated-{name}").write_bytes(data[: len(data) // 2 + 7])
    out = LocalStore(tmp_path / "out")
    write_plan(make_plan(LocalStore(src), out.url, "run-1", shard_seconds=10_000), out)
    proc = subprocess.run(
        [sys.executable, "-m", "steps.cli", "transcribe", "--output", out.url, "--run-id", "run-1", "--shard", "0",
         "--device", "cpu", "--threads", "1", "--beam-size", "1"],
        capture_output=True, text=True, timeout=420,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text(layout.shard_result("run-1", 0)))
    assert result["complete"] and len(result["files"]) == 10
    assert all(f["status"] == "succeeded" for f in result["files"]), [f["error"] for f in result["files"]]
    assert all(out.read_text(f"transcripts/{f['stem']}.txt").strip() for f in result["files"])


def test_a_decode_that_stops_advancing_fails_the_file_instead_of_hanging(transcriber, monkeypatch):
    """The guard, with the old rounding bug put back: a clip ending one frame past the content."""
    audio = load_audio(str(SPEECH / "weather.wav"))
    cut = audio[: _loud_cut(audio, 120)]
    monkeypatch.setattr("steps.transcribe.speech_regions", lambda a, **gate: [(0.0, a.size / SAMPLE_RATE)])
    with pytest.raises(DecodeStalled, match="empty chunk"):
        transcriber.transcribe_audio(cut)


def test_the_batched_engine_fails_a_stalled_file_alone(tmp_path, monkeypatch):
    """The batched engine's guard (``steps.chunk_transcribe.ChunkTranscript.window``), with the rounding bug put
    back for one file only: its last clip ends one frame past the content. That file fails with the reason; the
    other is fine."""
    import steps.batched

    audio = load_audio(str(SPEECH / "weather.wav"))
    stalled = audio[: _loud_cut(audio, 120)]
    src = tmp_path / "in"
    src.mkdir()
    write_wav(src / "stalls.wav", stalled)
    shutil.copy(SPEECH / "budget.flac", src / "fine.flac")
    plan_chunks = steps.batched.plan_chunks

    def one_frame_too_far(a, spans, *args, **kwargs):
        chunks = plan_chunks(a, spans, *args, **kwargs)
        if a.size == stalled.size:
            last = chunks[-1]
            last.clips[-1] = (last.clips[-1][0], (last.end - last.start) / SAMPLE_RATE + 0.01)
        return chunks

    monkeypatch.setattr("steps.batched.plan_chunks", one_frame_too_far)
    out = LocalStore(tmp_path / "out")
    write_plan(make_plan(LocalStore(src), out.url, "run-1", shard_seconds=10_000), out)
    result = run_shard(out.url, "run-1", 0, "tiny.en", TranscribeOptions(engine="batched", beam_size=1, best_of=1),
                       device="cpu", threads=1, batch_size=2)
    by_input = {f.input: f for f in result.files}
    assert by_input["stalls.wav"].status == "failed"
    assert by_input["stalls.wav"].error == ("stalls.wav: transcription stopped: whisper was handed an empty chunk "
                                            "(the decode loop would not advance)")
    assert by_input["fine.flac"].status == "succeeded" and out.read_text("transcripts/fine.txt").strip()
    assert result.complete


# --- 7. long files in bounded windows -------------------------------------------------------------------------


def test_windows_cover_the_stream_once_and_cut_in_quiet(tmp_path):
    speech = load_audio(str(SPEECH / "weather.wav"))
    gap = np.zeros(SAMPLE_RATE * 2, np.float32)
    stream = np.concatenate([speech, gap, speech, gap, speech])
    blocks = np.array_split(stream, 37)  # odd block sizes, as a pipe delivers them
    pieces = list(windows(blocks, window_s=12.0))
    assert len(pieces) >= 3
    assert np.array_equal(np.concatenate([p for _, p in pieces]), stream)
    offsets = [o for o, _ in pieces]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    for (offset, piece), (nxt, _) in zip(pieces, pieces[1:]):
        assert piece.size <= 12 * SAMPLE_RATE and nxt == pytest.approx(offset + piece.size / SAMPLE_RATE)
        edge = stream[int(nxt * SAMPLE_RATE) - 240 : int(nxt * SAMPLE_RATE) + 240]
        assert np.sqrt(np.mean(edge**2)) < 1e-3  # cut inside the silent gap, not mid-word


def test_a_file_longer_than_a_window_is_stitched_on_the_file_clock(transcriber):
    speech = load_audio(str(SPEECH / "weather.wav"))
    gap = np.zeros(SAMPLE_RATE * 3, np.float32)
    long = np.concatenate([speech, gap, speech, gap, speech])
    whole = transcriber.transcribe_blocks([long])  # one window (default 600 s)
    windowed = Transcriber("tiny.en", TranscribeOptions(beam_size=1, best_of=1, window_s=14.0), device="cpu", threads=1)
    windowed._model = transcriber.model
    stitched = windowed.transcribe_blocks(np.array_split(long, 9))
    reference = " ".join([REFERENCES["weather.wav"]] * 3)
    # whisper scales each input's log-mel by its own peak, so windows may differ from the whole on odd words
    assert wer(reference, stitched["text"]) <= 0.35 and wer(whole["text"], stitched["text"]) <= 0.2
    starts = [s["start"] for s in stitched["segments"]]
    assert starts == sorted(starts) and stitched["segments"][-1]["end"] > 2 * (speech.size + gap.size) / SAMPLE_RATE
    assert [s["id"] for s in stitched["segments"]] == list(range(len(stitched["segments"])))
    words = [w["start"] for s in stitched["segments"] for w in s["words"]]
    assert words == sorted(words)


def test_merge_shifts_segments_and_words():
    parts = [(0.0, {"text": " a", "segments": [{"id": 0, "start": 0.5, "end": 1.0, "seek": 0, "words": [{"start": 0.5, "end": 1.0}]}]}),
             (10.0, {"text": " b", "segments": [{"id": 0, "start": 0.25, "end": 2.0, "seek": 0, "words": [{"start": 0.25, "end": 2.0}]}]})]
    merged = merge_results(parts, "en")
    assert merged["text"] == " a b" and merged["language"] == "en"
    assert [(s["id"], s["start"], s["end"], s["seek"]) for s in merged["segments"]] == [(0, 0.5, 1.0, 0), (1, 10.25, 12.0, 1000)]
    assert merged["segments"][1]["words"] == [{"start": 10.25, "end": 12.0}]


# --- 3. a result always belongs to its file --------------------------------------------------------------------


def _plan(src: Path, out: LocalStore, run_id: str, **kw):
    plan = make_plan(LocalStore(src), out.url, run_id, shard_seconds=kw.pop("shard_seconds", 10_000), **kw)
    write_plan(plan, out)
    return plan


def _shards(out: LocalStore, run_id: str) -> dict[str, object]:
    plan = read_plan(out, run_id)
    results = {}
    for shard in range(len(plan.shards)):
        for r in run_shard(out.url, run_id, shard, "tiny.en", TranscribeOptions(beam_size=1, best_of=1),
                           device="cpu", threads=1).files:
            results[r.input] = r
    return results


def test_colliding_names_each_get_their_own_transcript(tmp_path):
    src = tmp_path / "in"
    (src / "a.txt").mkdir(parents=True)
    sources = {"a.mp3": SPEECH / "launch.mp3", "a.wav": SPEECH / "weather.wav", "a.mp3.wav": SPEECH / "budget.flac",
               "A.WAV": SPEECH / "stereo.ogg", "a.txt/x.wav": SPEECH / "weather.wav"}
    for name, path in sources.items():
        shutil.copy(path, src / name)
    out = LocalStore(tmp_path / "out")
    plan = _plan(src, out, "run-1")
    names = {f.input: f.stem for f in plan.files}
    outputs = [layout.transcript(n, fmt) for n in names.values() for fmt in layout.TRANSCRIPT_FORMATS]
    assert len({o.casefold() for o in outputs}) == len(outputs), names  # unique, even on a case-insensitive disk
    folders = {str(Path(o).parent).casefold() for o in outputs}
    assert not any(o.casefold() in folders for o in outputs)
    results = _shards(out, "run-1")
    assert all(r.status == "succeeded" for r in results.values())
    for name, path in sources.items():
        text = out.read_text(layout.transcript(names[name], "txt"))
        assert wer(REFERENCES[path.name], text) <= 0.35, (name, names[name], text)


def test_a_stale_output_is_never_passed_off_as_cached(tmp_path):
    """Run folder A, then folder B (another k1.wav) into the same output, then A again."""
    out = LocalStore(tmp_path / "out")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(SPEECH / "weather.wav", a / "k1.wav")
    write_wav(b / "k1.wav", load_audio(str(SPEECH / "budget.flac")))
    for run, folder in (("r1", a), ("r2", b)):
        _plan(folder, out, run)
        _shards(out, run)
    assert wer(REFERENCES["budget.flac"], out.read_text("transcripts/k1.txt")) <= 0.35
    _plan(a, out, "r3")
    again = _shards(out, "r3")["k1.wav"]
    assert again.cached  # the decode is reused...
    text = out.read_text("transcripts/k1.txt")
    assert wer(REFERENCES["weather.wav"], text) <= 0.35, text  # ...but the outputs are A's words again
    srt = out.read_text("transcripts/k1.srt")
    assert normalize(srt.split("\n")[2]).split()[0] in normalize(text)


def test_outputs_overwritten_after_the_run_are_reported_failed(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SPEECH / "weather.wav", src / "w.wav")
    shutil.copy(SPEECH / "budget.flac", src / "b.flac")
    out = LocalStore(tmp_path / "out")
    plan = _plan(src, out, "r1")
    _shards(out, "r1")
    out.write_text("transcripts/w.srt", "1\n00:00:00,000 --> 00:00:01,000\nsomeone else's words\n")
    files = {f["input"]: f for f in build_report(out, plan).to_dict()["files"]}
    assert "overwritten by another run or input" in files["w.wav"]["error"]
    assert "overwritten" not in (files["b.flac"]["error"] or "")


def test_duplicate_content_is_decoded_once_per_content(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("one.wav", "two.wav", "nested-copy.wav"):
        shutil.copy(SPEECH / "weather.wav", src / name)
    shutil.copy(SPEECH / "budget.flac", src / "other.flac")
    out = LocalStore(tmp_path / "out")
    plan = _plan(src, out, "r1", shard_seconds=1, max_shards=8)  # as many shards as files would allow
    shard_of = {f.input: s for s, members in enumerate(plan.shards) for f in (plan.files[i] for i in members)}
    assert shard_of["one.wav"] == shard_of["two.wav"] == shard_of["nested-copy.wav"] != shard_of["other.flac"]
    first = _shards(out, "r1")
    assert sorted(r.cached for name, r in first.items() if name != "other.flac") == [False, True, True]
    texts = {out.read_text(f"transcripts/{n}.txt") for n in ("one", "two", "nested-copy")}
    assert len(texts) == 1
    _plan(src, out, "r2")
    assert all(r.cached for r in _shards(out, "r2").values())  # and never again on later runs


def test_an_empty_transcript_of_much_sound_is_not_silence() -> None:
    """``speech_warnings``: an empty transcript is "no speech" only when the segmenter kept (almost) nothing."""
    from steps.decode_options import UNHEARD_MIN_S, speech_warnings

    empty = {"text": "", "segments": [], "language": "en"}
    assert speech_warnings(empty, True, "tiny.en", None) == []  # not segmented: nothing to say
    assert speech_warnings(empty, True, "tiny.en", 0.0) == []  # silence
    assert speech_warnings(empty, True, "tiny.en", UNHEARD_MIN_S - 0.1) == []  # a cough
    [english] = speech_warnings(empty, True, "tiny.en", 42.4)
    assert english.startswith("the model heard no words in 42 s of sound: tiny.en is English-only")
    [other] = speech_warnings(empty, False, "small", 42.4)
    assert "music or noise" in other and "English-only" not in other


def test_a_loop_spread_over_segments_is_not_understood_speech() -> None:
    """Each segment of a loop can compress normally and decode with a fair log-probability; the same text as most
    of the segments is still the model repeating itself. Real speech with a repeated "Thank you." is not."""
    from steps.decode_options import speech_warnings

    def seg(i: int, text: str) -> dict:
        return {"start": 3.0 * i, "end": 3.0 * i + 3.0, "text": text, "avg_logprob": -0.6, "compression_ratio": 1.1}

    loop = {"segments": [seg(i, " I am Secretary-signal L'Yaughan.") for i in range(8)] + [seg(8, " Good morning.")]}
    [warning] = speech_warnings(loop, True, "tiny.en")
    assert warning.startswith("the speech may not be English: tiny.en") and "89%" in warning
    lines = [" Thank you.", " The budget is approved.", " Thank you.", " Maria sends the numbers.", " Thank you.",
             " We meet again on Friday.", " The launch moves to May."]
    assert speech_warnings({"segments": [seg(i, t) for i, t in enumerate(lines)]}, True, "tiny.en") == []
