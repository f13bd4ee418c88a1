"""kubescribe steps: the code that runs inside each workflow pod (plan, transcribe, summarize, report).

Nothing here imports hera: the same functions run in a cluster pod, under the local runner, and in tests.
The four steps are siblings that never import one another; what one step hands the next is a record
(``records``) stored in the run's state (``runstate``), and what proves work is done is a marker (``markers``).
``cli`` is the entrypoint that dispatches to them.
"""

__version__ = "0.1.0"
