"""The defaults of a run, each defined here once and imported wherever it is needed.

The step CLI (``steps/cli.py``), the planner, ``TranscribeOptions``, ``LLMSettings`` and the workflow builder's
settings (``workflows/settings.py``) all take these values from here, so the pipeline, a hand-run step and a
test that builds the objects directly cannot drift apart. The LLM deadlines have their own owner,
``steps/deadlines.py``, next to the code that enforces them.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

# --- plan --------------------------------------------------------------------------------------------------------
#: Target seconds of audio per transcribe shard (one pod, one model load).
SHARD_SECONDS = 1800
#: Cap on shards, i.e. on Whisper pods (Kueue Workloads, Argo nodes) per run.
MAX_SHARDS = 64

# --- transcribe --------------------------------------------------------------------------------------------------
#: Whisper beam width (``best_of`` follows it); 1 is greedy, about 2x faster.
BEAM_SIZE = 5
# The energy gate (``steps.audio.speech_regions``) that decodes only spans with sound. They change transcripts,
# so they are fields of ``TranscribeOptions`` and part of the transcript cache key.
#: Frames quieter than this are silence.
VAD_THRESHOLD_DBFS = -50.0
#: Length of one level-measuring frame.
VAD_FRAME_S = 0.03
#: Sound separated by less silence than this is one span.
VAD_MIN_GAP_S = 1.0
#: Margin kept around each span.
VAD_PAD_S = 0.25
#: Spans shorter than this (clicks) are dropped.
VAD_MIN_SPEECH_S = 0.2

#: Speech segmenter: "energy" (the level gate above) or "silero" (Silero VAD, a neural model; ``steps.vad``).
VAD_METHOD = "energy"
#: Transcription engine of ``TranscribeOptions`` built directly: "sequential" (file after file, whisper's own
#: loop) or "batched" (``steps.batched``: chunks of every file of the shard decoded together).
ENGINE = "sequential"
#: What ``kubescribe-step transcribe --engine auto`` picks, per device. The batched engine measured 4.5x faster
#: than sequential on this 2-core CPU (bench/README.md, one run on a loaded machine), but it is not yet measured on
#: a GPU nor put through the hostile-input suite end to end: it stays opt-in (``--engine batched``) until it is.
ENGINE_CPU = "sequential"
ENGINE_GPU = "sequential"

# --- summarize ---------------------------------------------------------------------------------------------------
#: The model's context window per request (for llama-server: per slot); drives map-reduce.
CONTEXT_TOKENS = 8192
#: Generation limit per request.
MAX_OUTPUT_TOKENS = 512
#: Transcripts (and LLM requests) in flight at once.
SUMMARIZE_CONCURRENCY = 4
