"""Many transcripts at once, under one budget: what the summarize step calls.

At most ``settings.concurrency`` transcripts are in flight; one failure does not stop the others, and each
result is handed to the caller as it arrives so the step can persist it at once (a step killed half-way keeps
what it finished). The step's budget (``steps/deadlines.py``) caps every request, and items it leaves undone
fail alone with :class:`BudgetExhausted`.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Mapping

from steps.deadlines import Deadline
from steps.llm.client import LLMClient
from steps.llm.mapreduce import Summary, summarize
from steps.llm.settings import LLMSettings
from steps.llm.wire import BudgetExhausted, LLMError, budget_message

log = logging.getLogger(__name__)


def step_budget(settings: LLMSettings) -> Deadline | None:
    """The summarize step's budget, starting now (``None`` when ``settings.budget_s`` is ``None``)."""
    if settings.budget_s is None:
        return None
    return Deadline(settings.budget_s, f"summarize budget of {settings.budget_s:g} s", budget=True)


def summarize_all(
    settings: LLMSettings,
    items: Mapping[str, str],
    on_result: Callable[[str, Summary | LLMError], None] | None = None,
    budget: Deadline | None = None,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Summary | LLMError]:
    """Summarize many transcripts; at most ``settings.concurrency`` transcripts in flight.

    Returns one entry per key, in input order. A failing item maps to its
    :class:`LLMError` (unexpected exceptions are wrapped) and does not stop
    the others. ``on_result`` is called on the calling thread as each item
    finishes, so callers can persist results as they come (a step killed
    half-way then keeps what it finished). ``budget`` (default: a fresh
    :func:`step_budget`) bounds the whole batch: items still running when it
    ends, and items not started yet, map to :class:`BudgetExhausted`.
    ``on_start(key)`` is called (in a worker thread) as an item's first request is about to be made.
    Failures are logged at INFO only: the caller records each one and says it once.
    """
    keys = list(items)
    results: dict[str, Summary | LLMError] = {}
    if not keys:
        return results
    budget = budget or step_budget(settings)
    with LLMClient(settings, budget=budget) as client:

        def one(key: str) -> Summary | LLMError:
            if budget is not None and budget.expired():
                log.info("summary of %s not started: %s", key, budget.label + " exhausted")
                return BudgetExhausted(budget_message(budget), url=client.base_url)
            try:
                if on_start is not None:
                    on_start(key)
                return summarize(client, items[key])
            except LLMError as exc:
                log.info("summary of %s failed: %s", key, exc)
                return exc
            except Exception as exc:  # keep the batch going; surface as LLMError
                log.debug("summary of %s failed unexpectedly", key, exc_info=True)
                err = LLMError(f"unexpected {type(exc).__name__}: {exc}", url=settings.url)
                err.__cause__ = exc
                return err

        workers = min(settings.concurrency, len(keys))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-item") as pool:
            futures = {pool.submit(one, key): key for key in keys}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                if on_result is not None:
                    on_result(futures[future], results[futures[future]])
    return {key: results[key] for key in keys}
