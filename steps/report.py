"""Report: the fan-in. Merge the plan, every shard's results and the summaries into ``report.json``.

Every planned input appears exactly once, whatever happened to it: a shard that never reported (its pod died
after all retries) still shows up, with its files failed and a message saying so.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from steps import __version__, layout
from steps.plan import Plan, read_plan
from steps.store import ObjectError, Store, open_store
from steps.digests import text_digest
from steps.transcribe import FileResult, ShardResult


@dataclass
class SummaryRecord:
    """What the summarize step records per input (see steps/summarize.py ``run_step``)."""

    input: str
    status: str  # "succeeded" | "failed" | "skipped"
    error: str | None = None
    output: str | None = None
    cached: bool = False
    metrics: dict[str, Any] | None = None
    digest: str | None = None  # sha256 of the summary as written


def read_shard_results(store: Store, plan: Plan) -> dict[int, ShardResult | None]:
    results: dict[int, ShardResult | None] = {}
    for i in range(len(plan.shards)):
        key = layout.shard_result(plan.run_id, i)
        results[i] = ShardResult.from_json(store.read_text(key)) if store.exists(key) else None
    return results


def transcripts_by_input(plan: Plan, shard_results: dict[int, ShardResult | None]) -> dict[str, FileResult]:
    """Each planned input's transcription result; inputs of shards that never reported are failed."""
    out: dict[str, FileResult] = {}
    for shard, result in shard_results.items():
        if result is not None:
            out.update({r.input: r for r in result.files})
        if result is not None and result.complete:
            continue
        for f in plan.shard_files(shard):
            if f.input in out:
                continue
            if result is None:
                why = f"shard {shard} did not start or never reported (see the transcribe step's logs)"
            elif result.current == f.input:
                why = f"shard {shard} stopped while transcribing this file (its pod was killed or crashed: out of memory?)"
            else:
                why = f"shard {shard} stopped before reaching this file (while on {result.current})"
            out[f.input] = FileResult(input=f.input, stem=f.stem, status="failed", duration_s=f.duration_s,
                                      error=f"{f.input}: {why}")
    return out


def _still_ours(store: Store, key: str | None, digest: str | None) -> bool:
    """True when the output at ``key`` is the text this run recorded writing there (no digest: nothing to check)."""
    if not key or not digest:
        return True
    with contextlib.suppress(ObjectError, UnicodeDecodeError):
        return text_digest(store.read_text(key)) == digest
    return False


def overwritten_outputs(store: Store, checks: list[tuple[str, str | None, str | None]]) -> set[str]:
    """Inputs whose outputs no longer hold what this run wrote (another run or input wrote the same name).

    ``checks``: (input, output key, digest). Read back in parallel: on S3 each check is one GET.
    """
    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = list(pool.map(lambda c: _still_ours(store, c[1], c[2]), checks))
    return {name for (name, _, _), good in zip(checks, ok, strict=True) if not good}


def build_report(store: Store, plan: Plan) -> dict[str, Any]:
    run_id = plan.run_id
    shard_outcomes = read_shard_results(store, plan)
    transcripts = transcripts_by_input(plan, shard_outcomes)
    summarize_key = layout.summarize_result(run_id)
    summarize_result = json.loads(store.read_text(summarize_key)) if store.exists(summarize_key) else {"files": []}
    summaries = {r["input"]: SummaryRecord(**r) for r in summarize_result["files"]}
    summarize_meta = {k: v for k, v in summarize_result.items() if k != "files"}

    checks = [(f.input, t.outputs.get(fmt), t.digests.get(fmt)) for f in plan.files
              if (t := transcripts.get(f.input)) is not None and t.status == "succeeded" for fmt in t.digests]
    checks += [(name, s.output, s.digest) for name, s in summaries.items() if s.status == "succeeded"]
    overwritten = overwritten_outputs(store, checks)

    files = []
    for r in plan.rejected:
        files.append({"input": r["input"], "status": "failed", "error": f"{r['input']}: {r['reason']}",
                      "outputs": {fmt: None for fmt in (*layout.TRANSCRIPT_FORMATS, "summary")}, "duration_s": None,
                      "size_bytes": None, "language": None, "transcribe": None, "summary": None, "bad_input": True})
    for f in plan.files:
        t = transcripts.get(f.input)
        s = summaries.get(f.input)
        errors = []
        if f.input in overwritten:
            errors.append(f"{f.input}: its outputs were overwritten by another run or input after this run wrote "
                          "them; run again to restore them")
        if t is None:
            errors.append(f"{f.input}: no transcription result")
        elif t.status != "succeeded":
            errors.append(t.error or f"{f.input}: transcription failed")
        if t is not None and t.status == "succeeded":
            if s is None:
                errors.append(f"{f.input}: not summarized (the summarize step did not finish)")
            elif s.status == "failed":
                errors.append(s.error or f"{f.input}: summarization failed")
        outputs: dict[str, str | None] = {fmt: None for fmt in layout.TRANSCRIPT_FORMATS}
        if t is not None:
            outputs.update(t.outputs)
        outputs["summary"] = s.output if s is not None and s.status == "succeeded" else None
        files.append(
            {
                "input": f.input,
                "status": "failed" if errors else "succeeded",
                "error": "; ".join(errors) if errors else None,
                "outputs": outputs,
                "duration_s": t.duration_s if t else f.duration_s,
                "size_bytes": f.size,
                "language": t.language if t else None,
                "transcribe": None
                if t is None
                else {"seconds": t.seconds, "rtf": t.rtf, "cached": t.cached, "speech_s": t.speech_s, "sha256": t.sha256,
                      "bad_input": t.bad_input},
                "summary": None if s is None else {"cached": s.cached, **(s.metrics or {})},
                "bad_input": bool(t and t.bad_input),
            }
        )

    shard_results = [r for r in shard_outcomes.values() if r is not None]
    done = [f for f in files if f["transcribe"] and not f["transcribe"]["cached"] and f["transcribe"]["seconds"]]
    audio_s = sum(f["duration_s"] or 0 for f in done)
    busy_s = sum(f["transcribe"]["seconds"] for f in done)
    ttfts = [f["summary"]["ttft_s"] for f in files if f["summary"] and not f["summary"]["cached"] and f["summary"].get("ttft_s")]
    return {
        "kubescribe_version": __version__,
        "run_id": run_id,
        "input": plan.input,
        "output": plan.output,
        "created": plan.created,
        "finished": time.time(),
        "model": {
            "whisper": shard_results[0].model if shard_results else None,
            "whisper_checkpoint_sha256": shard_results[0].model_id if shard_results else None,
            "device": shard_results[0].device if shard_results else None,
            **{f"llm_{k}": v for k, v in summarize_meta.items() if k in ("url", "model")},
        },
        "totals": {
            "files": len(files),
            "succeeded": sum(f["status"] == "succeeded" for f in files),
            "failed": sum(f["status"] == "failed" for f in files),
            "transcripts_cached": sum(bool(f["transcribe"] and f["transcribe"]["cached"]) for f in files),
            "summaries_cached": sum(bool(f["summary"] and f["summary"]["cached"]) for f in files),
            "audio_seconds": sum(f["duration_s"] or 0 for f in files),
            "shards": len(plan.shards),
            "already_processed": plan.already_processed,
            "transcribe_rtf": busy_s / audio_s if audio_s else None,
            "model_load_s": [r.model_load_s for r in shard_results],
            "ttft_mean_s": statistics.fmean(ttfts) if ttfts else None,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        },
        "files": files,
        "ignored": plan.ignored,
    }


def run_step(output_url: str, run_id: str) -> dict[str, Any]:
    store = open_store(output_url)
    plan = read_plan(store, run_id)
    report = build_report(store, plan)
    text = json.dumps(report, indent=2) + "\n"
    # The run's own copy survives later runs (a CronWorkflow writes report.json every time).
    store.write_text(layout.run_report(run_id), text, "application/json")
    store.write_text(layout.REPORT, text, "application/json")
    mark_processed(store, plan, report)
    return report


def mark_processed(store: Store, plan: Plan, report: dict[str, Any]) -> None:
    """Record inputs that reached a final outcome, so a scheduled run with only-new skips them without downloading
    them again: those that succeeded, and those that failed because the file itself is bad (a nightly schedule
    would otherwise fail on the same corrupt upload forever). Re-uploading a file changes its fingerprint, so it
    is processed again. Transient failures (LLM, storage, a lost pod) are not recorded and are retried.
    """
    fingerprints = {f.input: f.fingerprint for f in plan.files}
    fingerprints |= {r["input"]: r.get("fingerprint", "") for r in plan.rejected}
    for f in report["files"]:
        bad_input = f["status"] == "failed" and f["bad_input"]
        if (f["status"] == "succeeded" or bad_input) and fingerprints.get(f["input"]):
            entry = {"fingerprint": fingerprints[f["input"]], "run_id": plan.run_id, "status": f["status"],
                     "error": f["error"], "outputs": [k for k in f["outputs"].values() if k]}
            store.write_text(layout.processed(f["input"]), json.dumps(entry), "application/json")
