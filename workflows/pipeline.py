"""The kubescribe DAG, built with hera: plan → transcribe (fan-out over shards) → summarize → report.

```
plan ──► transcribe(shard 0..N-1)  Kueue-queued, DAS slice, retried
              │ (continues on failure: files already done are kept)
              ▼
          summarize  ──► report
```
The same builder produces the WorkflowTemplate installed in a cluster (Argo UI, CronWorkflow, Helm chart)
and the Workflow that the local runner executes. Run parameters (input, output, models, gateway...) are
WorkflowTemplate parameters, so they can be changed per submission; cluster shape (images, queue, slice) is
baked in from ``PipelineSettings``.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    EmptyDirVolume,
    Env,
    NoneArchiveStrategy,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnv,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import models as m

from steps.cli import EXIT_CONFIG, EXIT_RETRYABLE
from steps.urls import BASIC_AUTH_ENV
from workflows.local.expressions import parameter_string
from workflows.settings import (
    SECRET_KEY_LLM_BASIC_AUTH,
    SECRET_KEY_LLM_TOKEN,
    SECRET_KEY_S3_ACCESS,
    SECRET_KEY_S3_SECRET,
    PipelineSettings,
)

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
OUTPUTS_DIR = "/tmp/outputs"
SHARDS_FILE = f"{OUTPUTS_DIR}/shards.json"
# What the report step publishes for the Argo UI (``kubescribe-step report --artifacts-dir``): report.json and a
# markdown run summary as output artifacts (uploaded uncompressed, archive none, to the workflow's artifact
# repository), and a one-line result as an output parameter.
REPORT_FILE = f"{OUTPUTS_DIR}/report.json"
SUMMARY_FILE = f"{OUTPUTS_DIR}/summary.md"
RESULT_FILE = f"{OUTPUTS_DIR}/result.txt"
# On every step pod, as template metadata (so the Kueue queue label can stay on the transcribe template alone): the
# chart's NetworkPolicy selects kubescribe pods by it. spec.podMetadata would reach the pods as well, also for
# Workflows submitted from the WorkflowTemplate: the controller merges the template's spec into the run
# (argo-workflows v4.1.2 workflow/controller/operator.go setExecWorkflow -> workflow/util/merge.go JoinWorkflowSpec)
# and workflowpod.go addMetadata applies spec.podMetadata, then the template's metadata, to each pod.
POD_LABELS = {"app.kubernetes.io/name": "kubescribe", "app.kubernetes.io/component": "step"}
STEP_COMMAND = ["kubescribe-step"]

# Run parameters: (name, settings field, description shown in the Argo UI).
RUN_PARAMETERS = (
    ("input", "input", "audio to transcribe: s3://bucket/prefix (MinIO) or a path"),
    ("output", "output", "where transcripts, summaries and report.json go"),
    ("whisper-model", "whisper_model", "whisper name (tiny.en, small, large-v3-turbo...) or checkpoint path"),
    ("language", "language", "ISO language code, empty to auto-detect"),
    ("beam-size", "beam_size", "Whisper beam width (1: greedy, faster)"),
    ("task", "task", "transcribe, or translate to English (multilingual models only)"),
    ("output-format", "output_format", "whisper's writers: txt, srt, vtt, tsv, json (comma-separated) or all"),
    ("initial-prompt", "initial_prompt", "text to condition Whisper on (names, spellings); empty: none"),
    ("word-timestamps", "word_timestamps", "true: word-level timestamps in the json transcript"),
    ("temperature", "temperature", "Whisper's first sampling temperature (0: deterministic, fallback up to 1)"),
    ("vad", "vad", "true: decode only spans with sound; false: the whole file"),
    ("llm-url", "llm_url", "OpenAI-compatible base URL (the llm-d inference gateway)"),
    ("llm-model", "llm_model", "model name sent to the gateway"),
    ("objective", "objective", "InferenceObjective name sent as x-gateway-inference-objective (empty: none)"),
    ("shard-seconds", "shard_seconds", "target seconds of audio per Whisper pod"),
    ("max-shards", "max_shards", "upper bound on the number of Whisper pods"),
    ("only-new", "only_new", "true: plan only inputs not already processed (what a schedule wants)"),
)


def _p(name: str) -> str:
    return "{{workflow.parameters.%s}}" % name


# Every step reads/writes the output store under the run's id (the workflow name).
COMMON_ARGS = ["--output", _p("output"), "--run-id", "{{workflow.name}}"]


# Retries (argo-workflows v4.1.2 workflow/controller/operator.go processNodeRetries):
# * A main container that exits non-zero makes the attempt *Failed*; "Error" is for the pod around it (deleted, e.g.
#   by Kueue preemption or eviction; init/wait container failures). retryPolicy OnError retries only Error, so it
#   never retried the exit-2 "infrastructure error, retry me" contract of steps/cli.py.
# * `expression` is evaluated after the policy; `lastRetry.exitCode` is a *string* ("-1" when the attempt has no
#   exit code, e.g. a deleted pod) and `lastRetry.status` the attempt's phase (buildRetryStrategyLocalScope).
# * backoff.maxDuration is counted from the FIRST attempt's start (queue time included) and becomes every later
#   attempt's deadline (opts.executionDeadline -> ARGO_DEADLINE in workflowpod.go getDeadline -> the executor's
#   monitorDeadline kills the main container): a retry after a long queue wait would be killed at once. backoff.cap
#   only bounds the wait between attempts.
RETRYABLE = f'lastRetry.status == "Error" || lastRetry.exitCode == "{EXIT_RETRYABLE}"'
#: Whisper attempts: everything but a configuration error (exit 3: an unknown model, a bad store URL), which
#: fails the same way however often it is tried.
NOT_A_CONFIG_ERROR = f'lastRetry.exitCode != "{EXIT_CONFIG}"'


def _backoff() -> m.Backoff:
    return m.Backoff(duration="30s", factor="2", cap="5m")


def _retry_infrastructure(limit: int) -> RetryStrategy:
    """Retry what the step reports as retryable (exit 2) and pod-level errors, never a genuine failure (exit 1)."""
    return RetryStrategy(limit=limit, retry_policy="Always", expression=RETRYABLE, backoff=_backoff())


def _security_context() -> m.SecurityContext:
    # Restricted Pod Security Standard: non-root, read-only root filesystem, nothing to escalate.
    return m.SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def _env(settings: PipelineSettings) -> list[Env | SecretEnv]:
    env: list[Env | SecretEnv] = [Env(name="HOME", value="/tmp")]
    if settings.s3_secret:
        env += [
            Env(name="KUBESCRIBE_S3_ENDPOINT", value=settings.s3_endpoint),
            SecretEnv(name="AWS_ACCESS_KEY_ID", secret_name=settings.s3_secret, secret_key=SECRET_KEY_S3_ACCESS),
            SecretEnv(name="AWS_SECRET_ACCESS_KEY", secret_name=settings.s3_secret, secret_key=SECRET_KEY_S3_SECRET),
        ]
    return env


def _container(settings: PipelineSettings, name: str, image: str, args: list[str], **kwargs: Any) -> Container:
    env = _env(settings) + kwargs.pop("extra_env", [])
    kwargs["labels"] = {**POD_LABELS, **(kwargs.get("labels") or {})}
    return Container(
        name=name,
        image=image,
        command=STEP_COMMAND,
        args=args,
        env=env,
        security_context=_security_context(),
        volume_mounts=[m.VolumeMount(name="tmp", mount_path="/tmp")],
        **kwargs,
    )


def _templates(settings: PipelineSettings) -> None:
    """Create the four step templates and the DAG inside the active workflow context."""
    s = settings
    plan = _container(
        s,
        "plan",
        s.steps_image,
        ["plan", "--input", _p("input"), *COMMON_ARGS, "--shard-seconds", _p("shard-seconds"),
         "--max-shards", _p("max-shards"), "--only-new", _p("only-new"), "--shards-file", SHARDS_FILE],
        outputs=[Parameter(name="shards", value_from=m.ValueFrom(path=SHARDS_FILE))],
        resources=Resources(cpu_request=s.steps_cpu, memory_request=s.steps_memory, memory_limit=s.steps_memory),
        retry_strategy=_retry_infrastructure(s.retries),
    )

    labels = {}
    if s.queue_name:
        labels[QUEUE_LABEL] = s.queue_name
    if s.priority_class:
        labels[PRIORITY_LABEL] = s.priority_class
    resources: dict[str, Any] = dict(cpu_request=s.whisper_cpu, memory_request=s.whisper_memory, memory_limit=s.whisper_memory)
    if s.accelerator != "cpu":
        # DAS only acts on limits (it rewrites nvidia.com/mig-* to mig.das.com/* and mirrors it into requests).
        resources["custom_resources"] = {"limits": {s.accelerator: "1"}}
    transcribe = _container(
        s,
        "transcribe",
        s.whisper_image,
        ["transcribe", *COMMON_ARGS, "--shard", "{{inputs.parameters.shard}}", "--model", _p("whisper-model"),
         "--language", _p("language"), "--beam-size", _p("beam-size"), "--task", _p("task"),
         "--output-format", _p("output-format"), f"--initial-prompt={_p('initial-prompt')}",
         "--word-timestamps", _p("word-timestamps"), "--temperature", _p("temperature"), "--vad", _p("vad"),
         "--device", s.device if s.accelerator != "cpu" else "cpu", "--threads", str(s.threads)],
        inputs=[Parameter(name="shard")],
        labels=labels,
        resources=Resources(**resources),
        # Kueue preemption deletes the pod (Error), a DAS UnexpectedAdmissionError fails it without an exit code,
        # OOM kills it (137), exit 2 is an infrastructure error: retry all of them (a shard's finished files are
        # kept), but not a configuration error (exit 3),
        # with a capped backoff and no maxDuration (see _backoff). `timeout` bounds one attempt from the moment its
        # pod starts on a node: for a retried template the controller's Pending-timeout check never runs
        # (operator.go checkTemplateTimeouts acts on the Retry node, which is Running), the timeout only becomes the
        # pod's activeDeadlineSeconds (workflowpod.go), and the kubelet counts that from the pod's status.startTime
        # (kubernetes pkg/kubelet/active_deadline.go), so time gated in the Kueue queue is not counted. The run deadline (spec.activeDeadlineSeconds) bounds queue time.
        retry_strategy=RetryStrategy(limit=s.retries, retry_policy="Always", expression=NOT_A_CONFIG_ERROR,
                                     backoff=_backoff()),
        timeout=s.transcribe_timeout,
    )
    llm_env = []
    if s.llm_secret:
        llm_env.append(SecretEnv(name="LLM_API_KEY", secret_name=s.llm_secret, secret_key=SECRET_KEY_LLM_TOKEN))
        # Basic-auth credentials ("user:password") stay out of the llm-url parameter, which is visible to all.
        llm_env.append(SecretEnv(name=BASIC_AUTH_ENV, secret_name=s.llm_secret, secret_key=SECRET_KEY_LLM_BASIC_AUTH,
                                 optional=True))
    summarize = _container(
        s,
        "summarize",
        s.steps_image,
        ["summarize", *COMMON_ARGS, "--llm-url", _p("llm-url"), "--llm-model", _p("llm-model"),
         "--objective", _p("objective"), "--concurrency", str(s.summarize_concurrency),
         "--context-tokens", str(s.context_tokens), "--max-output-tokens", str(s.max_output_tokens),
         "--busy-wait", str(s.summarize_busy_wait_s)],
        extra_env=llm_env,
        resources=Resources(cpu_request=s.steps_cpu, memory_request=s.steps_memory, memory_limit=s.steps_memory),
        retry_strategy=_retry_infrastructure(s.retries),
    )
    # The Argo UI shows a node's output artifacts and parameters. Artifacts go to the workflow's artifact repository
    # (the chart's artifact-repositories ConfigMap, templates/artifact-repository.yaml, or the controller default);
    # `archive: none` stores the files as they are, so the UI can show them. Optional, and the parameter has a
    # default, so a report step that fails before writing them keeps its own error instead of an artifact error.
    report_outputs: list[Parameter | Artifact] = [
        Parameter(name="result", value_from=m.ValueFrom(path=RESULT_FILE, default="no result: the report step failed"),
                  description="one-line run result"),
    ]
    if s.report_artifacts:
        report_outputs += [
            Artifact(name="report", path=REPORT_FILE, archive=NoneArchiveStrategy(), optional=True),
            Artifact(name="summary", path=SUMMARY_FILE, archive=NoneArchiveStrategy(), optional=True),
        ]
    report = _container(
        s,
        "report",
        s.steps_image,
        ["report", *COMMON_ARGS, "--artifacts-dir", OUTPUTS_DIR],
        outputs=report_outputs,
        resources=Resources(cpu_request=s.steps_cpu, memory_request=s.steps_memory, memory_limit=s.steps_memory),
    )

    with DAG(name="main", parallelism=s.parallelism):
        t_plan = plan(name="plan")
        t_transcribe = transcribe(
            name="transcribe",
            arguments={"shard": "{{item}}"},
            with_param=t_plan.get_parameter("shards"),
        )
        t_summarize = summarize(name="summarize")
        t_report = report(name="report")
        t_plan >> t_transcribe
        # Files that did transcribe are summarized and reported even when a shard failed for good.
        t_summarize.depends = "transcribe.Succeeded || transcribe.Skipped || transcribe.Failed || transcribe.Errored"
        t_report.depends = "summarize.Succeeded || summarize.Failed || summarize.Errored"


def _spec_kwargs(settings: PipelineSettings) -> dict[str, Any]:
    return dict(
        namespace=settings.namespace,
        entrypoint="main",
        arguments=[
            Parameter(name=name, value=parameter_string(getattr(settings, field)), description=desc)
            for name, field, desc in RUN_PARAMETERS
        ],
        volumes=[EmptyDirVolume(name="tmp", size_limit="20Gi")],
        service_account_name=settings.service_account,
        # No IDs by default: OpenShift's restricted-v2 SCC rejects pods that pin runAsUser/fsGroup outside the
        # namespace's range and assigns its own; elsewhere the images' numeric USER 65532 applies. runAsNonRoot
        # is verifiable either way. Explicit IDs are opt-in (settings.run_as_user / run_as_group / fs_group).
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=settings.run_as_user, run_as_group=settings.run_as_group,
            fs_group=settings.fs_group, seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
        ),
        # The whole run, queue time included: a Kueue-gated pod never starts, so no pod deadline counts down while
        # it waits. Past it the controller fails pending nodes and stops running pods (workflow/controller/
        # exec_control.go, operator.go failNodesWithoutCreatedPodsAfterDeadlineOrShutdown) and retries stop
        # (processNodeRetries: "retry exceeded workflow deadline").
        active_deadline_seconds=settings.active_deadline_seconds,
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        labels={"app.kubernetes.io/name": "kubescribe", "app.kubernetes.io/component": "pipeline"},
    )


def build_workflow_template(settings: PipelineSettings | None = None) -> WorkflowTemplate:
    settings = settings or PipelineSettings()
    with WorkflowTemplate(name=settings.name, **_spec_kwargs(settings)) as wt:
        _templates(settings)
    return wt


def build_workflow(settings: PipelineSettings | None = None, name: str | None = None) -> Workflow:
    """A standalone Workflow with the same templates (what the local runner executes)."""
    settings = settings or PipelineSettings()
    naming = {"name": name} if name else {"generate_name": f"{settings.name}-"}
    with Workflow(**naming, **_spec_kwargs(settings)) as w:
        _templates(settings)
    return w
