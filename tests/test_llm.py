"""Tests for steps/llm/ against real HTTP servers.

* ``llama_server`` (conftest): a real llama.cpp server with SmolLM2-135M.
* ``FakeOpenAI`` (tests/llm_support.py): a tiny real HTTP server on 127.0.0.1 (stdlib ``http.server``
  in a thread) that records requests and answers from a script: canned SSE,
  error statuses, or a dropped connection. Used where the behaviour under test
  (headers, retries, exact request bytes, concurrency) must be deterministic.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from steps.llm import (
    NO_SPEECH_TEXT,
    LLMClient,
    LLMError,
    LLMSettings,
    Summary,
    build_messages,
    summarize,
    summarize_all,
)
from steps.llm.mapreduce import split_text
from steps.llm.prompts import strip_reasoning
from tests.llm_support import TRANSCRIPT, FakeOpenAI, Recorded, Reply, error, fast, sse

pytestmark = pytest.mark.integration

COMMON_WORDS = {"the", "and", "to", "of", "a", "is", "will", "be", "for", "was", "on", "in", "team", "meeting"}


def looks_english(text: str) -> bool:
    words = [w.strip(".,:;!?-*\"'()").lower() for w in text.split()]
    letters = sum(c.isascii() and c.isalpha() for c in text)
    return len(words) >= 5 and len(COMMON_WORDS.intersection(words)) >= 2 and letters / max(len(text), 1) > 0.6


# --- real llama-server ----------------------------------------------------------------


@pytest.mark.llm
def test_real_streamed_summary(llama_server: Any) -> None:
    settings = LLMSettings(url=llama_server.url, model=llama_server.model, max_output_tokens=384, context_tokens=2048)
    with LLMClient(settings) as client:
        assert llama_server.model in client.check()
        result = summarize(client, TRANSCRIPT)
        # Same stable prefix, different transcript: the server reuses the prefix KV cache.
        other = TRANSCRIPT.replace("Maria", "Julia").replace("budget", "schedule")
        again = client.chat(build_messages(other), max_tokens=4)
    print(f"\nreal summary: {result.to_dict()}\nsecond request: {again}")
    assert looks_english(result.text), result.text
    assert 0 < result.first_chunk_s <= result.ttft_s <= result.total_s
    assert result.prompt_tokens and result.prompt_tokens > 200
    assert result.completion_tokens and 0 < result.completion_tokens <= 384 * result.requests
    assert result.chunks == 1 and result.requests in (1, 2)  # 2: the first answer was rejected and retried
    assert again.cached_tokens and again.cached_tokens >= 50, again


@pytest.mark.llm
def test_real_map_reduce(llama_server: Any) -> None:
    long_transcript = " ".join([TRANSCRIPT] * 2)  # ~2,300 chars
    settings = LLMSettings(
        url=llama_server.url, model=llama_server.model, context_tokens=1024, max_output_tokens=200, concurrency=2
    )
    with LLMClient(settings) as client:
        result = summarize(client, long_transcript)
    print(f"\nmap-reduce: {result.to_dict()}")
    assert result.chunks > 1
    assert result.requests >= result.chunks
    assert result.text.strip()
    assert result.prompt_tokens and result.completion_tokens


@pytest.mark.llm
def test_real_context_overflow_is_detected(llama_server: Any) -> None:
    # A prompt larger than the server's 2048-token slot: llama-server rejects it
    # before evaluating anything; the error must be flagged, not retried.
    settings = LLMSettings(url=llama_server.url, model=llama_server.model, max_output_tokens=8, backoff_s=0.01)
    t0 = time.monotonic()
    with LLMClient(settings) as client, pytest.raises(LLMError) as info:
        client.chat(build_messages(" ".join([TRANSCRIPT] * 14)))  # ~3,300 tokens
    assert info.value.context_overflow and info.value.status == 400, info.value
    assert time.monotonic() - t0 < 10


# --- recording server -------------------------------------------------------------------


def test_headers_model_and_stream_parsing(fake: Callable[..., FakeOpenAI]) -> None:
    body = sse("<think>let me think</think>", "", "Hello ", "world.",
               usage={"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}})
    srv = fake([Reply(body=body)])
    settings = fast(srv.url, objective="batch-low", api_key="sk-secret", model="my-model")
    assert "sk-secret" not in repr(settings)
    with LLMClient(settings) as client:
        summary = summarize(client, "Hello there. This is a test.")
    (req,) = srv.chat_requests()
    assert req.path == "/v1/chat/completions"
    assert req.headers["x-gateway-inference-objective"] == "batch-low"
    assert req.headers["authorization"] == "Bearer sk-secret"
    body_json = req.json
    assert body_json["model"] == "my-model"
    assert body_json["stream"] is True and body_json["stream_options"] == {"include_usage": True}
    assert "cache_salt" not in body_json
    assert summary.text == "Hello world."
    assert (summary.prompt_tokens, summary.completion_tokens, summary.cached_tokens) == (12, 3, 8)
    assert 0 < summary.first_chunk_s <= summary.ttft_s <= summary.total_s


@pytest.mark.parametrize("suffix", ["", "/", "/v1/"])
def test_url_with_or_without_v1(fake: Callable[..., FakeOpenAI], suffix: str) -> None:
    srv = fake()
    root = srv.url.removesuffix("/v1")
    with LLMClient(fast(root + suffix)) as client:
        assert client.check() == ["fake-model"]
        assert client.chat(build_messages("hi")).text == "A short summary."
    assert [r.path for r in srv.requests] == ["/v1/chat/completions"]


def test_prefix_is_byte_stable(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake()
    a, b = "Alpha team met on Monday. Budget approved.", "Completely different words here about rockets."
    with LLMClient(fast(srv.url)) as client:
        summarize(client, a)
        summarize(client, b)
    ra, rb = srv.chat_requests()
    for x, y, ta in ((ra.raw, rb.raw, json.dumps(a)[1:-1].encode()),
                     (json.dumps(ra.json["messages"]).encode(), json.dumps(rb.json["messages"]).encode(),
                      json.dumps(a)[1:-1].encode())):
        cut = x.index(ta)
        assert cut > 400  # system message + instructions come first
        assert x[:cut] == y[:cut]
    assert ra.json["model"] == rb.json["model"]


def test_retries_503_then_429_with_retry_after(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake([error(503, "loading"), error(503, "loading"), error(429, "slow down", **{"Retry-After": "1"})])
    t0 = time.monotonic()
    with LLMClient(fast(srv.url)) as client:
        result = client.chat(build_messages("hi"))
    elapsed = time.monotonic() - t0
    assert result.text == "A short summary."
    assert result.attempts == 4 and len(srv.chat_requests()) == 4
    assert elapsed >= 0.95  # Retry-After: 1 honoured (backoff alone is ~0.01 s)


def test_retries_dropped_connection(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake([Reply(drop=True)])
    with LLMClient(fast(srv.url)) as client:
        result = client.chat(build_messages("hi"))
    assert result.text == "A short summary." and result.attempts == 2


def test_retries_exhausted(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(502, "bad gateway"))
    with LLMClient(fast(srv.url, max_retries=2)) as client, pytest.raises(LLMError) as info:
        client.chat(build_messages("hi"))
    assert len(srv.chat_requests()) == 3
    assert "after 3 attempt(s)" in str(info.value) and "HTTP 502" in str(info.value)
    assert srv.url in str(info.value)


def test_400_is_not_retried(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(400, "invalid 'temperature'"))
    with LLMClient(fast(srv.url)) as client, pytest.raises(LLMError) as info:
        client.chat(build_messages("hi"))
    msg = str(info.value)
    assert len(srv.chat_requests()) == 1
    assert info.value.status == 400 and "\n" not in msg
    assert srv.url in msg and "HTTP 400" in msg and "invalid 'temperature'" in msg


def test_404_model_not_found_names_model(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake(default=error(404, "The model `nope` does not exist."))
    with LLMClient(fast(srv.url, model="nope")) as client, pytest.raises(LLMError) as info:
        client.chat(build_messages("hi"))
    assert len(srv.chat_requests()) == 1
    assert "model 'nope' not found" in str(info.value)


def test_unreachable_port_fails_fast_naming_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    t0 = time.monotonic()
    with LLMClient(fast(url, max_retries=1)) as client:
        with pytest.raises(LLMError) as info:
            client.chat(build_messages("hi"))
        with pytest.raises(LLMError) as info_check:
            client.check()
    assert time.monotonic() - t0 < 3
    for exc in (info.value, info_check.value):
        assert url in str(exc) and "unreachable" in str(exc)


def test_empty_transcript_makes_no_request(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake()
    with LLMClient(fast(srv.url)) as client:
        for text in ("", "  \n\t "):
            s = summarize(client, text)
            assert (s.text, s.requests, s.chunks) == (NO_SPEECH_TEXT, 0, 0)
    assert srv.requests == []


def test_summarize_all_concurrency_and_isolation(fake: Callable[..., FakeOpenAI]) -> None:
    def reply(rec: Recorded) -> Reply:
        if "FAIL-ME" in rec.json["messages"][-1]["content"]:
            return error(400, "rejected on purpose")
        return Reply(delay_s=0.3)

    srv = fake(default=reply)
    items = {"a.wav": "First talk.", "b.wav": "FAIL-ME please.", "c.wav": "Third talk.", "d.wav": ""}
    seen: list[str] = []
    out = summarize_all(fast(srv.url, concurrency=2), items, on_result=lambda key, res: seen.append(key))
    assert list(out) == list(items)
    assert sorted(seen) == sorted(items)  # each result handed over as it finishes, once
    assert isinstance(out["a.wav"], Summary) and isinstance(out["c.wav"], Summary)
    assert isinstance(out["b.wav"], LLMError) and "rejected on purpose" in str(out["b.wav"])
    assert isinstance(out["d.wav"], Summary) and out["d.wav"].requests == 0
    # b.wav is asked in each answer format before its 400 counts as its own (not the format's)...
    assert len(srv.chat_requests()) == 5
    formats = [r.json.get("response_format", {}).get("type") for r in srv.chat_requests()
               if "FAIL-ME" in r.json["messages"][-1]["content"]]
    assert formats == ["json_schema", "json_object", None]
    # ...and its failure downgrades no other file: they are asked with the JSON schema.
    assert all(r.json["response_format"]["type"] == "json_schema" for r in srv.chat_requests()
               if "FAIL-ME" not in r.json["messages"][-1]["content"])
    assert srv.max_in_flight == 2


def _block(rec: Recorded) -> str:
    """The text inside a request's transcript block."""
    return rec.json["messages"][-1]["content"].split("<transcript>\n", 1)[1].rsplit("\n</transcript>", 1)[0]


def test_map_reduce_request_shapes(fake: Callable[..., FakeOpenAI]) -> None:
    srv = fake()
    text = " ".join(f"Sentence number {i} is about topic {i % 7}." for i in range(300))
    with LLMClient(fast(srv.url, context_tokens=1100, max_output_tokens=64, concurrency=3)) as client:
        result = summarize(client, text)
    reqs = srv.chat_requests()
    assert result.chunks > 1 and result.requests == len(reqs) == result.chunks + 1
    # The reduce request merges the structured parts (one JSON object per part), not prose.
    parts = [json.loads(line) for line in _block(reqs[-1]).splitlines()]
    assert [p["part"] for p in parts] == list(range(1, result.chunks + 1))
    assert all(p["summary"] == "A short summary." for p in parts)
    for r in reqs[:-1]:
        assert "one part of a longer recording" in r.json["messages"][-1]["content"]
        assert _block(r).endswith(".")  # split on sentence boundaries
    # all map excerpts together are the whole transcript, in order
    joined = " ".join(sorted((_block(r) for r in reqs[:-1]), key=lambda e: text.index(e)))
    assert joined == text


def test_context_overflow_falls_back_to_splitting(fake: Callable[..., FakeOpenAI]) -> None:
    """Token estimate too optimistic: the server's 400 overflow triggers map-reduce."""
    overflow = error(400, "the request exceeds the available context size, try increasing it")

    def reply(rec: Recorded) -> Reply:
        return overflow if len(_block(rec)) > 1500 else Reply()

    srv = fake(default=reply)
    text = " ".join(f"Sentence number {i} is about topic {i % 7}." for i in range(60))  # ~2,300 chars
    with LLMClient(fast(srv.url, context_tokens=4096, max_output_tokens=64)) as client:
        result = summarize(client, text)
    # The model's part of the markdown (the transcript's highlights, quoted, follow it)
    assert result.text.split("\n\n## Quoted from the transcript\n\n")[0] == "A short summary."
    assert result.chunks >= 2 and result.requests == result.chunks + 1
    assert len(srv.chat_requests()) == result.requests + 1  # plus the rejected first try


# --- pure helpers -------------------------------------------------------------------------


def test_split_text_boundaries() -> None:
    text = "One two three. Four five six! " + "x" * 25 + " seven eight"
    chunks = split_text(text, 20)
    assert all(len(c) <= 20 for c in chunks)
    assert chunks[:2] == ["One two three.", "Four five six!"]
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")


def teststrip_reasoning() -> None:
    assert strip_reasoning("<think>a\nb</think>\nSummary.") == "Summary."
    assert strip_reasoning("reasoning only</think>Final.") == "Final."
    assert strip_reasoning("Text. <think>unfinished") == "Text."
