"""``retryStrategy``: after a failed attempt, whether to retry, when, and the next attempt's deadline.

Upstream (argo-workflows v4.1.2), followed check by check and message by message:

* ``workflow/controller/operator.go`` ``processNodeRetries``, in this order:
  1. ``backoff`` (any ``backoff:`` object, even ``{}``, which then lacks its required ``duration``):
     ``maxDuration`` is counted from the FIRST attempt's creation; past it: "Max duration limit exceeded".
     The wait is ``duration * factor**(attempts-1)``, capped by ``cap``; if the last attempt's end + wait falls
     after the maxDuration deadline: "Backoff would exceed max duration limit". The controller then waits
     out the backoff - but only when ``limit`` is set and not yet exceeded: without a ``limit`` no backoff is
     waited at all (``retryStrategy.Limit != nil && ...`` guards the requeue). The maxDuration deadline
     becomes the next attempt's execution deadline (``opts.executionDeadline``, the pod's ``ARGO_DEADLINE``:
     ``workflowpod.go`` ``getDeadline``; the executor's ``monitorDeadline`` kills the main container there).
  2. ``retryPolicy`` (``RetryPolicyActual`` in ``pkg/apis/workflow/v1alpha1/workflow_types.go``: the explicit
     one, else ``Always`` when an ``expression`` is set, else ``OnFailure``; so ``retryStrategy: {}`` retries
     failures without limit). A phase the policy does not retry keeps the attempt's own message.
     ``OnTransientError`` retries Failed *or* Error attempts whose message is transient (below).
  3. ``limit``: more attempts than ``limit`` + 1: "No more retries left".
  4. ``expression`` (expr-lang, :mod:`.exprlang`) over ``buildRetryStrategyLocalScope``: ``retries`` and
     ``lastRetry.{exitCode,status,duration,message}``, all strings; ``exitCode`` is "-1" when the attempt has
     none. False: "retryStrategy.expression evaluated to false"; an evaluation error makes the node Error.
* ``util/errors/errors.go`` ``isTransientErr``: what counts as transient in a node's message (Argo wraps the
  message in a plain error, so only the string checks apply) plus ``TRANSIENT_ERROR_PATTERN``, a regexp read
  from the controller's environment, i.e. this runner process's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .exprlang import ExprError, evaluate_bool
from .expressions import go_format
from .model import ERROR, FAILED

__all__ = ["Attempt", "RetryPlan", "plan_retry", "retry_policy", "is_transient", "attempt_parameters",
           "ATTEMPT_KEYS", "EXPRESSION_NAMES"]

#: util/errors/errors.go: isTransientNetworkErr, isTransientEtcdErr, isClientGoRateLimiterWaitErr, isTransientSqbErr.
_TRANSIENT = (
    "unexpected error when reading response body", "stream error when reading response body",
    "Connection closed by foreign host", "net/http: TLS handshake timeout", "i/o timeout", "connection timed out",
    "connection reset by peer", "http2: client connection lost", "http2: server sent GOAWAY and closed the connection",
    "request did not complete within requested timeout", "connect: connection refused", "invalid connection",
    "etcdserver: leader changed", "etcdserver: request timed out", "etcdserver: too many requests",
    "client rate limiter Wait returned an error", "upper: no more rows in",
)

#: Template variables bound per attempt (operator.go executeTemplate: retries and lastRetry.* localParams).
ATTEMPT_KEYS = ("retries", "lastRetry.exitCode", "lastRetry.status", "lastRetry.duration", "lastRetry.message")
#: Names a retryStrategy.expression may use (buildRetryStrategyLocalScope).
EXPRESSION_NAMES = ("retries", "lastRetry")


@dataclass(frozen=True)
class Attempt:
    """The last attempt, as processNodeRetries sees its last child node."""

    number: int  # 1-based
    phase: str
    message: str
    exit_code: int | None
    created: float  # when its node was created (queued): Argo's StartedAt of the attempt's pod node
    finished: float


@dataclass(frozen=True)
class RetryPlan:
    """``retry``: start attempt ``number + 1`` after ``wait`` seconds, with ``deadline`` (absolute, or None).

    Not ``retry``: after ``wait`` seconds (the backoff Argo waits out before it decides) the node ends in the
    attempt's phase with ``message``; ``error`` when the expression could not be evaluated (the node is Error).
    """

    retry: bool
    wait: float = 0.0
    message: str = ""
    deadline: float | None = None
    error: bool = False


def retry_policy(strategy: Mapping[str, Any]) -> str:
    """RetryStrategy.RetryPolicyActual."""
    if strategy.get("retryPolicy"):
        return str(strategy["retryPolicy"])
    return "Always" if strategy.get("expression") else "OnFailure"


def is_transient(message: str, pattern: str | None = None) -> bool:
    """isTransientErr on a node message; ``pattern`` defaults to $TRANSIENT_ERROR_PATTERN (search semantics)."""
    pattern = os.environ.get("TRANSIENT_ERROR_PATTERN") if pattern is None else pattern
    return any(s in message for s in _TRANSIENT) or bool(pattern and re.search(pattern, message))


def _exit_code(code: int | None, missing: str) -> str:
    return missing if code is None else str(code)


def attempt_parameters(number: int, last: Attempt | None) -> dict[str, str]:
    """``{{retries}}`` and ``{{lastRetry.*}}`` for attempt ``number`` (defaults "0", "", "0", "" on the first)."""
    params = {"retries": str(number - 1), "lastRetry.exitCode": "0", "lastRetry.status": "",
              "lastRetry.duration": "0", "lastRetry.message": ""}
    if last is not None:
        params.update({"lastRetry.exitCode": _exit_code(last.exit_code, "0"), "lastRetry.status": last.phase,
                       "lastRetry.duration": go_format(last.finished - last.created),
                       "lastRetry.message": last.message})
    return params


def plan_retry(
    strategy: Mapping[str, Any],
    last: Attempt,
    first_created: float,
    now: float,
    seconds: Callable[[Any, str], float],
) -> RetryPlan:
    """What processNodeRetries decides after ``last`` failed; ``seconds`` parses (and scales) a duration."""
    hold, deadline = 0.0, None
    limit = None if strategy.get("limit") is None else int(strategy["limit"])
    backoff = strategy.get("backoff")
    if backoff is not None:
        if backoff.get("maxDuration"):
            deadline = first_created + seconds(backoff["maxDuration"], "retryStrategy.backoff.maxDuration")
            if now > deadline:
                return RetryPlan(False, message="Max duration limit exceeded")
        wait = seconds(backoff["duration"], "retryStrategy.backoff.duration")
        factor = backoff.get("factor")
        if factor is not None and int(factor) > 0:
            wait *= int(factor) ** (last.number - 1)
        if backoff.get("cap"):
            wait = min(wait, seconds(backoff["cap"], "retryStrategy.backoff.cap"))
        due = last.finished + wait
        if deadline is not None and due > deadline:
            return RetryPlan(False, message="Backoff would exceed max duration limit")
        if now < due and limit is not None and last.number <= limit:
            hold = due - now

    policy = retry_policy(strategy)
    on_failed = policy in ("Always", "OnFailure")
    on_error = policy in ("Always", "OnError")
    if policy == "OnTransientError" and last.phase in (FAILED, ERROR) and is_transient(last.message):
        on_failed = on_error = True
    if (last.phase == FAILED and not on_failed) or (last.phase == ERROR and not on_error):
        return RetryPlan(False, wait=hold, message=last.message)
    if limit is not None and last.number > limit:
        return RetryPlan(False, wait=hold, message="No more retries left")
    if strategy.get("expression"):
        scope = {
            "retries": str(last.number - 1),
            "lastRetry": {"exitCode": _exit_code(last.exit_code, "-1"), "status": last.phase,
                          "duration": go_format(last.finished - last.created), "message": last.message},
        }
        try:
            go_on = evaluate_bool(str(strategy["expression"]), scope)
        except ExprError as exc:
            return RetryPlan(False, wait=hold, message=str(exc), error=True)
        if not go_on:
            return RetryPlan(False, wait=hold, message="retryStrategy.expression evaluated to false")
    return RetryPlan(True, wait=hold, deadline=deadline)
