"""The report step: every planned input once, merge rules, and what the Argo UI shows (artifacts, one line)."""

from __future__ import annotations

import json

from steps import layout
from steps.cli import main as step_main
from steps.plan import Plan, PlannedFile, write_plan
from steps.store import LocalStore
from steps.transcribe import FileResult, ShardResult

HOSTILE = "a|b [click](http://evil.example) <img src=x>\x1b[2J.wav"


def _store_with_results(tmp_path) -> LocalStore:
    out = LocalStore(tmp_path / "out")
    files = [PlannedFile(0, "ok.wav", "ok", 100, 60.0, "100:1"), PlannedFile(1, HOSTILE, "hostile", 100, 30.0, "100:2")]
    plan = Plan("r1", str(tmp_path / "in"), out.url, files, [[0, 1]],
                ignored=[{"input": "notes.txt", "reason": "not an audio file name"}])
    write_plan(plan, out)
    out.write_text("transcripts/ok.txt", "hello\n")
    results = [FileResult("ok.wav", "ok", "succeeded", outputs={"txt": "transcripts/ok.txt"}, duration_s=60.0),
               FileResult(HOSTILE, "hostile", "failed", error=f"{HOSTILE}: not decodable audio", bad_input=True)]
    out.write_text(layout.shard_result("r1", 0), ShardResult("r1", 0, "tiny.en", "id", "cpu", results).to_json())
    out.write_text(layout.summarize_result("r1"), json.dumps({"files": [
        {"input": "ok.wav", "status": "succeeded", "output": None, "metrics": {"ttft_s": 0.5}},
        {"input": HOSTILE, "status": "skipped", "error": "no transcript"}]}))
    return out


def test_report_writes_the_argo_artifacts_and_one_line_result(tmp_path):
    out = _store_with_results(tmp_path)
    artifacts = tmp_path / "outputs"
    code = step_main(["report", "--output", out.url, "--run-id", "r1", "--artifacts-dir", str(artifacts)])
    assert code == 1  # a file failed
    report = json.loads((artifacts / "report.json").read_text())
    assert report == json.loads(out.read_text("report.json"))
    assert [f["input"] for f in report["files"]] == ["ok.wav", HOSTILE]
    assert (artifacts / "result.txt").read_text() == "1/2 succeeded, 1 failed, 1.0 min of audio"
    md = (artifacts / "summary.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3 and all(row.count(" | ") == 5 for row in rows)  # a name cannot add table cells
    assert "\x1b" not in md and "](http" not in md
    assert md.count("<img") == md.count("\\<img") == 2  # only ever escaped: literal text, not markup
    assert "/out/transcripts/ok.txt | - |" in md  # full location of each output
    assert "notes.txt: not an audio file name" in md


def test_step_log_lines_show_escapes_instead_of_executing_them(tmp_path, capsys):
    out = _store_with_results(tmp_path)
    step_main(["report", "--output", out.url, "--run-id", "r1"])
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\\x1b[2J.wav: not decodable audio" in printed
