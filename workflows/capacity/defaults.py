"""Every default of the capacity model, in one place (the one owner of each number).

Numbers that describe the world (speeds, delays, VRAM) are not here: they are calibration inputs with a source
(``calibration.py``). What is here are the knobs of the *simulator* and the *planner*: Kubernetes timing constants
read from upstream sources, and the planner's search space.
"""

from __future__ import annotations

from steps.defaults import CONTEXT_TOKENS, ENGINE_GPU, MAX_OUTPUT_TOKENS, MAX_SHARDS, SHARD_SECONDS, SUMMARIZE_CONCURRENCY

# --- kube-scheduler (k8s.io/kubernetes pkg/scheduler, KubeSchedulerConfiguration defaults) -----------------------
#: podInitialBackoffSeconds / podMaxBackoffSeconds: an unschedulable pod is retried after 1 s, 2 s, 4 s ... 10 s.
SCHED_INITIAL_BACKOFF_S = 1.0
SCHED_MAX_BACKOFF_S = 10.0

# --- Kueue --------------------------------------------------------------------------------------------------------
#: Time from a workload's creation (or a quota release) to its admission and the removal of the pod's scheduling
#: gate. Kueue admits in its scheduling loop within milliseconds; one second covers the webhook and the API calls.
KUEUE_ADMISSION_S = 1.0

# --- Argo ---------------------------------------------------------------------------------------------------------
#: Seconds between a DAG task becoming ready and its pod being created (the controller's reconcile).
ARGO_POD_CREATE_S = 1.0

# --- cluster shape ------------------------------------------------------------------------------------------------
#: GPUs per node when an inventory does not say (p4d.24xlarge / p5.48xlarge / DGX: 8).
GPUS_PER_NODE = 8

# --- backlog ------------------------------------------------------------------------------------------------------
#: Seed of every random draw (synthetic lengths, unknown paper durations): results are reproducible.
SEED = 7
#: Synthetic backlog: lognormal lengths with this median (s) and sigma, clipped to [MIN, MAX].
SYNTH_MEDIAN_S = 1800.0
SYNTH_SIGMA = 0.8
SYNTH_MIN_S = 30.0
SYNTH_MAX_S = 6 * 3600.0

# --- the planner (kubescribe capacity) ------------------------------------------------------------------------
#: Whisper model the planner sizes for when none is given.
PLAN_MODEL = "large-v3"
#: Shard sizes (audio seconds per Whisper pod) the planner tries; the run's default (steps.defaults) is one of them.
PLAN_SHARD_SECONDS = tuple(sorted({600, SHARD_SECONDS, 3600}))
#: Upper bound on Whisper pods per run: the run's own default.
PLAN_MAX_SHARDS = MAX_SHARDS
#: The engine the cluster runs (``--engine auto`` on a GPU): batched only when asked for.
PLAN_BATCHED = ENGINE_GPU == "batched"
#: Summaries in flight, context and output limits: the run's own defaults. LLM replicas behind the gateway: the
#: llm-d guide's default deployment (2 decode replicas, paper.md §1.1).
PLAN_SUMMARIZE_CONCURRENCY = SUMMARIZE_CONCURRENCY
PLAN_CONTEXT_TOKENS = CONTEXT_TOKENS
PLAN_MAX_OUTPUT_TOKENS = MAX_OUTPUT_TOKENS
PLAN_LLM_REPLICAS = 2
#: GPU memory of each LLM replica (GB) when not given: an A100-40GB, the paper's inferred hardware (paper.md §2).
PLAN_LLM_GPU_GB = 40.0
#: What Kueue counts per Whisper pod beyond its container, (CPU cores, GiB): Argo's init and wait containers
#: (charts/kubescribe/README.md, "DAS and the Kueue quota"), rounded up.
ARGO_POD_OVERHEAD = (1, 1)
#: Deadline (s) when none is given: 24 h, the chart's pipeline.activeDeadlineSeconds default.
PLAN_DEADLINE_S = 86400.0

# --- the CPU steps ----------------------------------------------------------------------------------------------
#: Plan: its pod starts (~10 s, steps image), then probes every file's header, 8 at a time, ~0.2 s each.
PLAN_POD_S = 10.0
PROBE_S = 0.2
PROBE_WORKERS = 8
#: Report: pod start and reading every output back.
REPORT_S = 20.0

# --- LLM pool (summarize stage) -----------------------------------------------------------------------------------
#: Time step of the LLM pool's fluid model (s): small against a prefill of even a short prompt.
LLM_STEP_S = 0.02
#: Sequences one replica runs at once (vLLM max_num_seqs is 256; KV memory binds far earlier for 10k-token prompts,
#: see calibration.llm_inputs). Requests beyond it wait in the replica's queue.
LLM_MAX_BATCH = 64
#: Prompt tokens one iteration computes next to the decoding sequences: llama-server's physical batch
#: (--ubatch-size default 512); vLLM's per-step token budget with chunked prefill (max_num_batched_tokens, 2048
#: for the OpenAI server: an assumption, it changed between vLLM versions).
LLM_PREFILL_CHUNK_LLAMA_CPP = 512
LLM_PREFILL_CHUNK_VLLM = 2048
#: Spoken English: ~150 words a minute, ~1.3 tokens a word -> tokens of transcript per second of audio.
TOKENS_PER_AUDIO_S = 150 / 60 * 1.3
