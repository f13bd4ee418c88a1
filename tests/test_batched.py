"""The batched engine (steps/batched.py) and the ct2 engine (steps/ct2_engine.py) against the sequential one, with
the real tiny.en weights on the CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from steps import layout
from steps.audio import SAMPLE_RATE, load_audio
from steps.markers import transcript_key
from steps.plan import make_plan
from steps.records import ShardResult
from steps.runstate import write_plan
from steps.store import LocalStore
from steps.transcribe import TranscribeOptions, run_shard
from steps.vad import CHUNK_S, plan_chunks, regions
from tests.audio_support import write_wav
from tests.support import FIXTURES, SAMPLES

pytestmark = pytest.mark.integration

SPEECH = FIXTURES / "speech"
REFERENCES = json.loads((SPEECH / "references.json").read_text())
normalize = EnglishTextNormalizer()
LONG_ORDER = ["weather.wav", "budget.flac", "launch.mp3", "stereo.ogg"] * 2


def long_recording(path: Path) -> Path:
    """The four fixtures twice with 1.5 s pauses: ~80 s, three chunks, more than one batch of two."""
    pause = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)
    parts = []
    for name in LONG_ORDER:
        parts += [load_audio(str(SPEECH / name)), pause]
    return write_wav(path, np.concatenate(parts))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict:
    """One shard (fixtures, jfk, silence, a long file) transcribed by each engine, batch size 2 where it batches."""
    tmp = tmp_path_factory.mktemp("batched")
    src = tmp / "in"
    src.mkdir()
    for name in REFERENCES:
        shutil.copy(SPEECH / name, src / name)
    shutil.copy(SAMPLES / "jfk.flac", src / "jfk.flac")
    shutil.copy(FIXTURES / "bad" / "silence.flac", src / "silence.flac")
    long_recording(src / "long.wav")
    runs = {}
    for engine in ("sequential", "batched", "ct2"):
        out = LocalStore(tmp / engine)
        write_plan(make_plan(LocalStore(src), out.url, "run-1", shard_seconds=10_000), out)
        seen = []

        def progress(r, out=out, seen=seen):  # what is on disk at the moment a file is reported done
            stored = ShardResult.from_json(out.read_text(layout.shard_result("run-1", 0)))
            seen.append((r.input, out.path(f"transcripts/{r.stem}.txt").exists(), stored.complete))

        result = run_shard(out.url, "run-1", 0, "tiny.en", TranscribeOptions(engine=engine), device="cpu", threads=1,
                           progress=progress, batch_size=2)
        runs[engine] = {"out": out, "result": result, "seen": seen}
    return runs


def _text(run, stem: str) -> str:
    return run["out"].read_text(f"transcripts/{stem}.txt")


def test_batched_transcripts_match_sequential(shards):
    seq, bat = shards["sequential"], shards["batched"]
    stems = [r.stem for r in seq["result"].files if r.stem != "silence"]
    ref = " ".join(normalize(_text(seq, s)) for s in stems)
    hyp = " ".join(normalize(_text(bat, s)) for s in stems)
    rate = jiwer.wer(ref, hyp)
    assert rate <= 0.02, (rate, {s: (_text(seq, s), _text(bat, s)) for s in stems if _text(seq, s) != _text(bat, s)})
    assert all(r.status == "succeeded" for r in bat["result"].files)


def test_silence_stays_empty_in_the_batched_engine(shards):
    bat = shards["batched"]
    assert _text(bat, "silence").strip() == ""
    assert json.loads(bat["out"].read_text("transcripts/silence.json"))["segments"] == []


def test_a_file_shorter_than_a_chunk_and_one_longer_than_a_batch(shards):
    bat = shards["batched"]
    jfk = json.loads(bat["out"].read_text("transcripts/jfk.json"))
    assert jfk["segments"] and jfk["segments"][-1]["end"] <= 11.1
    doc = json.loads(bat["out"].read_text("transcripts/long.json"))
    segs = doc["segments"]
    starts = [s["start"] for s in segs]
    assert starts == sorted(starts) and [s["id"] for s in segs] == list(range(len(segs)))
    duration = next(r.duration_s for r in bat["result"].files if r.input == "long.wav")
    assert duration > 2 * CHUNK_S  # at least three chunks, two batches of two
    assert segs[-1]["end"] > duration - 12  # timestamps are on the file's clock, not a chunk's
    for s in segs:
        assert all(s["start"] - 0.5 <= w["start"] <= w["end"] <= s["end"] + 0.5 for w in s["words"])
    reference = " ".join(REFERENCES[n] for n in LONG_ORDER)
    assert jiwer.wer(normalize(reference), normalize(doc["text"])) <= 0.25
    # The same file through the sequential engine: same words at the same places (within a second).
    seq = json.loads(shards["sequential"]["out"].read_text("transcripts/long.json"))
    assert len(seq["segments"]) == len(segs)
    assert all(abs(a["start"] - b["start"]) < 1.0 for a, b in zip(seq["segments"], segs))


def test_each_file_is_written_as_soon_as_it_is_done(shards):
    seen = shards["batched"]["seen"]
    assert len(seen) == len(shards["batched"]["result"].files)
    assert all(on_disk for _, on_disk, _ in seen)  # outputs exist when the file is reported
    assert not any(complete for _, _, complete in seen)  # ... and that is before the shard ends
    stored = ShardResult.from_json(shards["batched"]["out"].read_text(layout.shard_result("run-1", 0)))
    assert stored.complete and [r.input for r in stored.files] == [r.input for r in shards["sequential"]["result"].files]


def test_rerun_of_the_batched_engine_is_cached(shards):
    out = shards["batched"]["out"]
    again = run_shard(out.url, "run-1", 0, "tiny.en", TranscribeOptions(engine="batched"), device="cpu", threads=1)
    assert all(r.cached for r in again.files)


# --- the ct2 engine: the same contract as the sequential engine, decoded by faster-whisper (int8 on the CPU) ----


def test_ct2_transcripts_match_sequential(shards):
    seq, ct2 = shards["sequential"], shards["ct2"]
    stems = [r.stem for r in seq["result"].files if r.stem != "silence"]
    rate = jiwer.wer(" ".join(normalize(_text(seq, s)) for s in stems), " ".join(normalize(_text(ct2, s)) for s in stems))
    print(f"WER between the ct2 and sequential transcripts: {rate:.4f}")
    # int8 weights against openai-whisper's fp32: a word here and there differs (measured 0.039 on these files)
    assert rate <= 0.05, (rate, {s: (_text(seq, s), _text(ct2, s)) for s in stems if _text(seq, s) != _text(ct2, s)})
    assert all(r.status == "succeeded" for r in ct2["result"].files)
    refs = " ".join(normalize(REFERENCES[f"{s}.{ext}"]) for s, ext in (("weather", "wav"), ("budget", "flac")))
    assert jiwer.wer(refs, normalize(_text(ct2, "weather") + " " + _text(ct2, "budget"))) <= 0.25


def test_ct2_engine_keeps_silence_empty_and_the_file_clock(shards):
    ct2 = shards["ct2"]
    assert _text(ct2, "silence").strip() == ""
    assert json.loads(ct2["out"].read_text("transcripts/silence.json"))["segments"] == []
    doc = json.loads(ct2["out"].read_text("transcripts/long.json"))
    segs = doc["segments"]
    assert [s["start"] for s in segs] == sorted(s["start"] for s in segs)
    assert [s["id"] for s in segs] == list(range(len(segs)))
    duration = next(r.duration_s for r in ct2["result"].files if r.input == "long.wav")
    assert segs[-1]["end"] > duration - 12
    for s in segs:  # whisper's fields, so its writers, the markers and the language checks work unchanged
        assert {"avg_logprob", "compression_ratio", "no_speech_prob", "tokens", "temperature"} <= set(s)
        assert s["words"] and all(s["start"] - 0.5 <= w["start"] <= w["end"] <= s["end"] + 0.5 for w in s["words"])
    assert "-->" in ct2["out"].read_text("transcripts/long.srt")
    again = run_shard(ct2["out"].url, "run-1", 0, "tiny.en", TranscribeOptions(engine="ct2"), device="cpu", threads=1)
    assert all(r.cached for r in again.files)


def test_ct2_engine_names_a_model_it_cannot_load(tmp_path):
    from steps.ct2_engine import Ct2ModelError
    from steps.transcribe import Transcriber

    with pytest.raises(Ct2ModelError, match="base.en"):
        Transcriber("base.en", TranscribeOptions(engine="ct2"), device="cpu")
    empty = tmp_path / "model"
    empty.mkdir()
    with pytest.raises(Ct2ModelError, match="CTranslate2 Whisper model folder"):
        Transcriber(str(empty), TranscribeOptions(engine="ct2"), device="cpu")


def test_auto_picks_ct2_on_the_cpu_only_for_a_model_it_can_load(tmp_path):
    from steps.transcribe import auto_engine

    assert auto_engine("cpu", "tiny.en") == "ct2"
    assert auto_engine("cuda", "tiny.en") == "batched"  # openai-whisper stays the GPU default
    checkpoint = tmp_path / "model.pt"  # an openai-whisper checkpoint has no CTranslate2 form: whisper's engine
    checkpoint.write_bytes(b"not read")
    assert auto_engine("cpu", str(checkpoint)) == "batched" and auto_engine("cpu", "base.en") == "batched"


def test_the_engine_is_part_of_the_cache_key_and_old_keys_are_kept():
    seq, bat = TranscribeOptions(engine="sequential"), TranscribeOptions()
    assert "engine" not in seq.cache_fields() and "vad_method" not in seq.cache_fields()
    assert transcript_key("0" * 64, "m", seq.cache_fields()) != transcript_key("0" * 64, "m", bat.cache_fields())
    ct2 = TranscribeOptions(engine="ct2")
    assert transcript_key("0" * 64, "m", ct2.cache_fields()) not in {
        transcript_key("0" * 64, "m", o.cache_fields()) for o in (seq, bat)}
    silero = TranscribeOptions(engine="sequential", vad_method="silero")
    assert transcript_key("0" * 64, "m", seq.cache_fields()) != transcript_key("0" * 64, "m", silero.cache_fields())


def test_chunks_are_at_most_30_s_and_cover_every_span():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(100 * SAMPLE_RATE) * 0.1).astype(np.float32)
    audio[40 * SAMPLE_RATE: 41 * SAMPLE_RATE] = 0  # one natural pause inside an otherwise continuous 100 s
    spans = [(0.0, 70.0), (72.0, 80.0), (85.0, 99.5)]
    chunks = plan_chunks(audio, spans)
    assert all((c.end - c.start) / SAMPLE_RATE <= CHUNK_S for c in chunks)
    covered = sorted((c.offset_s + s, c.offset_s + e) for c in chunks for s, e in c.clips)
    assert covered[0][0] == 0.0 and abs(covered[-1][1] - 99.5) < 0.02
    assert sum(e - s for s, e in covered) == pytest.approx(70 + 8 + 14.5, abs=0.1)
    assert any(abs(c.offset_s - 40.5) < 0.6 for c in chunks)  # the 70 s span is cut in its pause


def test_silero_segmenter_finds_speech_and_not_silence():
    assert regions(load_audio(str(FIXTURES / "bad" / "silence.flac")), "silero", threshold_dbfs=-50, frame_s=0.03,
                   min_gap_s=1.0, pad_s=0.25, min_speech_s=0.2) == []
    audio = load_audio(str(SAMPLES / "jfk.flac"))
    spans = regions(audio, "silero", threshold_dbfs=-50, frame_s=0.03, min_gap_s=1.0, pad_s=0.25, min_speech_s=0.2)
    assert spans and spans[0][0] < 1.0 and spans[-1][1] > 9.0


def test_batched_beam_search_equals_one_at_a_time(tiny_model):
    import torch
    from whisper.audio import log_mel_spectrogram, pad_or_trim
    from whisper.decoding import DecodingOptions, decode

    from steps.batch_decoder import batch_decode

    mels = torch.stack([log_mel_spectrogram(pad_or_trim(load_audio(str(p))))
                        for p in (SAMPLES / "jfk.flac", SPEECH / "weather.wav")])
    options = DecodingOptions(language="en", beam_size=5, fp16=False)
    batched = batch_decode(tiny_model, mels, options)
    single = [decode(tiny_model, m, options) for m in mels]
    assert [r.text for r in batched] == [r.text for r in single]


def test_vectorized_search_gives_whisper_s_own_tokens():
    """The batch decoder (steps.batch_decoder, steps.static_decode: timestamp rules and beam update for all rows
    at once, a preallocated KV cache, beams sharing their audio's cross-attention) chooses exactly the tokens
    whisper's own classes choose, chunk for chunk: beam 5 with and without timestamps, greedy, and with a prompt,
    on real and synthetic speech. (Sampling at a temperature uses whisper's own greedy decoder.)"""
    import torch
    import whisper

    from steps.batch_decoder import batch_decode
    from steps.models import load_model

    model = load_model("tiny.en", device="cpu")
    names = ["weather.wav", "budget.flac", "launch.mp3"]
    audio = [load_audio(str(FIXTURES / "speech" / n)) for n in names] + [load_audio(str(SAMPLES / "jfk.flac"))]
    mels = torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(a), model.dims.n_mels) for a in audio])
    for options in (whisper.DecodingOptions(beam_size=5, language="en", fp16=False),
                    whisper.DecodingOptions(language="en", fp16=False),
                    whisper.DecodingOptions(beam_size=5, language="en", fp16=False, prompt="The weather report."),
                    whisper.DecodingOptions(beam_size=5, language="en", fp16=False, without_timestamps=True)):
        batched = batch_decode(model, mels, options)
        single = [whisper.decode(model, mel, options) for mel in mels]
        assert [r.tokens for r in batched] == [r.tokens for r in single]
        assert any(r.tokens for r in batched) and all(r.text.strip() for r in batched)
        assert [r.avg_logprob for r in batched] == pytest.approx([r.avg_logprob for r in single], abs=1e-4)
    begin = whisper.tokenizer.get_tokenizer(False).timestamp_begin
    assert not any(t >= begin for r in batched for t in r.tokens)  # the second pass really had no timestamps


def test_loop_periods_finds_the_repetition_a_tail_is_caught_in():
    """The loop rule of steps.static_decode: the last LOOP_SPAN sampled tokens repeat with a short period, every
    timestamp counting as one kind of token (a looping segment repeats with new times)."""
    import torch

    from steps.static_decode import LOOP_SPAN, loop_periods

    ts = 50363
    phrase = [100, 200, 300, 400, 500]
    looping = list(range(1000, 1030)) + phrase * 12  # 30 real tokens, then a 5-token phrase over and over
    stamped = sum(([ts + 10 * i, *phrase, ts + 10 * i + 5] for i in range(10)), [])  # between ever new times
    speech = list(range(2000, 2000 + LOOP_SPAN + 30))
    width = max(map(len, (looping, stamped, speech)))
    # left-padded with a two-token prompt's worth of filler, so every row's tail ends at the end
    rows = torch.tensor([[7] * (width + 2 - len(r)) + r for r in (looping, stamped, speech)])
    assert loop_periods(rows, 2, ts).tolist() == [5, 7, 0]
    assert loop_periods(torch.tensor([phrase * 9]), 0, ts).tolist() == [0]  # 45 tokens: too short to tell


def test_a_decode_caught_in_a_loop_stops_early_and_still_falls_back():
    """A row forced into a repetition (a logit bias on a 5-token phrase) is stopped soon after LOOP_SPAN tokens
    instead of running to the 224-token limit, greedy and with beam search, and its result carries the compression
    ratio of the loop run on to that limit: above whisper's 2.4, so transcribe's fallback still rejects it. A
    chunk decoded beside it in the same batch keeps its own tokens."""
    import torch
    import whisper

    from steps.batch_decoder import _batch_task
    from steps.models import load_model
    from steps.static_decode import LOOP_CHECK_EVERY, LOOP_MAX_PERIOD, LOOP_SPAN

    model = load_model("tiny.en", device="cpu")
    tokenizer = whisper.tokenizer.get_tokenizer(False)
    phrase = tokenizer.encode(" and the king said unto")
    audio = [load_audio(str(SAMPLES / "jfk.flac")), load_audio(str(FIXTURES / "speech" / "weather.wav"))]
    mels = torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(a), model.dims.n_mels) for a in audio])

    class Repeat:  # pushes the first chunk's rows through the phrase, again and again
        def __init__(self, task, rows):
            self.task, self.rows = task, rows

        def apply(self, logits, tokens):
            step = tokens.shape[1] - self.task.sample_begin
            logits[: self.rows, phrase[step % len(phrase)]] += 50.0

    for options in (whisper.DecodingOptions(language="en", fp16=False, without_timestamps=True),
                    whisper.DecodingOptions(language="en", fp16=False, beam_size=5, without_timestamps=True)):
        plain = _batch_task()(model, options).run(mels[1:])
        task = _batch_task()(model, options)
        task.logit_filters.append(Repeat(task, task.n_group))
        looped, other = task.run(mels)
        assert LOOP_SPAN < len(looped.tokens) <= LOOP_SPAN + LOOP_MAX_PERIOD + LOOP_CHECK_EVERY
        assert looped.tokens[-len(phrase):] == phrase or set(looped.tokens[-len(phrase):]) <= set(phrase)
        assert looped.compression_ratio > 2.4
        assert other.tokens == plain[0].tokens and other.compression_ratio == plain[0].compression_ratio


def test_batched_word_timings_are_whisper_s_own(tiny_model):
    """steps.batch_alignment times the words of several windows in one decoder pass (rows of different lengths,
    padded) over the encoder output the decode kept, and gets exactly what whisper's find_alignment gets for each
    window alone; a window without text gets none."""
    import whisper
    from whisper.timing import find_alignment

    from steps.batch_alignment import AlignmentRequest, align_batch

    tokenizer = whisper.tokenizer.get_tokenizer(False)
    requests, mels = [], []
    for path in (FIXTURES / "speech" / "weather.wav", FIXTURES / "speech" / "launch.mp3", SAMPLES / "jfk.flac"):
        audio = load_audio(str(path))
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), tiny_model.dims.n_mels)
        text = whisper.decode(tiny_model, mel, whisper.DecodingOptions(language="en", fp16=False,
                                                                         without_timestamps=True)).tokens
        features = tiny_model.embed_audio(mel[None])[0].detach()
        requests.append(AlignmentRequest(tokenizer, text, features, min(3000, audio.size // 160)))
        mels.append(mel)
    requests.append(AlignmentRequest(tokenizer, [], requests[0].audio_features, 3000))
    batched = align_batch(tiny_model, requests)
    assert batched[-1] == []
    assert len({len(r.text_tokens) for r in requests[:-1]}) == 3  # really padded rows
    for req, mel, got in zip(requests, mels, batched):
        own = find_alignment(tiny_model, tokenizer, req.text_tokens, mel, req.num_frames)
        assert len(got) > 5
        assert [w.word for w in got] == [w.word for w in own]
        assert [(w.start, w.end) for w in got] == [(w.start, w.end) for w in own]
        assert [w.probability for w in got] == pytest.approx([w.probability for w in own], abs=1e-4)


def test_the_graph_step_computes_what_the_eager_step_computes(tiny_model):
    """A CUDA graph's one-token step has fixed shapes: it attends over the whole preallocated cache with the keys
    past its position masked (``steps.static_decode``). Run eagerly here (CI has no GPU), that step gives the
    logits and writes the keys of the step that attends over only the keys written so far, position after position,
    and the unwritten keys of a graph's cache are zeros, not uninitialised memory."""
    import torch
    import whisper

    from steps.static_decode import StaticKVInference

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(load_audio(str(SAMPLES / "jfk.flac"))))
    features = tiny_model.embed_audio(mel[None].repeat(2, 1, 1)).detach()
    tokenizer = whisper.tokenizer.get_tokenizer(False)
    prompt = torch.tensor([list(tokenizer.sot_sequence_including_notimestamps)] * 2)
    whole, written = (StaticKVInference(tiny_model, prompt.shape[1], 1, graphs=graphs) for graphs in (True, False))
    with torch.no_grad():
        logits = [inference.logits(prompt, features) for inference in (whole, written)]
        assert torch.equal(logits[0], logits[1])
        assert whole.k[:, :, :, prompt.shape[1]:].abs().sum() == 0  # what the mask hides is finite
        token = logits[0][:, -1].argmax(dim=-1, keepdim=True)
        for position in range(prompt.shape[1], prompt.shape[1] + 6):
            at = torch.tensor([position])
            masked = whole._forward(token, at, tiny_model.dims.n_text_ctx)
            plain = written._forward(token, at, position + 1)
            assert torch.allclose(masked, plain, atol=1e-4)
            assert torch.equal(masked.argmax(dim=-1), plain.argmax(dim=-1))
            token = masked[:, -1].argmax(dim=-1, keepdim=True)
        end = prompt.shape[1] + 6
        assert torch.allclose(whole.k[:, :, :, :end], written.k[:, :, :, :end], atol=1e-5)
