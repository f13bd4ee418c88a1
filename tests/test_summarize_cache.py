"""Summaries belong to their transcript: a cache hit proves the output holds the marker's text.

Real step code over a real directory store, against a real local HTTP server that answers each request with
a summary naming the transcript it was given (so a summary that belongs to another input is visible).
"""

from __future__ import annotations

import json
import re

from steps import layout
from steps.llm import LLMSettings
from steps.records import FileResult, Plan, PlannedFile, ShardResult
from steps.report import build_report
from steps.runstate import write_plan
from steps.store import LocalStore
from steps.summarize import run_step
from tests.llm_support import FakeOpenAI, Recorded, Reply, sse


def _echo(rec: Recorded) -> Reply:
    words = re.findall(r"CODEWORD-(\w+)", json.dumps(rec.json["messages"]))
    return Reply(body=sse(f"Summary of {words[-1]}.", usage={"prompt_tokens": 10, "completion_tokens": 4}))


def _run_with_transcript(out: LocalStore, run_id: str, word: str, server: FakeOpenAI) -> dict:
    """Plan one input k1.wav whose transcript says ``word``, then summarize and report it."""
    f = PlannedFile(0, "k1.wav", "k1", 100, 5.0, "100:1")
    plan = Plan(run_id, "in", out.url, [f], [[0]])
    write_plan(plan, out)
    out.write_text("transcripts/k1.txt", f"The meeting discussed CODEWORD-{word} at length.\n")
    result = FileResult("k1.wav", "k1", "succeeded", outputs=layout.transcripts("k1"))
    out.write_text(layout.shard_result(run_id, 0), ShardResult(run_id, 0, "tiny.en", "id", "cpu", [result]).to_json())
    settings = LLMSettings(url=server.url, model="fake-model", backoff_s=0.01)
    [record] = run_step(out.url, run_id, settings)
    return {"record": record, "report": build_report(out, plan).files[0]}


def test_a_summary_of_another_input_is_never_passed_off_as_cached(tmp_path):
    out = LocalStore(tmp_path / "out")
    server = FakeOpenAI(default=_echo)
    try:
        first = _run_with_transcript(out, "r1", "alpha", server)
        assert not first["record"].cached and out.read_text("summaries/k1.md") == "Summary of alpha.\n"
        _run_with_transcript(out, "r2", "beta", server)  # another k1.wav into the same output
        assert out.read_text("summaries/k1.md") == "Summary of beta.\n"
        calls = len(server.chat_requests())
        third = _run_with_transcript(out, "r3", "alpha", server)
        assert third["record"].cached and len(server.chat_requests()) == calls  # no new LLM call...
        assert out.read_text("summaries/k1.md") == "Summary of alpha.\n"  # ...and the right summary on disk
        assert third["report"].status == "succeeded"
        # Someone overwrites it after this run wrote it: the report says so instead of claiming success.
        out.write_text("summaries/k1.md", "Summary of somebody else.\n")
        plan = Plan("r3", "in", out.url, [PlannedFile(0, "k1.wav", "k1", 100, 5.0, "100:1")], [[0]])
        report = build_report(out, plan).files[0]
        assert report.status == "failed" and "overwritten" in report.error
    finally:
        server.close()


def test_inputs_without_a_transcript_are_skipped_without_an_llm_call(tmp_path):
    """A failed transcript, and one from a shard that never reported, are skipped; the others are summarized."""
    out = LocalStore(tmp_path / "out")
    files = [PlannedFile(0, "ok.wav", "ok", 100, 5.0), PlannedFile(1, "bad.wav", "bad", 100, 5.0),
             PlannedFile(2, "lost.wav", "lost", 100, 5.0)]
    write_plan(Plan("r1", "in", out.url, files, [[0, 1], [2]]), out)
    out.write_text("transcripts/ok.txt", "The meeting discussed CODEWORD-ok.\n")
    results = [FileResult("ok.wav", "ok", "succeeded", outputs=layout.transcripts("ok")),
               FileResult("bad.wav", "bad", "failed", error="bad.wav: not decodable audio", bad_input=True)]
    out.write_text(layout.shard_result("r1", 0), ShardResult("r1", 0, "tiny.en", "id", "cpu", results).to_json())
    server = FakeOpenAI(default=_echo)
    try:
        records = run_step(out.url, "r1", LLMSettings(url=server.url, model="fake-model", backoff_s=0.01))
        assert len(server.chat_requests()) == 1
    finally:
        server.close()
    assert [(r.input, r.status, r.error) for r in records] == [
        ("ok.wav", "succeeded", None), ("bad.wav", "skipped", "no transcript"), ("lost.wav", "skipped", "no transcript")]
    stored = json.loads(out.read_text(layout.summarize_result("r1")))
    assert [f["status"] for f in stored["files"]] == ["succeeded", "skipped", "skipped"]
    assert stored["model"] == "fake-model" and not out.exists("summaries/bad.md")


def test_a_deleted_summary_is_restored_from_its_marker_without_an_llm_call(tmp_path):
    out = LocalStore(tmp_path / "out")
    server = FakeOpenAI(default=_echo)
    try:
        _run_with_transcript(out, "r1", "alpha", server)
        calls = len(server.chat_requests())
        (tmp_path / "out" / "summaries" / "k1.md").unlink()
        again = _run_with_transcript(out, "r2", "alpha", server)
        assert len(server.chat_requests()) == calls
    finally:
        server.close()
    assert again["record"].cached and again["report"].status == "succeeded"
    assert out.read_text("summaries/k1.md") == "Summary of alpha.\n"
