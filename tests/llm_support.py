"""``FakeOpenAI``: a tiny real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) that records requests and
answers from a script: canned SSE, error statuses, or a dropped connection. Used where the behaviour under test
(headers, retries, exact request bytes, concurrency) must be deterministic. The ``fake`` fixture (tests/conftest.py)
makes them and closes them after the test. Also: fast-retry settings and a meeting transcript to summarize."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from steps.llm import LLMSettings

# --- the recording server -------------------------------------------------------


def sse(*contents: str, usage: dict | None = None, comment: bool = True) -> bytes:
    """A canned OpenAI chat stream (role chunk, content chunks, usage chunk, [DONE])."""
    events = [": ping"] if comment else []
    events.append("data: " + json.dumps({"model": "fake", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    for text in contents:
        events.append("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}))
    events.append("data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage is not None:
        events.append("data: " + json.dumps({"choices": [], "usage": usage}))
    events.append("data: [DONE]")
    return ("\n\n".join(events) + "\n\n").encode()


OK_STREAM = sse("A short ", "summary.", usage={"prompt_tokens": 50, "completion_tokens": 3})


@dataclass
class Reply:
    status: int = 200
    body: bytes = OK_STREAM
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    drop: bool = False  # close the connection without any response
    delay_s: float = 0.0  # before the response (cut short when the server closes)
    # written after ``body``, each piece after its pause (keep-alives, a stall...); stops when the client hangs
    # up or the server closes, so a test server never outlives its test
    then: tuple[tuple[float, bytes], ...] = ()


def error(status: int, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class FakeOpenAI:
    """Real HTTP server; ``script`` replies are used in order, then ``default``."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | Callable[[Recorded], Reply] | None = None):
        self.script = list(script or [])
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                with outer._lock:
                    outer.requests.append(rec)
                    reply = outer.script.pop(0) if outer.script else outer.default
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if callable(reply):
                        reply = reply(rec)
                    if outer._closed.wait(reply.delay_s):
                        return
                    if reply.drop:
                        self.close_connection = True
                        return
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                    self.wfile.flush()
                    for pause, piece in reply.then:
                        if outer._closed.wait(pause):
                            break
                        try:
                            self.wfile.write(piece)
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            break
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]


def fast(url: str, **kw: Any) -> LLMSettings:
    """Settings with tiny backoff so retry tests are quick."""
    return LLMSettings(url=url, **{"model": "fake-model", "max_retries": 4, "backoff_s": 0.01, "connect_timeout_s": 2, "read_timeout_s": 10, **kw})


TRANSCRIPT = (
    "Okay, let's get started. This is the weekly planning meeting for the transcription project. "
    "Maria, can you give us the status of the speech recognition service? Sure. We moved the Whisper "
    "model to the new GPU slices last week, and the average processing time dropped from twelve minutes "
    "to four minutes per hour of audio. There are still some errors with long silent sections, the model "
    "sometimes repeats the last sentence. Tom is looking into that. Tom: yes, I think we can fix it by "
    "trimming silence before we send the audio. I will have a patch ready by Thursday. Great. The second "
    "topic is the summarization step. We now call the language model through the inference gateway. "
    "The summaries are okay, but they are sometimes too long. We agreed to limit them to five sentences. "
    "Anna will update the prompt and run the evaluation again. The last topic is the budget. We need to "
    "decide whether to buy two more GPUs. The decision was postponed to next week because the finance "
    "team needs the usage numbers first. Maria will send the numbers on Monday. Any other questions? "
    "No? Then thank you everyone, see you next week."
)
