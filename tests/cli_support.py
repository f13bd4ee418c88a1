"""Helpers for tests that drive the real ``kubescribe`` CLI as a subprocess: a run to the end and the contract of its
report, process-tree inspection through /proc, a tiny fake OpenAI server, a TCP proxy that can simulate an outage,
and long audio made from the samples."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support import ROOT, SAMPLES


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without anything that would force colours (so any ESC in the output is a leak)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return {**env, **extra}


def start_cli(args: list[str], logs: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``kubescribe ARGS`` in the background; stdout/stderr go to files under ``logs`` (no pipe can fill up)."""
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "workflows.cli", *args], cwd=ROOT, env=env or cli_env(), stdin=subprocess.DEVNULL,
        stdout=open(logs / "stdout", "wb"), stderr=open(logs / "stderr", "wb"),  # noqa: SIM115 - child owns them
    )


def output_of(logs: Path) -> tuple[str, str]:
    return ((logs / "stdout").read_text(errors="replace"), (logs / "stderr").read_text(errors="replace"))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- `kubescribe run` through the whole pipeline -----------------------------------------------------------------


def kubescribe(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def check_contract(report: dict, out_exists) -> dict[str, dict]:
    files = {f["input"]: f for f in report["files"]}
    assert len(files) == len(report["files"]), "every input exactly once"
    for f in report["files"]:
        assert f["status"] in ("succeeded", "failed")
        assert (f["error"] is None) == (f["status"] == "succeeded")
        assert set(f["outputs"]) == {"txt", "srt", "vtt", "json", "summary", "summary_json"}
        for rel in filter(None, f["outputs"].values()):
            assert not rel.startswith("/") and out_exists(rel), rel
    return files


# --- processes ---------------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live descendant of ``root``: pid -> (start time, command line), from /proc/*/stat parent links."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[0] != "Z":
            parent[int(entry)] = st[1]
    found: dict[int, tuple[int, str]] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        for pid in frontier:
            st = _stat(pid)
            if st is not None:
                found[pid] = (st[2], cmdline(pid))
    return found


def alive(pid: int, started: int) -> bool:
    """The very process (same start time: no pid reuse) still exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] != "Z" and st[2] == started


def ours(procs: dict[int, tuple[int, str]], *needles: str) -> dict[int, tuple[int, str]]:
    return {pid: v for pid, v in procs.items() if any(n in v[1] for n in needles)}


def assert_all_gone(procs: dict[int, tuple[int, str]], timeout: float = 30) -> None:
    """Every process in ``procs`` ends within ``timeout`` (a generous bound: this proves termination)."""
    try:
        wait_until(lambda: not any(alive(pid, st) for pid, (st, _) in procs.items()), timeout, "children to exit")
    except AssertionError:
        left = {pid: cmd for pid, (st, cmd) in procs.items() if alive(pid, st)}
        raise AssertionError(f"processes outlived the CLI: {left}") from None


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes anywhere on the machine whose command line contains ``text`` (e.g. a test's tmp dir)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            st = _stat(int(entry))
            if st is not None and st[0] != "Z" and text in (cmd := cmdline(int(entry))):
                found[int(entry)] = cmd
    return found


# --- audio -------------------------------------------------------------------------------------------------------


def long_audio(dest: Path, minutes: float) -> Path:
    """``samples/earnings-call.wav`` looped to about ``minutes`` of speech, as FLAC (small, fast to write)."""
    from steps.audio import ffmpeg_exe, probe_duration

    once = probe_duration(str(SAMPLES / "earnings-call.wav")) or 15.0
    loops = max(1, int(minutes * 60 / once))
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i",
                    str(SAMPLES / "earnings-call.wav"), "-c:a", "flac", str(dest)], check=True, timeout=120)
    return dest


# --- fake OpenAI-compatible server -------------------------------------------------------------------------------


class FakeLLM:
    """A small OpenAI-compatible server: ``GET /v1/models`` lists ``fake-model``; every chat completion (non-streamed
    JSON) answers ``reply`` with ``finish_reason``. ``status`` other than 200 refuses every chat request (as a
    server that supports no answer format would); with ``token`` set, a request without ``Bearer <token>`` gets 401."""

    def __init__(self, reply: str = "A short summary.", *, finish_reason: str = "stop", status: int = 200,
                 token: str | None = None) -> None:
        body = json.dumps({
            "id": "fake", "object": "chat.completion", "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }).encode()
        models = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
        refusal = json.dumps({"error": {"message": "response_format is not supported", "code": status}}).encode()
        denied = json.dumps({"error": {"message": "invalid api key", "code": 401}}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _allowed(self) -> bool:
                if token is None or self.headers.get("Authorization") == f"Bearer {token}":
                    return True
                self._send(401, denied)
                return False

            def do_GET(self) -> None:
                if self._allowed():
                    self._send(200, models)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self._allowed():
                    self._send(status, body if status == 200 else refusal)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a TCP proxy that can go down ----------------------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to ``target`` (``host:port``) until :meth:`down`: then the port refuses connections
    and open ones are cut, which is what a client sees when an S3 endpoint goes away."""

    def __init__(self, target: str, port: int = 0) -> None:
        host, target_port = target.rsplit(":", 1)
        self.target = (host, int(target_port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._up:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def down(self) -> None:
        with self._lock:
            self._up = False
            conns, self._conns = self._conns, []
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
