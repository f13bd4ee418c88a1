"""Issue 11, the summarize and report steps through the real ``kubescribe-step`` process against a small fake
OpenAI server (tests/cli_support.FakeLLM): a summary cut at the token limit is never presented as complete, summaries report structured
events, a failed summary is printed once, and outputs are as readable as the user's umask allows.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from steps import layout
from steps.events import EVENTS_ENV, iter_events
from steps.records import SUMMARY_TRUNCATED, FileResult, Plan, PlannedFile, ShardResult
from steps.runstate import write_plan
from steps.store import LocalStore
from tests.cli_support import FakeLLM
from tests.support import ROOT

pytestmark = pytest.mark.integration

TRANSCRIPT = ("Good morning everyone. Today we will review the weather report for the coming week. Rain is expected "
              "on Tuesday and sunshine on Friday, so the picnic moves to Friday afternoon.")
ANSWER = {"title": "Weather review", "summary": "Rain is expected on Tuesday; the picnic moves to Friday.",
          "key_points": ["Sunshine on Friday."], "decisions": ["The picnic moves to Friday afternoon."],
          "action_items": [], "open_questions": []}


def transcribed(tmp_path: Path) -> LocalStore:
    """An output store as the transcribe step leaves it: one transcript of ``weather.wav``."""
    out = LocalStore(tmp_path / "out")
    plan = Plan("r1", str(tmp_path / "in"), out.url, [PlannedFile(0, "weather.wav", "weather", 100, 9.0, "100:1")],
                [[0]])
    write_plan(plan, out)
    out.write_text("transcripts/weather.txt", TRANSCRIPT + "\n")
    result = FileResult("weather.wav", "weather", "succeeded", outputs={"txt": "transcripts/weather.txt"},
                        duration_s=9.0, language="en")
    out.write_text(layout.shard_result("r1", 0), ShardResult("r1", 0, "tiny.en", "id", "cpu", [result]).to_json())
    return out


def step(*args: str, events: Path | None = None, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != EVENTS_ENV}
    if events is not None:
        env[EVENTS_ENV] = str(events)
    return subprocess.run([sys.executable, "-m", "steps.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def summarize_and_report(out: LocalStore, url: str, events: Path | None = None, umask: int | None = None):
    common = ["--output", out.url, "--run-id", "r1"]
    s = step("summarize", *common, "--llm-url", url, "--llm-model", "fake-model", "--max-output-tokens", "64",
             events=events, umask=umask)
    r = step("report", *common, events=events, umask=umask)
    return s, r, json.loads(out.read_text("report.json"))


def test_a_summary_cut_at_the_token_limit_is_marked_incomplete_everywhere(tmp_path):
    out, ev = transcribed(tmp_path), tmp_path / "events.jsonl"
    with FakeLLM(json.dumps(ANSWER), finish_reason="length") as llm:
        s, r, report = summarize_and_report(out, llm.url, events=ev)
    assert s.returncode == 0, s.stdout + s.stderr
    doc = json.loads(out.read_text("summaries/weather.json"))
    assert doc["truncated"] is True and doc["confidence"] == "high"
    assert "cut at the output-token limit" in out.read_text("summaries/weather.md")
    entry = report["files"][0]
    assert entry["summary"]["truncated"] is True and SUMMARY_TRUNCATED in entry["warnings"]
    assert report["totals"]["summaries_truncated"] == 1
    kinds = [(e.step, e.event) for e in iter_events(ev)]
    assert ("summarize", "summary_started") in kinds and ("report", "report") in kinds
    done = [e for e in iter_events(ev) if e.event == "summary_done"]
    assert len(done) == 1 and done[0].status == "succeeded" and done[0].warnings == [SUMMARY_TRUNCATED]
    final = [e for e in iter_events(ev) if e.event == "report"][0]
    assert (final.succeeded, final.failed) == (1, 0) and final.path.endswith("report.json")
    assert "warning: weather.wav: summary cut" in s.stdout

    ev.unlink()
    with FakeLLM(json.dumps(ANSWER), finish_reason="length") as llm:
        summarize_and_report(out, llm.url, events=ev)  # cached: still marked
    done = [e for e in iter_events(ev) if e.event == "summary_done"]
    assert done[0].status == "cached" and done[0].warnings == [SUMMARY_TRUNCATED]


def test_a_complete_summary_is_not_marked(tmp_path):
    out = transcribed(tmp_path)
    with FakeLLM(json.dumps(ANSWER)) as llm:
        _, _, report = summarize_and_report(out, llm.url)
    doc = json.loads(out.read_text("summaries/weather.json"))
    assert doc["truncated"] is False and "cut at" not in out.read_text("summaries/weather.md")
    assert report["files"][0]["warnings"] == [] and report["files"][0]["summary"]["truncated"] is False


def test_a_failed_summary_is_printed_once_by_its_step(tmp_path):
    out, ev = transcribed(tmp_path), tmp_path / "events.jsonl"
    with FakeLLM(json.dumps(ANSWER), status=400) as llm:
        s, _, report = summarize_and_report(out, llm.url, events=ev)
    assert report["files"][0]["status"] == "failed"
    assert (s.stdout + s.stderr).count("weather.wav") == 1, s.stdout + s.stderr
    done = [e for e in iter_events(ev) if e.event == "summary_done"]
    assert done[0].status == "failed" and done[0].error.startswith("weather.wav: ")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_are_as_readable_as_the_umask_allows(tmp_path, umask, mode):
    out = transcribed(tmp_path)
    with FakeLLM(json.dumps(ANSWER)) as llm:
        summarize_and_report(out, llm.url, umask=umask)
    for rel in ("report.json", "summaries/weather.md", "summaries/weather.json", layout.run_report("r1")):
        assert stat.S_IMODE((tmp_path / "out" / rel).stat().st_mode) == mode, rel


def test_a_gateway_that_does_not_answer_exits_2_after_recording_the_files_then_a_retry_succeeds(tmp_path):
    """Exit 2 is the "retry me" contract (steps/cli.py, workflows/pipeline.py RETRYABLE): an outage of the gateway
    is worth another attempt. The report of a run whose retries ran out still names each file and why."""
    out = transcribed(tmp_path)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    s, r, report = summarize_and_report(out, dead)
    assert s.returncode == 2, s.stdout + s.stderr
    assert "error: 1 transcript(s) not summarized" in s.stderr and "not retried" not in s.stderr
    (entry,) = report["files"]
    assert entry["status"] == "failed" and entry["error"].startswith("weather.wav: summarization failed: ")
    assert "127.0.0.1" in entry["error"]
    with FakeLLM(json.dumps(ANSWER)) as llm:  # the gateway is back: the retried step succeeds
        s, _, report = summarize_and_report(out, llm.url)
    assert s.returncode == 0 and report["files"][0]["status"] == "succeeded", s.stdout + s.stderr
