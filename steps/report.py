"""Report: the fan-in. Merge the plan, every shard's results and the summaries into ``report.json``.

Every planned input appears exactly once, whatever happened to it: a shard that never reported (its pod died
after all retries) still shows up, with its files failed and a message saying so (``transcripts_by_input``).
Every output is read back: a file whose outputs no longer hold what this run wrote fails, so ``succeeded``
always means "these files are this input's".
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from steps import __version__, layout
from steps.markers import holds, mark_processed
from steps.records import (FileResult, Plan, PlannedFile, ReportEntry, RunReport, ShardResult, Status, SummaryRecord,
                           summary_warnings, transcripts_by_input)
from steps.runstate import read_plan, read_shard_results, read_summarize_result, write_report
from steps.store import Store, open_store

_NO_OUTPUTS = (*layout.TRANSCRIPT_FORMATS, "summary", "summary_json")


def overwritten_outputs(store: Store, checks: list[tuple[str, str | None, str | None]]) -> set[str]:
    """Inputs whose outputs no longer hold what this run wrote (another run or input wrote the same name).

    ``checks``: (input, output key, digest); without a key or a digest there is nothing to check. Read back in
    parallel: on S3 each check is one GET.
    """
    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = list(pool.map(lambda c: not c[1] or not c[2] or holds(store, c[1], c[2]), checks))
    return {name for (name, _, _), good in zip(checks, ok, strict=True) if not good}


def _entry(f: PlannedFile, t: FileResult | None, s: SummaryRecord | None, overwritten: bool) -> ReportEntry:
    """One planned input's line: failed if any step failed it or its outputs are no longer its own."""
    errors = []
    if overwritten:
        errors.append(f"{f.input}: its outputs were overwritten by another run or input after this run wrote "
                      "them; run again to restore them")
    if t is None:
        errors.append(f"{f.input}: no transcription result")
    elif t.status != Status.SUCCEEDED:
        errors.append(t.error or f"{f.input}: transcription failed")
    if t is not None and t.status == Status.SUCCEEDED:
        if s is None:
            errors.append(f"{f.input}: not summarized (the summarize step did not finish)")
        elif s.status == Status.FAILED:
            errors.append(s.error or f"{f.input}: summarization failed")
    outputs: dict[str, str | None] = {fmt: None for fmt in layout.TRANSCRIPT_FORMATS}
    if t is not None:
        outputs.update(t.outputs)
    done = s is not None and s.status == Status.SUCCEEDED
    outputs["summary"] = s.output if done else None
    outputs["summary_json"] = s.json_output if done else None
    warnings = [*(t.warnings if t is not None else []), *(summary_warnings(s.metrics) if done else [])]
    return ReportEntry(
        input=f.input,
        status=Status.FAILED if errors else Status.SUCCEEDED,
        error="; ".join(errors) if errors else None,
        outputs=outputs,
        duration_s=t.duration_s if t else f.duration_s,
        size_bytes=f.size,
        language=t.language if t else None,
        transcribe=None if t is None else {"seconds": t.seconds, "rtf": t.rtf, "cached": t.cached,
                                           "speech_s": t.speech_s, "sound_s": t.sound_s, "sha256": t.sha256, "bad_input": t.bad_input},
        summary=None if s is None else {"cached": s.cached, **(s.metrics or {})},
        bad_input=bool(t and t.bad_input),
        warnings=warnings,
    )


def _totals(plan: Plan, files: list[ReportEntry], shard_results: list[ShardResult]) -> dict[str, Any]:
    done = [f for f in files if f.transcribe and not f.transcribe["cached"] and f.transcribe["seconds"]]
    audio_s = sum(f.duration_s or 0 for f in done)
    busy_s = sum(f.transcribe["seconds"] for f in done)
    ttfts = [f.summary["ttft_s"] for f in files if f.summary and not f.summary["cached"] and f.summary.get("ttft_s")]
    return {
        "files": len(files),
        "succeeded": sum(f.status == Status.SUCCEEDED for f in files),
        "failed": sum(f.status == Status.FAILED for f in files),
        "transcripts_cached": sum(bool(f.transcribe and f.transcribe["cached"]) for f in files),
        "files_with_warnings": sum(bool(f.warnings) for f in files),
        "summaries_cached": sum(bool(f.summary and f.summary["cached"]) for f in files),
        "audio_seconds": sum(f.duration_s or 0 for f in files),
        "shards": len(plan.shards),
        "already_processed": plan.already_processed,
        "transcribe_rtf": busy_s / audio_s if audio_s else None,
        "model_load_s": [r.model_load_s for r in shard_results],
        "ttft_mean_s": statistics.fmean(ttfts) if ttfts else None,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        **_summary_quality([f.summary for f in files if f.summary]),
    }


def _summary_quality(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of the per-file summary quality fields (``steps/llm/document.py``): which answer format the
    server accepted, how many summaries are low-confidence, and how many stated values were not grounded."""
    formats: dict[str, int] = {}
    for s in summaries:
        if s.get("format"):
            formats[s["format"]] = formats.get(s["format"], 0) + 1
    return {
        "summary_formats": formats,
        "summaries_low_confidence": sum(s.get("confidence") == "low" for s in summaries),
        "summaries_retried": sum(bool(s.get("retried")) for s in summaries),
        "summaries_truncated": sum(bool(s.get("truncated")) for s in summaries),
        "summary_facts_checked": sum(s.get("facts_checked") or 0 for s in summaries),
        "summary_ungrounded": sum(s.get("ungrounded") or 0 for s in summaries),
        "summary_unsupported": sum(s.get("unsupported") or 0 for s in summaries),
        "summary_instructions": sum(s.get("instructions") or 0 for s in summaries),
    }


def build_report(store: Store, plan: Plan) -> RunReport:
    shard_outcomes = read_shard_results(store, plan)
    transcripts = transcripts_by_input(plan, shard_outcomes)
    summarized = read_summarize_result(store, plan.run_id)
    summaries = {r.input: r for r in summarized.files}

    checks = [(f.input, t.outputs.get(fmt), t.digests.get(fmt)) for f in plan.files
              if (t := transcripts.get(f.input)) is not None and t.status == Status.SUCCEEDED for fmt in t.digests]
    checks += [(name, s.output, s.digest) for name, s in summaries.items() if s.status == Status.SUCCEEDED]
    checks += [(name, s.json_output, s.json_digest) for name, s in summaries.items() if s.status == Status.SUCCEEDED]
    overwritten = overwritten_outputs(store, checks)

    files = [ReportEntry(input=r["input"], status=Status.FAILED, error=f"{r['input']}: {r['reason']}",
                         outputs=dict.fromkeys(_NO_OUTPUTS), duration_s=None, size_bytes=None, language=None,
                         transcribe=None, summary=None, bad_input=True) for r in plan.rejected]
    files += [_entry(f, transcripts.get(f.input), summaries.get(f.input), f.input in overwritten) for f in plan.files]
    shard_results = [r for r in shard_outcomes.values() if r is not None]
    first = shard_results[0] if shard_results else None
    llm = {"llm_url": summarized.url, "llm_model": summarized.model}
    return RunReport(
        kubescribe_version=__version__,
        run_id=plan.run_id,
        input=plan.input,
        output=plan.output,
        created=plan.created,
        finished=time.time(),
        model={
            "whisper": first.model if first else None,
            "whisper_checkpoint_sha256": first.model_id if first else None,
            "device": first.device if first else None,
            **{k: v for k, v in llm.items() if v is not None},
        },
        totals=_totals(plan, files, shard_results),
        files=files,
        ignored=plan.ignored,
    )


def run_step(output_url: str, run_id: str) -> RunReport:
    store = open_store(output_url)
    plan = read_plan(store, run_id)
    report = build_report(store, plan)
    write_report(store, report)
    record_final_outcomes(store, plan, report)
    return report


def record_final_outcomes(store: Store, plan: Plan, report: RunReport) -> None:
    """Mark inputs that reached a final outcome as processed, so a scheduled run with only-new skips them without
    downloading them again: those that succeeded, and those that failed because the file itself is bad (a
    nightly schedule would otherwise fail on the same corrupt upload forever). Re-uploading a file changes its
    fingerprint, so it is processed again. Transient failures (LLM, storage, a lost pod) are not recorded and
    are retried.
    """
    fingerprints = {f.input: f.fingerprint for f in plan.files}
    fingerprints |= {r["input"]: r.get("fingerprint", "") for r in plan.rejected}
    for f in report.files:
        final = f.status == Status.SUCCEEDED or (f.status == Status.FAILED and f.bad_input)
        if final and fingerprints.get(f.input):
            mark_processed(store, f.input, fingerprint=fingerprints[f.input], run_id=plan.run_id, status=f.status,
                           error=f.error, outputs=[k for k in f.outputs.values() if k])
