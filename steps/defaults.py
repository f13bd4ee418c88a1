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
#: What one file costs beyond its audio, in seconds of audio: shards are balanced by audio seconds plus this per
#: file, so 300 one-second clips are not one shard. bench/per_file_overhead.py (2 CPU cores): a one-second clip
#: costs 1.4 s (sequential) to 2.6 s (batched) of wall time where the engines run about 10x real time, i.e.
#: 15-25 s of audio; the lower end is taken.
FILE_COST_S = 15.0

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

#: Silero VAD's speech probability threshold (its own default); part of the cache key when silero segments.
SILERO_THRESHOLD = 0.5

#: Speech segmenter: "energy" (the level gate above) or "silero" (Silero VAD, a neural model; ``steps.vad``).
VAD_METHOD = "energy"
#: Transcription engine of ``TranscribeOptions`` built directly: "sequential" (file after file, whisper's own
#: loop), "batched" (``steps.batched``: chunks of every file of the shard decoded together) or "ct2" (file after
#: file through faster-whisper: ``steps.ct2_engine``).
ENGINE = "batched"
#: What ``kubescribe-step transcribe --engine auto`` picks, per device, from bench/throughput.py's numbers
#: (bench/README.md). GPU: openai-whisper stays the reference engine, and its batched engine ran 17.5x sequential
#: and 3.24x faster-whisper's batched pipeline (H200, 46.5-min espeak prose corpus, same WER). CPU: ct2
#: (CTranslate2, int8) with the same safe options is faster than plain greedy openai-whisper, which both
#: openai-whisper engines are not.
ENGINE_CPU = "ct2"
ENGINE_GPU = "batched"

#: What ``kubescribe-step transcribe --output-format`` writes by default: whisper's writers, by name (``all``: txt,
#: srt, vtt, tsv and json). txt is written whatever is asked: the summary is made from it.
OUTPUT_FORMAT = "txt,srt,vtt,json"
#: Whisper's sampling temperature, and the step up to 1.0 on fallback (whisper's ``--temperature`` and
#: ``--temperature_increment_on_fallback``): 0.0 and 0.2 give (0.0, 0.2, ..., 1.0).
TEMPERATURE = 0.0
TEMPERATURE_INCREMENT_ON_FALLBACK = 0.2

# --- summarize ---------------------------------------------------------------------------------------------------
#: The model's context window per request (for llama-server: per slot); drives map-reduce.
CONTEXT_TOKENS = 8192
#: Generation limit per request.
MAX_OUTPUT_TOKENS = 512
#: Transcripts (and LLM requests) in flight at once.
SUMMARIZE_CONCURRENCY = 4
