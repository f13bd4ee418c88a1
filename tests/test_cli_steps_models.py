"""Issue 11, where the steps keep and find Whisper models: the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``),
never the pods' ``HOME=/tmp`` when the runner names the cache explicitly, and checkpoints whisper itself downloaded
(``~/.cache/whisper/<name>.pt``) reused instead of fetched again. And advice that fits the error: a model that
cannot be loaded onto the GPU is not told to pass another checkpoint format.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration


def cache_dir_in(env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("KUBESCRIBE_MODEL_CACHE", "XDG_CACHE_HOME", "HOME")}
    proc = subprocess.run([sys.executable, "-c", "from steps.models import model_cache_dir; print(model_cache_dir())"],
                          cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip()


def test_the_model_cache_is_the_users_cache(tmp_path):
    home = str(tmp_path / "home")
    assert cache_dir_in({"HOME": home}) == f"{home}/.cache/kubescribe/models"
    assert cache_dir_in({"HOME": home, "XDG_CACHE_HOME": str(tmp_path / "xdg")}) == f"{tmp_path}/xdg/kubescribe/models"
    assert cache_dir_in({"HOME": home, "XDG_CACHE_HOME": "relative"}) == f"{home}/.cache/kubescribe/models"
    # A pod's HOME=/tmp never decides where a local run's models go: the runner names the cache first.
    assert cache_dir_in({"HOME": "/tmp", "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                         "KUBESCRIBE_MODEL_CACHE": str(tmp_path / "m")}) == str(tmp_path / "m")


def test_a_checkpoint_whisper_downloaded_is_reused_not_fetched_again(tmp_path):
    """Whisper's own download of ``tiny`` in ``$XDG_CACHE_HOME/whisper`` is found by name and checksum (the
    checksum memo is written as whisper's URL states it: the 75 MB download itself cannot happen offline)."""
    import whisper

    url = whisper._MODELS["tiny"]
    theirs = tmp_path / "xdg" / "whisper" / url.rsplit("/", 1)[-1]
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"stand-in for whisper's tiny.pt")
    sidecar = theirs.with_name(theirs.name + ".sha256")
    sidecar.write_text(f"{url.split('/')[-2]}  {theirs.name}\n")
    os.utime(sidecar, ns=(theirs.stat().st_mtime_ns, theirs.stat().st_mtime_ns))
    env = {k: v for k, v in os.environ.items() if k != "KUBESCRIBE_MODEL_CACHE"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), KUBESCRIBE_MODEL_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", "from steps.models import resolve_checkpoint; "
                           "print(resolve_checkpoint('tiny'))"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(theirs)
    assert not (tmp_path / "cache" / theirs.name).exists()


def test_a_gpu_capacity_error_is_not_followed_by_checkpoint_advice(tiny_checkpoint, monkeypatch):
    """No GPU here: torch's out-of-memory error is raised where loading onto the device would raise it."""
    import torch
    import whisper

    from steps.models import ModelError, load_model

    def no_room(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 9.50 GiB total capacity)")

    monkeypatch.setattr(whisper, "load_model", no_room)
    with pytest.raises(ModelError) as err:
        load_model("tiny.en", device="cuda", checkpoint=tiny_checkpoint)
    assert "out of memory" in str(err.value) and "Pass an openai-whisper" not in str(err.value)


def test_a_file_that_is_no_checkpoint_still_gets_the_advice(tmp_path):
    from steps.models import ModelError, load_model

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="Pass an openai-whisper checkpoint"):
        load_model(str(bad), device="cpu", checkpoint=Path(bad))
