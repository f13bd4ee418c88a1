"""Local execution of kubescribe's compiled Argo Workflow.

Hera has no local runner, so :class:`LocalRunner` executes the exact dict that
``Workflow.to_dict()`` produces (the one submitted to a cluster) with local processes,
in the spirit of kfp's local runner: a DAG walker plus a pluggable task handler.

* ``model`` - data types and errors; ``expressions`` - ``{{...}}``, ``depends``, ``when``;
  ``validate`` - up-front allow-lists; ``resources`` - extended-resource admission;
  ``handler`` - how one attempt runs; ``runner`` - the DAG walker; ``shutdown`` - signals, and
  children that die with the runner.

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
