"""LLM summarization of transcripts through an OpenAI-compatible endpoint (the llm-d gateway in a cluster,
llama.cpp's ``llama-server`` locally, see ``workflows/local/llm_server.py``).

One job per module:

* ``prompts.py``: the prompt texts (the transcript in a delimited block), their version (a cache-key input) and
  token estimates;
* ``settings.py``: :class:`LLMSettings`, how to reach the model and how hard to push it;
* ``wire.py``: the OpenAI wire format as read here: errors, HTTP statuses, SSE and plain completions;
* ``client.py``: :class:`LLMClient`, HTTP with retries and a deadline on every wait;
* ``schema.py``: the structured summary, its per-field limits, its JSON schema and validation;
* ``checks.py``: degenerate answers (loops, echoes, wrong language); ``grounding.py``: values and statements
  the transcript does not support;
* ``structured.py``: one request through the answer-format chain (JSON schema, JSON mode, prose), checked,
  retried once with a stricter request;
* ``document.py``: the summary document (``summaries/<name>.json``) and map-reduce merging of structured parts;
  ``highlights.py``: the sentences it quotes verbatim from the transcript (picked by a fixed rule, no model);
  ``render.py``: its markdown, escaped, without what grounding flagged;
* ``mapreduce.py``: :func:`summarize`, one transcript, split and reduced when it exceeds the context;
* ``batch.py``: :func:`summarize_all`, many transcripts under the summarize step's budget.

The names below are the package's interface; the summarize step and the tests import them from here.
This package runs inside pods: it must not import hera.
"""

from steps.llm.batch import step_budget, summarize_all
from steps.llm.client import LLMClient
from steps.llm.document import SCHEMA_VERSION
from steps.llm.mapreduce import Summary, not_summarized, summarize
from steps.llm.render import to_markdown
from steps.llm.prompts import NO_SPEECH_TEXT, PROMPT_VERSION, build_messages
from steps.llm.settings import LLMSettings
from steps.llm.wire import BudgetExhausted, ChatResult, EndpointUnreachable, LLMError

__all__ = [
    "PROMPT_VERSION",
    "SCHEMA_VERSION",
    "NO_SPEECH_TEXT",
    "LLMError",
    "BudgetExhausted",
    "EndpointUnreachable",
    "LLMSettings",
    "ChatResult",
    "Summary",
    "LLMClient",
    "build_messages",
    "step_budget",
    "summarize",
    "not_summarized",
    "summarize_all",
    "to_markdown",
]
