"""The report step: every planned input once, merge rules, and what the Argo UI shows (artifacts, one line)."""

from __future__ import annotations

import json

from steps import layout
from steps.cli import main as step_main
from steps.markers import is_processed, text_digest
from steps.records import FileResult, Plan, PlannedFile, ShardResult, SummarizeResult, SummaryRecord
from steps.report import run_step
from steps.runstate import write_plan, write_summarize_result
from steps.store import LocalStore

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
    assert report == json.loads(out.read_text(layout.run_report("r1")))
    assert _root_as_run(json.loads(out.read_text("report.json"))) == report  # the first run: nothing to merge
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


def test_merge_rules_every_input_once_with_why_it_failed(tmp_path):
    """A complete shard, a shard that stopped on a file, a shard that never reported, a failed summary, a missing
    summary and a rejected entry: each input once, failed with its reason; only final outcomes are marked
    processed (succeeded, or a bad file), never transient ones."""
    out = LocalStore(tmp_path / "out")
    names = ["a", "bad", "nosum", "c", "d", "e"]
    files = [PlannedFile(i, f"{n}.wav", n, 100, 10.0, f"100:{i}") for i, n in enumerate(names)]
    rejected = [{"input": "link.wav", "reason": "broken symbolic link", "fingerprint": "0:7"}]
    write_plan(Plan("r1", "in", out.url, files, [[0, 1, 2], [3, 4], [5]], rejected=rejected), out)
    ok = {n: FileResult(f"{n}.wav", n, "succeeded", outputs={"txt": f"transcripts/{n}.txt"}, duration_s=10.0,
                        seconds=1.0) for n in ("a", "nosum", "c")}
    for n in ok:
        out.write_text(f"transcripts/{n}.txt", f"{n} text\n")
    bad = FileResult("bad.wav", "bad", "failed", error="bad.wav: not decodable audio", bad_input=True)
    out.write_text(layout.shard_result("r1", 0), ShardResult("r1", 0, "m", "id", "cpu", [ok["a"], bad, ok["nosum"]]).to_json())
    partial = ShardResult("r1", 1, "m", "id", "cpu", [ok["c"]], complete=False, current="d.wav")
    out.write_text(layout.shard_result("r1", 1), partial.to_json())  # shard 2 never reported
    out.write_text("summaries/a.md", "Summary.\n")
    write_summarize_result(out, "r1", SummarizeResult(url="http://llm/v1", model="m", seconds=1.0, files=[
        SummaryRecord("a.wav", "succeeded", output="summaries/a.md", digest=text_digest("Summary.\n")),
        SummaryRecord("bad.wav", "skipped", error="no transcript"),
        SummaryRecord("c.wav", "failed", error="c.wav: summarization failed: HTTP 500"),
        SummaryRecord("d.wav", "skipped", error="no transcript"), SummaryRecord("e.wav", "skipped", error="no transcript"),
    ]))

    report = json.loads(run_step(out.url, "r1").to_json())
    assert report == json.loads(out.read_text(layout.run_report("r1"))) == _root_as_run(json.loads(out.read_text(layout.REPORT)))
    by_input = {f["input"]: f for f in report["files"]}
    assert list(by_input) == ["link.wav", "a.wav", "bad.wav", "nosum.wav", "c.wav", "d.wav", "e.wav"]
    assert {k: f["status"] for k, f in by_input.items() if f["status"] == "succeeded"} == {"a.wav": "succeeded"}
    assert by_input["a.wav"]["outputs"]["summary"] == "summaries/a.md" and by_input["a.wav"]["error"] is None
    errors = {k: f["error"] for k, f in by_input.items()}
    assert errors["link.wav"] == "link.wav: broken symbolic link" and by_input["link.wav"]["bad_input"]
    assert errors["bad.wav"] == "bad.wav: not decodable audio" and by_input["bad.wav"]["bad_input"]
    assert errors["nosum.wav"] == "nosum.wav: not summarized (the summarize step did not finish)"
    assert errors["c.wav"] == "c.wav: summarization failed: HTTP 500" and by_input["c.wav"]["outputs"]["summary"] is None
    assert errors["d.wav"] == "d.wav: shard 1 stopped while transcribing this file (its pod was killed or crashed: out of memory?)"
    assert errors["e.wav"].startswith("e.wav: shard 2 did not start or never reported")
    assert by_input["e.wav"]["transcribe"]["seconds"] is None and by_input["e.wav"]["duration_s"] == 10.0
    assert by_input["link.wav"]["outputs"] == dict.fromkeys([*layout.TRANSCRIPT_FORMATS, "summary", "summary_json"])
    t = report["totals"]
    assert (t["files"], t["succeeded"], t["failed"], t["shards"]) == (7, 1, 6, 3)
    assert report["model"]["llm_url"] == "http://llm/v1" and report["model"]["whisper"] == "m"
    fingerprints = {f.input: f.fingerprint for f in files} | {"link.wav": "0:7"}
    assert {k for k, fp in fingerprints.items() if is_processed(out, k, fp)} == {"a.wav", "bad.wav", "link.wav"}


def test_an_overwritten_transcript_fails_its_input(tmp_path):
    out = LocalStore(tmp_path / "out")
    write_plan(Plan("r1", "in", out.url, [PlannedFile(0, "a.wav", "a", 100, 10.0, "100:1")], [[0]]), out)
    out.write_text("transcripts/a.txt", "someone else's text\n")
    result = FileResult("a.wav", "a", "succeeded", outputs={"txt": "transcripts/a.txt"},
                        digests={"txt": text_digest("a text\n")})
    out.write_text(layout.shard_result("r1", 0), ShardResult("r1", 0, "m", "id", "cpu", [result]).to_json())
    write_summarize_result(out, "r1", SummarizeResult([SummaryRecord("a.wav", "succeeded", output=None)]))
    [entry] = run_step(out.url, "r1").files
    assert entry.status == "failed" and "overwritten by another run or input" in entry.error
    assert not is_processed(out, "a.wav", "100:1")


def _root_as_run(root: dict) -> dict:
    """The root report.json of a first run, less what merging adds (``this_run``, ``totals.runs``)."""
    assert root.pop("this_run") == {k: root["totals"][k] for k in ("files", "succeeded", "failed")}
    assert root["totals"].pop("runs") == 1
    return root


def _transcribed(out: LocalStore, run_id: str, name: str, text: str) -> None:
    """Run ``run_id`` over the single input ``name`` up to its report: transcripts/x.txt holds ``text``."""
    write_plan(Plan(run_id, "in", out.url, [PlannedFile(0, name, "x", 100, 10.0, f"100:{run_id}")], [[0]]), out)
    out.write_text("transcripts/x.txt", text)
    result = FileResult(name, "x", "succeeded", outputs={"txt": "transcripts/x.txt"}, digests={"txt": text_digest(text)})
    out.write_text(layout.shard_result(run_id, 0), ShardResult(run_id, 0, "m", "id", "cpu", [result]).to_json())
    write_summarize_result(out, run_id, SummarizeResult([SummaryRecord(name, "succeeded", output=None)]))


def _one_file_run(out: LocalStore, run_id: str, name: str, text: str) -> None:
    _transcribed(out, run_id, name, text)
    run_step(out.url, run_id)


def test_a_later_run_writing_the_same_output_name_supersedes_the_earlier_entry(tmp_path):
    """Names are unique within a run, not across runs: x.mp3 in one run and, later, only x.wav both write
    transcripts/x.txt. The root report once kept x.mp3 'succeeded' pointing at x.wav's words."""
    out = LocalStore(tmp_path / "out")
    _one_file_run(out, "r1", "x.mp3", "words of x.mp3\n")
    assert is_processed(out, "x.mp3", "100:r1")
    _one_file_run(out, "r2", "x.wav", "words of x.wav\n")
    root = json.loads(out.read_text(layout.REPORT))
    by_input = {f["input"]: f for f in root["files"]}
    assert by_input["x.wav"]["status"] == "succeeded" and by_input["x.wav"]["outputs"]["txt"] == "transcripts/x.txt"
    mp3 = by_input["x.mp3"]
    assert mp3["status"] == "failed" and mp3["run_id"] == "r1" and mp3["superseded_by"] == ["x.wav"]
    assert mp3["error"].startswith("x.mp3: its outputs now hold the results of x.wav (run r2")
    assert mp3["outputs"]["txt"] is None  # no entry points at another input's words
    assert (root["totals"]["succeeded"], root["totals"]["failed"]) == (1, 1)
    assert not is_processed(out, "x.mp3", "100:r1")  # an --only-new run processes it again
    assert is_processed(out, "x.wav", "100:r2")


def test_two_runs_at_once_on_one_output_never_both_claim_the_same_name(tmp_path):
    """Two runs interleaved on one output: x.mp3's run writes transcripts/x.txt, x.wav's run overwrites it and
    reports first, then x.mp3's run reports. Whichever order, the entry whose words are in the file succeeds and
    the other fails naming why; an earlier failed entry never supersedes a good one."""
    out = LocalStore(tmp_path / "out")
    _transcribed(out, "r-mp3", "x.mp3", "words of x.mp3\n")
    _transcribed(out, "r-wav", "x.wav", "words of x.wav\n")
    run_step(out.url, "r-wav")
    run_step(out.url, "r-mp3")
    by_input = {f["input"]: f for f in json.loads(out.read_text(layout.REPORT))["files"]}
    assert out.read_text("transcripts/x.txt") == "words of x.wav\n"
    assert by_input["x.wav"]["status"] == "succeeded" and by_input["x.wav"]["run_id"] == "r-wav"
    assert by_input["x.mp3"]["status"] == "failed" and "overwritten by another run" in by_input["x.mp3"]["error"]
    assert is_processed(out, "x.wav", "100:r-wav") and not is_processed(out, "x.mp3", "100:r-mp3")
