"""``kubescribe run``: transcribe and summarize a folder, files or globs (local or S3) on this machine.

A preflight (:mod:`workflows.preflight`) checks everything that can fail in seconds first. Then it builds the same Argo Workflow that a cluster would run (``workflows.pipeline.build_workflow``, with the
:data:`~workflows.settings.LOCAL_PROFILE` defaults) and executes it with the local runner (``workflows.local``):
real Whisper, a real llama.cpp server (started here unless an LLM URL is given), the real step code. Exit status:
0 when every file succeeded, 1 when any failed, 2 on usage/setup errors, 128+signal when stopped by SIGTERM (143)
or SIGINT (130): every child process is stopped first.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from steps.events import EVENTS_ENV
from steps.store import StoreError, open_store
from steps.urls import format_userinfo, redact_url, split_credentials
from workflows import preflight as check
from workflows.inputs import InputError, Inputs, resolve_inputs
from workflows.local import LocalRunner, LocalRunnerError
from workflows.local.llm_server import LlamaServer, LlamaServerError
from workflows.local.shutdown import Interrupted, SignalStop
from workflows.pipeline import build_workflow
from workflows.preflight import PreflightError
from workflows.run_progress import EventsTail, JsonView, Poller, ProgressView, RunProgress
from workflows.run_view import (console, print_partial, print_report, print_texts, safe, step_failed_line,
                                stopped_line)
from workflows.settings import (
    LOCAL_PROFILE,
    SECRET_KEY_LLM_BASIC_AUTH,
    SECRET_KEY_LLM_TOKEN,
    SECRET_KEY_S3_ACCESS,
    SECRET_KEY_S3_SECRET,
    PipelineSettings,
)

#: The local stand-ins for the cluster's Secrets (PipelineSettings.s3_secret, llm_secret): the runner hands their
#: keys to the steps as a cluster would, filled from this process's environment and --llm-url's credentials.
LOCAL_S3_SECRET = "kubescribe-s3"
LOCAL_LLM_SECRET = "kubescribe-llm"


@dataclass(frozen=True)
class RunOptions:
    """What ``kubescribe run`` was asked for (its flags; ``workflows/cli.py`` gives the defaults)."""

    inputs: list[str]
    out: str
    model: str
    language: str
    task: str
    beam_size: int
    temperature: float
    initial_prompt: str
    output_format: str
    word_timestamps: bool
    no_vad: bool
    llm_url: str | None
    llm_model: str | None
    gguf: str | None
    context_tokens: int
    max_output_tokens: int
    concurrency: int
    shard_seconds: int
    max_shards: int
    only_new: bool
    parallelism: int
    threads: int
    accelerator: str
    slots: int
    show: bool
    workdir: str | None
    output: str = "text"  # "json": JSON lines of events and the final report on stdout
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def local_accelerator() -> tuple[str, dict[str, int]]:
    """Whole local GPUs when torch sees any (admitted one per Whisper task), else CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return "nvidia.com/gpu", {"nvidia.com/gpu": torch.cuda.device_count()}
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "cpu", {}


def local_secrets(uses_s3: bool, llm_credentials: tuple[str, str] | None) -> dict[tuple[str, str], str]:
    """(Secret name, key) -> value for the runner: what the cluster's Secrets would hold."""
    secrets = {}
    if uses_s3:
        secrets[(LOCAL_S3_SECRET, SECRET_KEY_S3_ACCESS)] = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secrets[(LOCAL_S3_SECRET, SECRET_KEY_S3_SECRET)] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if llm_credentials:
        secrets[(LOCAL_LLM_SECRET, SECRET_KEY_LLM_TOKEN)] = os.environ.get("LLM_API_KEY", "")
        secrets[(LOCAL_LLM_SECRET, SECRET_KEY_LLM_BASIC_AUTH)] = format_userinfo(llm_credentials)
    return secrets


def run_with_signals(o: RunOptions) -> int:
    """:func:`run_local` with SIGTERM/SIGINT handled: every child (running steps, the local llama-server) is
    stopped, and the exit status is 128+signal, no traceback."""
    with SignalStop() as signals:
        try:
            return run_local(o, signals)
        except Interrupted as e:  # outside the runner (preflight, report): nothing of ours is left running
            console.print(stopped_line(e, None), soft_wrap=True)
            return e.exit_code


def run_local(o: RunOptions, signals: SignalStop | None = None) -> int:
    """Run the pipeline locally; the exit status (see the module doc)."""
    try:
        prepared = preflight(o)
    except (PreflightError, InputError) as e:
        console.print(f"[red]error:[/red] {safe(e)}", soft_wrap=True)
        return 2
    if prepared is None:  # --only-new and nothing new: nothing runs, report.json stays as it was
        return 0
    return execute(o, prepared, signals or SignalStop())  # run_with_signals() installs the handlers


@dataclass(frozen=True)
class Prepared:
    """What the preflight found: where things are and the settings, all checked."""

    inputs: Inputs
    out: str
    settings: PipelineSettings  # llm_url/llm_model are placeholders when the local server is started later
    llm_url: str | None
    llm_credentials: tuple[str, str] | None
    uses_s3: bool
    capacity: dict[str, int]


def note(o: RunOptions, text: str) -> None:
    """A line for people (stderr), left out with -q and -o json."""
    if o.verbosity >= 0 and o.output != "json":
        console.print(text, soft_wrap=True)


def preflight(o: RunOptions) -> Prepared | None:
    """Every check that costs seconds, in order; raises PreflightError/InputError (one line, exit 2). None: with
    --only-new there is nothing new (said here)."""
    from steps.decode_options import parse_language, parse_output_formats, parse_task, temperatures

    check.check_positive(slots=o.slots)
    try:  # whisper's own options, with the step's own rules
        parse_language(o.language)
        parse_task(o.task)
        parse_output_formats(o.output_format)
        temperatures(o.temperature, 0.2)
    except ValueError as e:
        raise PreflightError(str(e)) from None
    if o.task == "translate" and o.model.endswith(".en"):
        raise PreflightError(f"--task translate needs a multilingual model; {o.model} is English-only "
                             "(pass e.g. --model small, or --task transcribe)")
    llm_url, llm_credentials = split_credentials(o.llm_url) if o.llm_url else (None, None)
    uses_s3 = is_s3(o.out) or any(is_s3(i) for i in o.inputs)
    accelerator, capacity = local_accelerator() if o.accelerator == "auto" else (o.accelerator, {})
    if o.accelerator not in ("auto", "cpu"):
        capacity = {o.accelerator: o.slots}
    fields = {
        **LOCAL_PROFILE,  # what the options below leave out (retries)
        "name": "kubescribe",
        "input": "-",
        "output": o.out,
        "whisper_model": o.model,
        "language": "" if o.language == "auto" else o.language,
        "task": o.task,
        "beam_size": o.beam_size,
        "temperature": o.temperature,
        "initial_prompt": o.initial_prompt,
        "output_format": o.output_format,
        "word_timestamps": o.word_timestamps,
        "vad": not o.no_vad,
        "llm_url": llm_url or "http://127.0.0.1/v1",  # the local server's, once started
        "llm_model": o.llm_model or "default",
        "shard_seconds": o.shard_seconds,
        "max_shards": o.max_shards,
        "only_new": o.only_new,
        "accelerator": accelerator,
        "parallelism": o.parallelism,
        "summarize_concurrency": o.concurrency,
        "context_tokens": o.context_tokens,
        "max_output_tokens": o.max_output_tokens,
        "threads": o.threads,
        "s3_endpoint": os.environ.get("KUBESCRIBE_S3_ENDPOINT") if uses_s3 else None,
        "s3_secret": LOCAL_S3_SECRET if uses_s3 else None,
        "llm_secret": LOCAL_LLM_SECRET if llm_credentials else None,
    }
    check.check_settings(fields)
    out = check.check_output(o.out)
    for url in o.inputs:
        check.check_store(url, "AUDIO")
    inputs = resolve_inputs(o.inputs)
    check.check_model(o.model)
    if llm_url:
        check.check_llm(llm_url, llm_credentials, redact_url(o.llm_url or ""))
    else:
        check.check_gguf(o.gguf)
    audio = check.audio_inputs(inputs.root, inputs.include)
    if not audio:
        raise PreflightError(f"no audio files found in {' '.join(o.inputs)}")
    if o.only_new and not check.new_inputs(audio, out):
        note(o, f"nothing new: {len(audio)} input(s) were already processed")
        return None
    settings = check.check_settings({**fields, "input": inputs.root, "output": out})
    return Prepared(inputs, out, settings, llm_url, llm_credentials, uses_s3, capacity)


def execute(o: RunOptions, p: Prepared, signals: SignalStop) -> int:
    """Start the local LLM server if needed, run the workflow with progress, then show the report."""
    out = p.out
    run_id = f"kubescribe-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"
    server = None
    workdir: Path | None = None
    view = JsonView() if o.output == "json" else None
    try:
        settings = p.settings
        if not p.llm_url:
            server = LlamaServer(model=Path(o.gguf) if o.gguf else None, ctx_per_slot=o.context_tokens,
                                 parallel=o.concurrency, threads=1,
                                 log_path=Path(out) / ".kubescribe" / "llama-server.log" if not is_s3(out) else None)
            with console.status("starting local llama.cpp server"):
                server.start()
            settings = settings.model_copy(update={"llm_url": server.url, "llm_model": server.model})
            note(o, f"LLM: local llama-server {server.url} ({server.model}; demo-grade model, point --llm-url or "
                    "--gguf at a real one)")
        if p.inputs.include is not None:  # the plan step reads the selection from the run's state
            from steps.plan import selection_key

            open_store(out).write_text(selection_key(run_id), json.dumps({"include": p.inputs.include}))
        workflow = build_workflow(settings, name=run_id).to_dict()
        workdir = Path(o.workdir) if o.workdir else (Path(out) / ".kubescribe" / "local" if not is_s3(out)
                                                     else Path(".kubescribe-local"))
        events_dir = workdir / "events" / run_id
        on_log = _echo_log if o.verbosity > 0 and o.output != "json" else None
        if view is not None or o.verbosity < 0:
            view = view or JsonView(print_events=False)
            result = _run(p, workflow, workdir, events_dir, view, on_log, signals)
        else:
            with ProgressView.make_progress(console) as progress:
                view = ProgressView(progress, verbose=o.verbosity > 0)
                result = _run(p, workflow, workdir, events_dir, view, on_log, signals)
    except (LlamaServerError, LocalRunnerError, StoreError) as e:
        console.print(f"[red]error:[/red] {safe(e, multiline=True)}")
        return 2
    except Interrupted as e:
        console.print(stopped_line(e, workdir), soft_wrap=True)
        return e.exit_code
    finally:
        if server is not None:
            server.stop()
    return finish(o, p, run_id, result, view.state if view is not None else RunProgress())


def _run(p: Prepared, workflow: dict, workdir: Path, events_dir: Path, view, on_log, signals: SignalStop):
    def on_event(ev) -> None:
        view.on_runner_event(ev)
        line = step_failed_line(ev)
        if line:
            console.print(line, soft_wrap=True)

    runner = LocalRunner(workdir, capacity=p.capacity, secrets=local_secrets(p.uses_s3, p.llm_credentials),
                         on_event=on_event, on_log=on_log, events_env=EVENTS_ENV, events_dir=events_dir)
    with Poller(EventsTail(events_dir), view), signals.cancels(runner.cancel):  # SIGTERM/SIGINT: kill, start nothing
        return runner.run(workflow)


def _echo_log(node: str, line: str) -> None:
    """-v: every step's own log line, as it comes."""
    template = node.split("(")[0].split(".")[-1]
    console.print(f"[dim]{safe(template)}[/dim] {safe(line)}", soft_wrap=True)


def finish(o: RunOptions, p: Prepared, run_id: str, result, progress: RunProgress) -> int:
    """Read the run's report back and show it; the exit status."""
    # Every store access below is guarded: an S3 outage that outlasted the steps' retries ends in one line
    # (exit 2) plus what did finish, never a traceback.
    out = p.out
    report = None
    try:
        store = open_store(out)
        from steps import layout

        key = layout.run_report(run_id) if store.exists(layout.run_report(run_id)) else layout.REPORT
        if store.exists(key):
            report = json.loads(store.read_text(key))
        if isinstance(report, dict) and report.get("run_id") == run_id:
            if o.output == "json":
                print(json.dumps({"event": "result", "run_id": run_id, "output": out, "report": report}), flush=True)
            elif o.verbosity < 0:
                t = report["totals"]
                print(f"{t['succeeded']}/{t['files']} succeeded", flush=True)
            else:
                if o.show:
                    print_texts(report, store)
                print_report(report, out)
            if o.verbosity < 0 or o.output == "json":
                for f in report["files"]:
                    if f["error"]:
                        console.print(f"[red]failed[/red] {safe(f['error'])}", soft_wrap=True)
    except (StoreError, ValueError) as e:  # ValueError: report.json is not JSON
        what = e if isinstance(e, StoreError) else f"cannot read the run's report {out}/report.json: {e}"
        return _broke_off(o, run_id, out, str(what), result, progress)
    if not isinstance(report, dict) or report.get("run_id") != run_id:
        return _broke_off(o, run_id, out, f"the run ended ({result.phase}) without a report: {result.message}",
                          result, progress)
    if report["totals"]["files"] == 0:
        if report["totals"].get("already_processed"):
            note(o, f"nothing new: {report['totals']['already_processed']} input(s) were already processed")
            return 0
        console.print(f"[yellow]no audio files found in {safe(' '.join(o.inputs))}[/yellow]", soft_wrap=True)
        return 1
    return 0 if report["totals"]["failed"] == 0 else 1


def _broke_off(o: RunOptions, run_id: str, out: str, error: str, result, progress: RunProgress) -> int:
    """The run ended without a report to show: one error line and what finished (exit 2); ``-o json`` ends with a
    result line too, whose report is null."""
    console.print(f"[red]error:[/red] {safe(error)}", soft_wrap=True)
    print_partial(result, progress)
    if o.output == "json":
        print(json.dumps({"event": "result", "run_id": run_id, "output": out, "report": None, "error": error}),
              flush=True)
    return 2
