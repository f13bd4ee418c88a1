"""The summarize step: the fan-in that sends each finished transcript to the LLM gateway.

Each summary is written twice: ``summaries/<name>.json``, the structured document (README, "Summary JSON":
fields, answer format, confidence, grounding flags), and ``summaries/<name>.md``, its rendering. Work avoidance
mirrors transcription (``steps/markers.py``): a summary is keyed by (transcript text, model, prompt version,
generation settings), so re-runs only summarize new or changed transcripts, and a cached summary is proven, not
assumed: the marker holds both texts and both outputs are rewritten from it unless they hold exactly them.
Per-file LLM failures are recorded, never raised: transcripts already made are kept, and the report names what
failed. An endpoint that does not answer at all is the exception: the step records every pending file failed,
then raises :class:`EndpointUnreachable` (exit 2, which the workflow retries). The step has a budget
(``LLMSettings.budget_s``): files not summarized when it runs out fail alone, the others are kept.
A transcript whose transcription warned that the speech may not be English (an English-only model on another
language) is not sent to the model: it gets a low-confidence summary that says why.
"""

from __future__ import annotations

import json
import sys
import time

from steps import layout
from steps.deadlines import Deadline
from steps.events import emit
from steps.llm import (PROMPT_VERSION, BudgetExhausted, EndpointUnreachable, LLMClient, LLMError, LLMSettings,
                       Summary, not_summarized, step_budget, summarize_all)
from steps.markers import read_marker, summary_key, write_marker, write_outputs
from steps.records import Status, SummarizeResult, SummaryRecord, summary_warnings, transcripts_by_input
from steps.runstate import read_plan, read_shard_results, write_summarize_result
from steps.store import open_store
from steps.urls import redact_url

_MARKDOWN = "text/markdown; charset=utf-8"
_JSON = "application/json"


def _done(r: SummaryRecord) -> None:
    status = "failed" if r.status == Status.FAILED else "cached" if r.cached else "succeeded"
    emit("summarize", "summary_done", input=r.input, status=status, error=r.error, warnings=summary_warnings(r.metrics))


def _outputs(stem: str, markdown: str, document: str) -> dict[str, tuple[str, str, str]]:
    return {"md": (layout.summary(stem), markdown, _MARKDOWN), "json": (layout.summary_json(stem), document, _JSON)}


def _record(name: str, stem: str, digests: dict[str, str], metrics: dict | None, cached: bool) -> SummaryRecord:
    return SummaryRecord(input=name, status=Status.SUCCEEDED, output=layout.summary(stem), cached=cached,
                         metrics=metrics, digest=digests["md"], json_output=layout.summary_json(stem),
                         json_digest=digests["json"])


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
    refused: dict[str, tuple[str, str]] = {}  # transcripts not to summarize: (text, the warning why)
    keys: dict[str, str] = {}
    stems = {f.input: f.stem for f in plan.files}
    for f in plan.files:
        t = transcripts.get(f.input)
        if t is None or t.status != Status.SUCCEEDED:
            records[f.input] = SummaryRecord(input=f.input, status=Status.SKIPPED, error="no transcript")
            continue
        text = store.read_text(t.outputs["txt"]).strip()
        why = t.unreliable  # the transcribe step's verdict: e.g. an English-only model on another language
        keys[f.input] = summary_key(text, settings, PROMPT_VERSION, refused=why is not None)
        marker = read_marker(store, layout.summary_marker(keys[f.input]), proof="json")
        if marker is not None:
            digests = write_outputs(store, _outputs(f.stem, marker["text"], marker["json"]), keep_identical=True)
            records[f.input] = _record(f.input, f.stem, digests, marker.get("metrics"), cached=True)
            _done(records[f.input])
        elif why is not None:
            refused[f.input] = (text, why)
        else:
            pending[f.input] = text

    def record(name: str, outcome: Summary | LLMError) -> None:
        """Persist each summary (output, then marker) as soon as it exists."""
        if isinstance(outcome, BudgetExhausted):
            records[name] = SummaryRecord(input=name, status=Status.FAILED, error=f"{name}: {outcome}")
        elif isinstance(outcome, LLMError):
            records[name] = SummaryRecord(input=name, status=Status.FAILED,
                                          error=f"{name}: summarization failed: {outcome}")
        else:
            text = outcome.text.strip() + "\n"
            doc = json.dumps(outcome.document, indent=1, ensure_ascii=False) + "\n"
            digests = write_outputs(store, _outputs(stems[name], text, doc))
            metrics = outcome.to_dict()
            metrics.pop("text", None)
            metrics.pop("document", None)
            write_marker(store, layout.summary_marker(keys[name]),
                         {"input": name, "outputs": [layout.summary(stems[name]), layout.summary_json(stems[name])],
                          "metrics": metrics, "text": text, "json": doc})
            records[name] = _record(name, stems[name], digests, metrics, cached=False)
        _done(records[name])
        if progress:
            progress(records[name])

    for name, (text, why) in refused.items():
        record(name, not_summarized(text, why))
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
        summarize_all(settings, pending, on_result=record, budget=budget,
                      on_start=lambda name: emit("summarize", "summary_started", input=name))

    ordered = [records[f.input] for f in plan.files]
    write_summarize_result(store, run_id, SummarizeResult(files=ordered, url=redact_url(settings.url),
                                                          model=settings.model, seconds=time.perf_counter() - t0))
    if down:  # recorded above, so the report names them even when no retry follows
        error = next(iter(down.values()))
        raise EndpointUnreachable(f"{len(down)} transcript(s) not summarized: {error}", url=error.url)
    return ordered
