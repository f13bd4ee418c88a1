"""Local execution of kubescribe's compiled Argo Workflow.

Hera has no local runner, so :class:`LocalRunner` executes the exact dict that
``Workflow.to_dict()`` produces (the one submitted to a cluster) with local processes,
in the spirit of kfp's local runner: a DAG walker plus a pluggable task handler.

* ``runner`` - :class:`LocalRunner` and the run loop; ``dag`` - the DAG walker (depends, fan-out, aggregation,
  DAG phases); ``scheduler`` - the queue, admission, attempts, retries and the timers; ``nodes`` - node
  bookkeeping and events; ``templates`` - template resolution (inputs, leaf bodies, TaskSpecs, outputs);
  ``handler`` - how one attempt runs;
* ``model`` - data types and errors; ``validate`` - up-front allow-lists; ``expressions`` - ``{{...}}``,
  ``depends``, ``when``, parameter values as strings; ``exprlang`` - expr-lang (``retryStrategy.expression``);
  ``durations`` - Argo/Go durations; ``resources`` - extended-resource admission; ``retries`` - whether, when
  and how long a failed attempt is retried; ``outputs`` - output values (trimming, aggregation, skipped
  defaults); ``paths`` - private per-attempt output paths; ``artifacts`` - the local artifact repository;
* ``shutdown`` - signals, and children that die with the runner; ``llm_server`` - the local llama.cpp server.

Behaviour follows argo-workflows v4.1.2; each module cites the upstream code it mirrors, and
``tests/test_argo_conformance.py`` pins it.

No hera import here: the runner works on plain dicts.
"""

from .handler import SubprocessHandler, TaskHandler
from .model import (
    Event,
    LocalRunnerError,
    NodeStatus,
    RunResult,
    TaskOutcome,
    TaskSpec,
    UnsupportedFeature,
    WorkflowError,
)
from .runner import LocalRunner

__all__ = [
    "LocalRunner",
    "RunResult",
    "NodeStatus",
    "Event",
    "UnsupportedFeature",
    "WorkflowError",
    "LocalRunnerError",
    "TaskHandler",
    "SubprocessHandler",
    "TaskSpec",
    "TaskOutcome",
]
