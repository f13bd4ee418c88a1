"""Trust tests for the LLM path: every wait has a deadline, hostile answers fail clearly, secrets stay secret.

All servers are real HTTP servers on 127.0.0.1 (``FakeOpenAI`` from tests/llm_support.py); every server loop is
bounded (a fixed number of pieces, and it stops when the test closes the server). Deadlines are fractions of a
second; the only timing assertions are generous upper bounds proving that a call ended.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from steps.llm import (
    BudgetExhausted,
    LLMClient,
    LLMError,
    LLMSettings,
    Summary,
    build_messages,
    summarize,
    summarize_all,
)
from steps.sanitize import strip_control
from steps.urls import redact_url, split_credentials
from tests.llm_support import FakeOpenAI, Recorded, Reply, error, fast, sse
from tests.support import FIXTURES, ROOT

pytestmark = pytest.mark.e2e

SECRET = "SuperSecret123"
SSE_HEADERS = {"Content-Type": "text/event-stream"}
PING = b": ping\n\n"
EMPTY_DELTA = b'data: {"choices": [{"index": 0, "delta": {"content": ""}}]}\n\n'
ROLE = b'data: {"model": "fake", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
FIRST_TOKEN = b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'


def every(pause: float, piece: bytes, n: int = 100) -> tuple[tuple[float, bytes], ...]:
    """``n`` pieces, one each ``pause`` seconds (bounded: 100 x 0.1 s = 10 s at most)."""
    return ((pause, piece),) * n


def chat_error(settings: LLMSettings) -> tuple[LLMError, float]:
    t0 = time.monotonic()
    with LLMClient(settings) as client, pytest.raises(LLMError) as info:
        client.chat(build_messages("hi"))
    return info.value, time.monotonic() - t0


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# --- deadlines ----------------------------------------------------------------------------------------------------


def test_silent_server_fails_at_the_first_token_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(delay_s=30))  # reads the request, never answers (until the test closes it)
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=0.5, max_retries=0))
    msg = one_line(exc)
    assert srv.url in msg and "first-token deadline" in msg and "no first token within 0.5 s" in msg, msg
    assert "no response at all" in msg
    assert elapsed < 10


def test_silent_server_retries_end_at_the_request_deadline(fake: Callable[..., FakeOpenAI],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    srv = fake(default=Reply(delay_s=30))
    settings = fast(srv.url, first_token_timeout_s=0.3, request_timeout_s=1.0, max_retries=50)
    with caplog.at_level(logging.WARNING, logger="steps.llm"):
        exc, elapsed = chat_error(settings)
    msg = one_line(exc)
    assert srv.url in msg and "request deadline of 1 s" in msg, msg
    assert 1 <= len(srv.chat_requests()) < 10  # the deadline, not max_retries=50, ended it
    assert elapsed < 10
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries and all("first-token deadline" in r and "request deadline of 1 s:" in r and "s left" in r
                           for r in retries), retries


def test_keepalives_and_empty_deltas_do_not_extend_the_first_token_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=ROLE, headers=SSE_HEADERS, then=every(0.1, PING + EMPTY_DELTA)))
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=0.5, read_timeout_s=30, max_retries=0))
    msg = one_line(exc)
    assert srv.url in msg and "first-token deadline" in msg and "keep-alive" in msg, msg
    assert elapsed < 10


def test_first_token_then_keepalives_fails_at_the_total_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=ROLE + FIRST_TOKEN, headers=SSE_HEADERS, then=every(0.1, PING)))
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=5, read_timeout_s=5, request_timeout_s=1,
                                   max_retries=3))
    msg = one_line(exc)
    assert srv.url in msg and "request deadline of 1 s" in msg and "streaming for" in msg, msg
    assert len(srv.chat_requests()) == 1  # nothing left to retry with
    assert elapsed < 10


def test_first_token_then_silence_fails_at_the_total_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=ROLE + FIRST_TOKEN, headers=SSE_HEADERS, then=((30, PING),)))
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=5, read_timeout_s=30, request_timeout_s=1))
    msg = one_line(exc)
    assert srv.url in msg and "request deadline of 1 s" in msg, msg
    assert elapsed < 10


def test_silence_after_the_first_token_hits_the_idle_timeout(fake: Callable[..., FakeOpenAI]) -> None:
    # httpx's own read timeout is the first-token deadline (60 s) here: only the watchdog can end this in time.
    srv = fake(default=Reply(body=ROLE + FIRST_TOKEN, headers=SSE_HEADERS, then=((30, PING),)))
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=60, read_timeout_s=0.5, request_timeout_s=60,
                                   max_retries=0))
    msg = one_line(exc)
    assert srv.url in msg and "idle read timeout" in msg, msg
    assert elapsed < 10


def test_retry_after_never_sleeps_past_the_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(429, "slow down", **{"Retry-After": "100"}))
    exc, elapsed = chat_error(fast(srv.url, request_timeout_s=2, busy_wait_s=0))  # no allowance for a busy pool
    msg = one_line(exc)
    assert "request deadline of 2 s" in msg and "HTTP 429" in msg, msg
    assert len(srv.chat_requests()) == 1
    assert elapsed < 10


# --- garbage ------------------------------------------------------------------------------------------------------


def test_non_json_data_lines(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=b"data: <html>oops</html>\n\ndata: {not json\n\n", headers=SSE_HEADERS))
    exc, elapsed = chat_error(fast(srv.url, max_retries=1))
    msg = one_line(exc)
    assert srv.url in msg and "malformed stream chunk" in msg and "oops" in msg, msg
    assert len(srv.chat_requests()) == 2 and elapsed < 10


def test_non_sse_bytes(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=b"\x00\x01\xff\xfeGARBAGE \x1b[2J bytes\r\nmore junk\n", headers=SSE_HEADERS))
    exc, elapsed = chat_error(fast(srv.url, max_retries=0))
    msg = one_line(exc)
    assert srv.url in msg and "not an OpenAI event stream" in msg and "GARBAGE" in msg, msg
    assert "\x1b" not in msg and "\x00" not in msg
    assert elapsed < 10


def test_endless_non_sse_bytes_end_at_the_first_token_deadline(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=b"junk\n", headers=SSE_HEADERS, then=every(0.05, b"more junk\n", 200)))
    exc, elapsed = chat_error(fast(srv.url, first_token_timeout_s=0.5, max_retries=0))
    msg = one_line(exc)
    assert srv.url in msg and "first-token deadline" in msg, msg
    assert elapsed < 10


def test_http_200_html_page(fake: Callable[..., FakeOpenAI]) -> None:
    html = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"
    srv = fake(default=Reply(body=html, headers={"Content-Type": "text/html; charset=utf-8"}))
    exc, elapsed = chat_error(fast(srv.url))
    msg = one_line(exc)
    assert srv.url in msg and "HTTP 200, text/html" in msg and "not an OpenAI chat completion" in msg, msg
    assert "Please log in" in msg
    assert len(srv.chat_requests()) == 1 and elapsed < 10  # not retried: it will not get better


# --- the summarize budget ------------------------------------------------------------------------------------------


def _slow_when_marked(rec: Recorded) -> Reply:
    return Reply(delay_s=30) if "SLOW" in rec.json["messages"][-1]["content"] else Reply()


def test_summarize_all_budget_fails_only_what_is_not_done(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=_slow_when_marked)
    items = {"a.wav": "First talk.", "b.wav": "SLOW talk.", "c.wav": "Third talk."}
    settings = fast(srv.url, concurrency=1, budget_s=1.0, first_token_timeout_s=30, request_timeout_s=60)
    seen: list[str] = []
    t0 = time.monotonic()
    out = summarize_all(settings, items, on_result=lambda key, res: seen.append(key))
    assert time.monotonic() - t0 < 10
    assert list(out) == list(items) and sorted(seen) == sorted(items)
    assert isinstance(out["a.wav"], Summary) and out["a.wav"].text == "A short summary."  # finished: kept
    for key in ("b.wav", "c.wav"):  # in flight when the budget ended / never started
        assert isinstance(out[key], BudgetExhausted), out[key]
        assert "summarize budget of 1 s exhausted before this file was summarized" in one_line(out[key])
    assert len(srv.chat_requests()) == 2  # c.wav never reached the server


def test_summarize_step_budget(fake: Callable[..., FakeOpenAI], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The step keeps what finished, fails the rest alone with one line naming file and budget, writes its result."""
    import steps.summarize as step
    from steps import layout
    from steps.store import open_store

    srv = fake(default=_slow_when_marked)
    store = open_store(str(tmp_path))
    texts = {"a.wav": "First talk.", "b.wav": "SLOW talk.", "c.wav": "Third talk."}
    files = [SimpleNamespace(input=name, stem=name.removesuffix(".wav")) for name in texts]
    for name, text in texts.items():
        store.write_text(f"transcripts/{name}.txt", text, "text/plain")
    transcripts = {name: SimpleNamespace(status="succeeded", unreliable=None, outputs={"txt": f"transcripts/{name}.txt"})
                   for name in texts}
    monkeypatch.setattr(step, "read_plan", lambda store, run_id: SimpleNamespace(files=files))
    monkeypatch.setattr(step, "read_shard_results", lambda store, plan: {})
    monkeypatch.setattr(step, "transcripts_by_input", lambda plan, results: transcripts)

    settings = fast(srv.url, concurrency=1, budget_s=1.0, first_token_timeout_s=30, request_timeout_s=60)
    records = step.run_step(str(tmp_path), "run-1", settings)
    by_name = {r.input: r for r in records}
    assert by_name["a.wav"].status == "succeeded"
    assert store.read_text(layout.summary("a")).strip() == "A short summary."
    for name in ("b.wav", "c.wav"):
        assert by_name[name].status == "failed" and not store.exists(layout.summary(name.removesuffix(".wav")))
        assert by_name[name].error.startswith(f"{name}: summarize budget of 1 s exhausted before this file was "
                                              "summarized"), by_name[name].error
    result = json.loads(store.read_text(layout.summarize_result("run-1")))
    assert [f["status"] for f in result["files"]] == ["succeeded", "failed", "failed"]


# --- secrets and hostile text ---------------------------------------------------------------------------------------


def test_url_credentials_split_and_redacted() -> None:
    url = f"http://user:{SECRET}@127.0.0.1:8000/v1"
    assert split_credentials(url) == ("http://127.0.0.1:8000/v1", ("user", SECRET))
    assert split_credentials("https://a%40b:p%3Aw@host/v1?x=a@b") == ("https://host/v1?x=a@b", ("a@b", "p:w"))
    assert split_credentials("http://host/v1?next=a@b") == ("http://host/v1?next=a@b", None)
    assert redact_url(url) == "http://***@127.0.0.1:8000/v1" and redact_url("http://h/v1") == "http://h/v1"


def test_credentials_in_url_become_basic_auth_and_never_show(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(400, "bad request"))
    with_creds = srv.url.replace("http://", f"http://user:{SECRET}@")
    settings = fast(with_creds, max_retries=0)
    assert settings.url == srv.url and SECRET not in repr(settings)
    exc, _ = chat_error(settings)
    (req,) = srv.chat_requests()
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert SECRET not in str(exc) and SECRET not in (exc.url or "")


def test_control_characters_are_stripped_from_model_output(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=Reply(body=sse("\x1b[2J\x1b]0;pwned\x07 hello", "\r\n\x07world\x00\x9b31m", "\tend\x1b")))
    with LLMClient(fast(srv.url)) as client:
        summary = summarize(client, "Some talk.")
    assert summary.text == "hello world end"  # escapes gone; the summary is one markdown line
    assert strip_control("keep\nlines\tand tabs\u202e") == "keep\nlines\tand tabs"


# --- the real CLI ----------------------------------------------------------------------------------------------------


def _auth_checked(expected: str) -> Callable[[Recorded], Reply]:
    def reply(rec: Recorded) -> Reply:
        if rec.headers.get("authorization") != expected:
            return error(401, "missing or wrong credentials")
        return Reply(body=sse("\x1b[2J\x1b]0;pwned\x07 A report about ", "the weather."))
    return reply


def _grep_tree(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_cli_run_keeps_url_credentials_secret(fake: Callable[..., FakeOpenAI], tmp_path: Path) -> None:
    basic = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    srv = fake(default=_auth_checked(basic))
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(FIXTURES / "speech" / "weather.wav", src / "weather.wav")
    url = srv.url.replace("http://", f"http://user:{SECRET}@")
    run = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "run", str(src), "--out", str(out), "--llm-url", url,
         "--llm-model", "m", "--show"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert srv.chat_requests() and all(r.headers.get("authorization") == basic for r in srv.chat_requests())
    (f,) = json.loads((out / "report.json").read_text())["files"]
    assert f["status"] == "succeeded", f
    assert (out / f["outputs"]["summary"]).read_text() == "A report about the weather.\n"  # no escapes stored
    assert "A report about the weather." in run.stdout and "\x1b" not in run.stdout  # --show printed it, clean
    assert (out / ".kubescribe").is_dir()  # the task logs are searched too
    for needle in (SECRET.encode(), base64.b64encode(f"user:{SECRET}".encode())):
        assert _grep_tree(out, needle) == []
    assert SECRET not in run.stdout + run.stderr
    logs = "".join(p.read_text() for p in (out / ".kubescribe" / "local").rglob("stdout.log"))
    assert "summarize: 1 transcript(s) to summarize" in logs and "first token 120 s" in logs  # what it waits for
    assert "carries credentials" not in logs  # stripped before the workflow: the step's arguments never had them

    # A cluster user may put the credentials into the workflow parameter: the step itself keeps them out of its
    # log and its stored result (a new model name, so the summary is made again).
    run_id = json.loads((out / "report.json").read_text())["run_id"]
    step = subprocess.run(
        [sys.executable, "-m", "steps", "summarize", "--output", str(out), "--run-id", run_id,
         "--llm-url", url, "--llm-model", "m2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert step.returncode == 0, step.stderr[-3000:]
    assert "1 succeeded" in step.stdout and "credentials" in step.stderr
    assert SECRET not in step.stdout + step.stderr
    assert _grep_tree(out, SECRET.encode()) == []
    assert srv.chat_requests()[-1].headers.get("authorization") == basic


# --- a saturated gateway (429/503) is waited out, for minutes, not a few attempts ---------------------------------


def test_a_saturated_gateway_is_waited_out_beyond_the_retry_count_and_request_deadline(
    fake: Callable[..., FakeOpenAI],
) -> None:
    busy = [error(429, "pool saturated", **{"Retry-After": "0.2"}) for _ in range(5)] + [error(503, "no capacity")]
    srv = fake(busy)
    settings = fast(srv.url, max_retries=0, request_timeout_s=0.6, busy_wait_s=30)
    with LLMClient(settings) as client:
        result = client.chat(build_messages("hi"))
    assert result.text == "A short summary." and len(srv.chat_requests()) == 7
    assert result.busy_wait_s >= 1.0  # five Retry-After: 0.2 honoured, far past the 0.6 s request deadline
    with LLMClient(fast(srv.url)) as client:
        summary = summarize(client, "A transcript to summarize.")
    assert summary.busy_wait_s == 0.0 and "busy_wait_s" in summary.to_dict()  # reported per file


def test_the_busy_wait_allowance_ends(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(429, "pool saturated", **{"Retry-After": "0.2"}))
    exc, elapsed = chat_error(fast(srv.url, max_retries=0, busy_wait_s=0.5))
    assert "HTTP 429" in one_line(exc) and srv.url in one_line(exc)
    assert 3 <= len(srv.chat_requests()) <= 5 and elapsed < 10


def test_busy_waits_reach_the_file_summary(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake([error(503, "loading", **{"Retry-After": "0.3"})])
    with LLMClient(fast(srv.url, max_retries=0)) as client:
        summary = summarize(client, "A transcript to summarize.")
    assert summary.busy_wait_s >= 0.3
