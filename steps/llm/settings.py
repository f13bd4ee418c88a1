"""How to reach the model and how hard to push it: one frozen value, checked when it is made.

The generation defaults come from ``steps/defaults.py`` and the deadlines from ``steps/deadlines.py``, the same
values the step CLI and the workflow builder use.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steps.deadlines import (
    DEFAULT_BUSY_WAIT_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_FIRST_TOKEN_TIMEOUT_S,
    DEFAULT_IDLE_READ_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SUMMARIZE_BUDGET_S,
)
from steps.defaults import CONTEXT_TOKENS, MAX_OUTPUT_TOKENS, SUMMARIZE_CONCURRENCY
from steps.urls import split_credentials

#: The answer formats of a summary request, best first; ``auto`` starts at the first.
SUMMARY_FORMATS = ("auto", "json_schema", "json_object", "prose")
#: OpenAI repetition controls for summary requests: small models otherwise loop on one sentence.
DEFAULT_FREQUENCY_PENALTY = 0.5
DEFAULT_PRESENCE_PENALTY = 0.3
#: Map-reduce piece size as a share of the context window: a transcript longer than this is summarized in pieces.
#: A small model keeps two or three facts per request whatever the length of its input (bench/README.md,
#: "Summaries"), so more, smaller pieces keep more; a large context still gets large pieces.
MAP_PIECE_SHARE = 0.25
#: Highlights (``highlights.py``): sentences quoted verbatim from the transcript, at most this many...
HIGHLIGHTS_MAX = 5
#: ...one more per this many transcript words beyond the first, up to HIGHLIGHTS_LONG_MAX (a long meeting has
#: more topics)...
HIGHLIGHTS_WORDS_PER_EXTRA = 1000
HIGHLIGHTS_LONG_MAX = 8
#: ...and never more than this share of the transcript's words, so the quotes are never an echo of it.
HIGHLIGHTS_MAX_SHARE = 1 / 3
#: One quote alone may take up to this share of a short transcript, past HIGHLIGHTS_MAX_SHARE: one sentence of
#: several is a quote, not an echo (the stand-up's "The team agreed to release version 2.1 next Thursday..." is 15
#: of its 40 words, and a third left only a lesser sentence).
HIGHLIGHTS_SINGLE_SHARE = 0.5


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the model and how hard to push it.

    ``url`` may be given with or without the trailing ``/v1``; credentials in it
    (``http://user:pass@host/v1``) are moved to ``basic_auth`` so the URL is
    safe to log and store. ``api_key`` (a bearer token) wins over ``basic_auth``.
    ``context_tokens`` is the model's context window *per request* (for
    llama-server: the per-slot context) and drives map-reduce.
    Deadlines (``steps/deadlines.py``): ``first_token_timeout_s`` per attempt,
    ``read_timeout_s`` the idle silence tolerated after the first token,
    ``request_timeout_s`` one call with its retries, ``budget_s`` all of
    :func:`summarize_all` (``None``: no budget). ``busy_wait_s`` is how long one call
    keeps waiting (honouring Retry-After) while the gateway answers 429/503; those
    waits extend the call's deadline and do not count against ``max_retries``.
    ``frequency_penalty``/``presence_penalty`` are the OpenAI repetition controls sent with every summary
    request (a retry after a rejected answer raises them). ``summary_format`` is the first answer format tried:
    ``auto`` (= ``json_schema``, then ``json_object``, then ``prose`` for servers that refuse the one before),
    or one of those to start further down the chain (``steps/llm/structured.py``). ``map_piece_tokens``: the
    most transcript tokens one map-reduce request reads (``None``: :data:`MAP_PIECE_SHARE` of ``context_tokens``).
    """

    url: str
    model: str
    objective: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)  # never printed
    concurrency: int = SUMMARIZE_CONCURRENCY
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_IDLE_READ_TIMEOUT_S
    first_token_timeout_s: float = DEFAULT_FIRST_TOKEN_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    budget_s: float | None = DEFAULT_SUMMARIZE_BUDGET_S
    busy_wait_s: float = DEFAULT_BUSY_WAIT_S
    max_retries: int = 4
    backoff_s: float = 1.0
    context_tokens: int = CONTEXT_TOKENS
    max_output_tokens: int = MAX_OUTPUT_TOKENS
    temperature: float = 0.0  # summaries are extraction: greedy decoding (bench/summaries.py measured it)
    frequency_penalty: float = DEFAULT_FREQUENCY_PENALTY
    presence_penalty: float = DEFAULT_PRESENCE_PENALTY
    summary_format: str = "auto"
    map_piece_tokens: int | None = None  # None: MAP_PIECE_SHARE of context_tokens (see piece_tokens)

    @property
    def piece_tokens(self) -> int:
        """Tokens of transcript per map-reduce piece: ``map_piece_tokens``, else :data:`MAP_PIECE_SHARE` of the
        context window."""
        return self.map_piece_tokens or int(self.context_tokens * MAP_PIECE_SHARE)

    @classmethod
    def probe(cls, url: str, model: str, *, timeout_s: float, api_key: str | None = None,
              basic_auth: tuple[str, str] | None = None) -> LLMSettings:
        """Settings for one reachability check (``LLMClient.check``): every deadline ``timeout_s``, no retries,
        no waiting out a busy gateway, the credentials the summarize step would send."""
        return cls(url=url, model=model, api_key=api_key, basic_auth=basic_auth, connect_timeout_s=timeout_s,
                   first_token_timeout_s=timeout_s, read_timeout_s=timeout_s, request_timeout_s=timeout_s,
                   budget_s=None, max_retries=0, busy_wait_s=0.0)

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("LLMSettings.url is empty")
        url, credentials = split_credentials(self.url)
        if credentials is not None:
            object.__setattr__(self, "url", url)
            object.__setattr__(self, "basic_auth", self.basic_auth or credentials)
        if not self.model:
            raise ValueError("LLMSettings.model is empty")
        if self.concurrency < 1:
            raise ValueError("LLMSettings.concurrency must be >= 1")
        if self.max_retries < 0:
            raise ValueError("LLMSettings.max_retries must be >= 0")
        if self.max_output_tokens < 1:
            raise ValueError("LLMSettings.max_output_tokens must be >= 1")
        if self.map_piece_tokens is not None and self.map_piece_tokens < 1:
            raise ValueError("LLMSettings.map_piece_tokens must be >= 1")
        if self.summary_format not in SUMMARY_FORMATS:
            raise ValueError(f"LLMSettings.summary_format must be one of {', '.join(SUMMARY_FORMATS)}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"LLMSettings.{name} must be between -2 and 2")
        if self.busy_wait_s < 0:
            raise ValueError("LLMSettings.busy_wait_s must be >= 0")
        for name in ("connect_timeout_s", "read_timeout_s", "first_token_timeout_s", "request_timeout_s", "budget_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"LLMSettings.{name} must be > 0")
