"""Pipeline settings: everything the builder needs to render the DAG for one cluster (or for a local run).

The one owner, on the orchestration side, of:

* the run defaults: :class:`PipelineSettings` takes them from ``steps.defaults`` (which the steps use too), and
  :data:`LOCAL_PROFILE` holds the smaller ones of ``kubescribe run`` (a laptop and the tiny local LLM);
* the key names inside the Secrets the steps read (``SECRET_KEY_*``): ``workflows/pipeline.py`` mounts them, the
  local run fills them, ``kubescribe doctor`` names them, and ``tests/test_structure.py`` checks the Helm chart's
  templates against them.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from steps.defaults import (
    BEAM_SIZE,
    CONTEXT_TOKENS,
    MAX_OUTPUT_TOKENS,
    MAX_SHARDS,
    OUTPUT_FORMAT,
    SHARD_SECONDS,
    SUMMARIZE_CONCURRENCY,
    TEMPERATURE,
)
from steps.deadlines import DEFAULT_BUSY_WAIT_S

#: The shortest run deadline (``spec.activeDeadlineSeconds``) accepted, here and by ``kubescribe submit``.
MIN_ACTIVE_DEADLINE_S = 60

# Keys inside the Secrets the steps read (``kubectl create secret generic NAME --from-literal=<key>=...``).
SECRET_KEY_S3_ACCESS = "accesskey"  # PipelineSettings.s3_secret -> AWS_ACCESS_KEY_ID
SECRET_KEY_S3_SECRET = "secretkey"  # PipelineSettings.s3_secret -> AWS_SECRET_ACCESS_KEY
SECRET_KEY_LLM_TOKEN = "api-key"  # PipelineSettings.llm_secret -> LLM_API_KEY (bearer token)
SECRET_KEY_LLM_BASIC_AUTH = "basic-auth"  # PipelineSettings.llm_secret, optional -> LLM_BASIC_AUTH (user:password)
S3_SECRET_KEYS = (SECRET_KEY_S3_ACCESS, SECRET_KEY_S3_SECRET)
LLM_SECRET_KEYS = (SECRET_KEY_LLM_TOKEN, SECRET_KEY_LLM_BASIC_AUTH)

#: ``kubescribe run``'s defaults where they differ from a cluster's (PipelineSettings field -> value): shorter
#: shards and fewer of them, a smaller context and summaries for the bundled 135M model on a local llama-server,
#: fewer things at once on a laptop, one retry. The CLI's flags default to these.
LOCAL_PROFILE = MappingProxyType({
    "shard_seconds": 600,
    "max_shards": 8,
    "context_tokens": 4096,
    "max_output_tokens": 512,  # a structured summary (JSON) needs room; see steps/llm/schema.py
    "summarize_concurrency": 2,
    "parallelism": 2,
    "threads": 1,
    "retries": 1,
})

# A DAS slice is requested as nvidia.com/mig-<g>g.<gb>gb (DAS rewrites it to mig.das.com/<profile>); a whole GPU
# as nvidia.com/gpu; "cpu" asks for no accelerator at all.
_ACCELERATOR = re.compile(r"^(cpu|nvidia\.com/gpu|nvidia\.com/mig-\d+g\.\d+gb|[a-z0-9.-]+/[A-Za-z0-9._-]+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class PipelineSettings(BaseModel):
    """Defaults describe a typical cluster: MinIO, a Kueue LocalQueue, a 1g.10gb MIG slice, an llm-d gateway.

    Fields that are also WorkflowTemplate parameters (input, output, models, gateway URL...) only set the
    parameter's default: users override them per run in the Argo UI or from hera.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("kubescribe", description="WorkflowTemplate name; Workflows get generateName '<name>-'")
    namespace: str | None = None
    # Run parameters (defaults only; overridable at submit time).
    input: str = "s3://audio/incoming"
    output: str = "s3://audio/kubescribe"
    whisper_model: str = "tiny.en"
    language: str = Field("", description="ISO code, or empty to auto-detect")
    llm_url: str = "http://llm-d-inference-gateway-istio.llm-d.svc.cluster.local/v1"
    llm_model: str = "Qwen/Qwen3-8B"
    objective: str = Field("", description="x-gateway-inference-objective header; empty: not sent")
    beam_size: int = Field(BEAM_SIZE, ge=1, description="Whisper beam width; 1 is greedy (about 2x faster, see bench/)")
    # Whisper's own options (kubescribe-step transcribe; steps/decode_options.py checks the values in the pod).
    task: str = Field("transcribe", pattern=r"^(transcribe|translate)$",
                      description="transcribe, or translate the speech to English (multilingual models only)")
    output_format: str = Field(OUTPUT_FORMAT, description="whisper's writers, comma-separated: txt, srt, vtt, tsv, "
                               "json, or all (txt is always written: the summary is made from it)")
    initial_prompt: str = Field("", description="text to condition the first window on (names, spellings)")
    word_timestamps: bool = Field(True, description="word-level timestamps (needed to skip hallucinated silences)")
    temperature: float = Field(TEMPERATURE, ge=0.0, le=1.0, description="first sampling temperature (fallback "
                               "steps of 0.2 up to 1.0)")
    vad: bool = Field(True, description="decode only spans with sound; false: the whole file, silence included")
    shard_seconds: int = Field(SHARD_SECONDS, ge=1)
    max_shards: int = Field(MAX_SHARDS, ge=1, le=2000)
    only_new: bool = Field(False, description="plan only inputs without a finished result (scheduled runs)")
    # Cluster shape (baked into the templates).
    accelerator: str = Field("nvidia.com/mig-1g.10gb", description="extended resource for Whisper pods, or 'cpu'")
    queue_name: str | None = Field("kubescribe-whisper", description="Kueue LocalQueue for Whisper pods; None: not queued")
    priority_class: str | None = Field(None, description="Kueue WorkloadPriorityClass for Whisper pods")
    parallelism: int = Field(8, ge=1, description="Whisper pods running at once")
    summarize_concurrency: int = Field(SUMMARIZE_CONCURRENCY, ge=1)
    context_tokens: int = Field(CONTEXT_TOKENS, ge=512)
    max_output_tokens: int = Field(MAX_OUTPUT_TOKENS, ge=16)
    summarize_busy_wait_s: int = Field(
        int(DEFAULT_BUSY_WAIT_S), ge=0, description="seconds one summary request keeps waiting while the gateway "
        "answers 429/503 (llm-d shedding or a saturated pool), honouring Retry-After; 0: fail at once")
    whisper_image: str = "ghcr.io/kubescribe/kubescribe-whisper:0.1.0"
    steps_image: str = "ghcr.io/kubescribe/kubescribe:0.1.0"
    whisper_cpu: str = "2"
    whisper_memory: str = "8Gi"
    steps_cpu: str = "500m"
    steps_memory: str = "1Gi"
    threads: int = Field(0, ge=0, description="torch CPU threads per Whisper process (0: torch default)")
    transcribe_timeout: str = Field(
        "6h", description="per Whisper attempt, counted from when its pod starts on a node; time gated in the Kueue "
        "queue is NOT counted (a retried template's timeout becomes the pod's activeDeadlineSeconds only): "
        "active_deadline_seconds bounds that")
    retries: int = Field(2, ge=0)
    active_deadline_seconds: int = Field(
        24 * 3600, ge=MIN_ACTIVE_DEADLINE_S, description="spec.activeDeadlineSeconds: wall-clock bound on a whole run from its start, "
        "queue time, retries and backoff included (pending pods are failed and running ones stopped after it)")
    # Pod securityContext IDs. None (default): the platform assigns them (OpenShift restricted-v2 gives a UID from
    # the namespace's range; elsewhere the image's numeric USER 65532 applies); runAsNonRoot is always set.
    run_as_user: int | None = Field(None, ge=1, description="pod runAsUser; None: image USER / platform-assigned")
    run_as_group: int | None = Field(None, ge=1, description="pod runAsGroup; None: image / platform-assigned")
    fs_group: int | None = Field(None, ge=1, description="pod fsGroup; None: none / platform-assigned")
    report_artifacts: bool = Field(
        True, description="the report step publishes report.json and summary.md as output artifacts (needs an "
        "Argo artifact repository: the namespace's artifact-repositories ConfigMap or the controller default)")
    s3_endpoint: str | None = "http://minio.minio.svc.cluster.local:9000"
    s3_secret: str | None = Field(
        "kubescribe-s3", description=f"Secret with keys {SECRET_KEY_S3_ACCESS}/{SECRET_KEY_S3_SECRET}; None: no S3 env")
    llm_secret: str | None = Field(
        None, description=f"Secret with key {SECRET_KEY_LLM_TOKEN} (bearer token) and optional key "
        f"{SECRET_KEY_LLM_BASIC_AUTH} (user:password) for the gateway; None: no auth")
    service_account: str | None = "kubescribe-workflow"

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, v: str) -> str:
        if not _ACCELERATOR.match(v):
            raise ValueError(f"accelerator must be 'cpu', 'nvidia.com/gpu' or 'nvidia.com/mig-<g>g.<gb>gb', got {v!r}")
        return v

    @field_validator("queue_name", "priority_class", "name")
    @classmethod
    def _dns_label(cls, v: str | None) -> str | None:
        if v is not None and (not _DNS_LABEL.match(v) or len(v) > 63):
            raise ValueError(f"{v!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
        return v

    @field_validator("queue_name")
    @classmethod
    def _not_default_queue(cls, v: str | None) -> str | None:
        # Kueue queues every unlabelled pod of a namespace that has a LocalQueue named "default".
        if v == "default":
            raise ValueError("do not name the LocalQueue 'default': Kueue would then queue every pod in the namespace")
        return v

    @property
    def device(self) -> str:
        return "cpu" if self.accelerator == "cpu" else "cuda"
