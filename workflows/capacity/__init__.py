"""Capacity planning for kubescribe: a discrete-event model of the pipeline on a GPU cluster (no cluster needed).

``model`` (GPU types, MIG tables, configurations), ``calibration`` (every input with its source), ``cluster``
(devices and placement), ``kueue`` (admission), ``sim`` (the event loop), ``llm`` (the summarize stage's LLM pool
and routing), ``backlog`` and ``pipeline`` (a kubescribe run end to end), ``scenarios`` (the paper's three
setups), ``recommend`` (candidates, the choice, chart values), ``plot`` (timeline PNG), ``cli``
(``kubescribe capacity``). Defaults live in ``defaults``. Nothing here imports hera or talks to a cluster.
"""
