"""kubescribe steps: the code that runs inside each workflow pod (plan, transcribe, summarize, report).

Nothing here imports hera: the same functions run in a cluster pod, under the local runner, and in tests.
"""

__version__ = "0.1.0"
