"""The summarize step: the fan-in that sends each finished transcript to the LLM gateway.

Work avoidance mirrors transcription: a summary is keyed by (transcript text, model, prompt version, generation
settings), so re-runs only summarize new or changed transcripts. Per-file LLM failures are recorded, never
raised: transcripts already made are kept, and the report names what failed. The step has a budget
(``LLMSettings.budget_s``): files not summarized when it runs out fail alone, the others are kept.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict

from steps import layout
from steps.plan import read_plan
from steps.report import SummaryRecord, read_shard_results, transcripts_by_input
from steps.store import ObjectError, open_store
from steps.digests import text_digest
from steps.urls import redact_url
from steps.deadlines import Deadline
from steps.llm import (PROMPT_VERSION, BudgetExhausted, LLMClient, LLMError, LLMSettings, Summary, step_budget,
                       summarize_all)


def summary_cache_key(transcript: str, settings: LLMSettings) -> str:
    blob = json.dumps(
        {
            "prompt": PROMPT_VERSION,
            "model": settings.model,
            "max_output_tokens": settings.max_output_tokens,
            "temperature": settings.temperature,
            "context_tokens": settings.context_tokens,
            "transcript": hashlib.sha256(transcript.encode()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _current_digest(store, key: str) -> str | None:
    try:
        return text_digest(store.read_text(key)) if store.exists(key) else None
    except (ObjectError, UnicodeDecodeError):
        return None


def describe_waits(settings: LLMSettings, pending: int, cached: int) -> str:
    """One line for the step log: what the step is about to wait for, and for how long at most."""
    budget = "none" if settings.budget_s is None else f"{settings.budget_s:g} s"
    return (f"summarize: {pending} transcript(s) to summarize ({cached} already done) with model "
            f"{settings.model!r} at {settings.url}; deadlines: first token {settings.first_token_timeout_s:g} s, "
            f"idle {settings.read_timeout_s:g} s, request {settings.request_timeout_s:g} s "
            f"({settings.max_retries} retries), step budget {budget}")


def _endpoint_down(settings: LLMSettings, pending: dict[str, str],
                   budget: Deadline | None = None) -> dict[str, LLMError] | None:
    """One reachability probe before the batch, so a dead endpoint costs one retry cycle, not one per file.

    Only "no HTTP answer at all" counts: a gateway that does not serve /v1/models may still serve chat.
    """
    if not pending:
        return None
    try:
        with LLMClient(settings, budget=budget) as client:
            client.check()
    except LLMError as e:
        if e.status is None:
            return {name: e for name in pending}
    return None


def run_step(output_url: str, run_id: str, settings: LLMSettings, progress=None) -> list[SummaryRecord]:
    store = open_store(output_url)
    plan = read_plan(store, run_id)
    transcripts = transcripts_by_input(plan, read_shard_results(store, plan))
    records: dict[str, SummaryRecord] = {}
    pending: dict[str, str] = {}
    keys: dict[str, str] = {}
    stems = {f.input: f.stem for f in plan.files}
    for f in plan.files:
        t = transcripts.get(f.input)
        if t is None or t.status != "succeeded":
            records[f.input] = SummaryRecord(input=f.input, status="skipped", error="no transcript")
            continue
        text = store.read_text(t.outputs["txt"]).strip()
        key = summary_cache_key(text, settings)
        keys[f.input] = key
        out = layout.summary(f.stem)
        marker = layout.summary_marker(key)
        cached = json.loads(store.read_text(marker)) if store.exists(marker) else None
        if cached is not None and "text" in cached:
            # Proven, not assumed: the output must hold the marker's text (it may be another input's, or gone).
            digest = text_digest(cached["text"])
            if _current_digest(store, out) != digest:
                store.write_text(out, cached["text"], "text/markdown; charset=utf-8")
            records[f.input] = SummaryRecord(input=f.input, status="succeeded", output=out, cached=True,
                                             metrics=cached.get("metrics"), digest=digest)
        else:
            pending[f.input] = text

    def record(name: str, outcome: Summary | LLMError) -> None:
        """Persist each summary (output, then marker) as soon as it exists."""
        if isinstance(outcome, BudgetExhausted):
            records[name] = SummaryRecord(input=name, status="failed", error=f"{name}: {outcome}")
        elif isinstance(outcome, LLMError):
            records[name] = SummaryRecord(input=name, status="failed", error=f"{name}: summarization failed: {outcome}")
        else:
            out = layout.summary(stems[name])
            text = outcome.text.strip() + "\n"
            store.write_text(out, text, "text/markdown; charset=utf-8")
            metrics = outcome.to_dict()
            metrics.pop("text", None)
            marker = {"input": name, "output": out, "metrics": metrics, "text": text}
            store.write_text(layout.summary_marker(keys[name]), json.dumps(marker), "application/json")
            records[name] = SummaryRecord(input=name, status="succeeded", output=out, metrics=metrics,
                                          digest=text_digest(text))
        if progress:
            progress(records[name])

    t0 = time.perf_counter()
    budget = step_budget(settings)
    if pending:
        print(describe_waits(settings, len(pending), sum(r.cached for r in records.values())), file=sys.stderr,
              flush=True)
    down = _endpoint_down(settings, pending, budget)
    if down:
        for name, error in down.items():
            record(name, error)
    else:
        summarize_all(settings, pending, on_result=record, budget=budget)

    ordered = [records[f.input] for f in plan.files]
    store.write_text(
        layout.summarize_result(run_id),
        json.dumps(
            {"url": redact_url(settings.url), "model": settings.model, "seconds": time.perf_counter() - t0,
             "files": [asdict(r) for r in ordered]},
            indent=1,
        ),
        "application/json",
    )
    return ordered
