"""``kubescribe run``: transcribe and summarize a folder (or S3 prefix) on this machine.

It builds the same Argo Workflow that a cluster would run (``workflows.pipeline.build_workflow``, with the
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

from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from steps.store import StoreError, open_store
from steps.urls import format_userinfo, split_credentials
from workflows.local import LocalRunner, LocalRunnerError
from workflows.local.llm_server import LlamaServer, LlamaServerError
from workflows.local.shutdown import Interrupted, SignalStop
from workflows.pipeline import build_workflow
from workflows.run_view import ProgressView, console, print_partial, print_report, print_texts, safe, stopped_line
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

    audio_dir: str
    out: str
    model: str
    language: str
    beam_size: int
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
    audio, out = o.audio_dir, o.out
    if not is_s3(audio):
        if not Path(audio).is_dir():
            console.print(f"[red]error:[/red] audio directory not found: {safe(audio)}")
            return 2
        audio = str(Path(audio).resolve())
    if not is_s3(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        out = str(Path(out).resolve())
    uses_s3 = is_s3(audio) or is_s3(out)
    for url in (audio, out):
        if is_s3(url):
            try:
                open_store(url).check()
            except StoreError as e:
                console.print(f"[red]error:[/red] {safe(e)}")
                return 2

    accelerator, capacity = local_accelerator() if o.accelerator == "auto" else (o.accelerator, {})
    if o.accelerator not in ("auto", "cpu"):
        capacity = {o.accelerator: o.slots}
    run_id = f"kubescribe-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"
    server = None
    workdir: Path | None = None
    signals = signals or SignalStop()  # run_with_signals() installs the handlers; a bare call: no-op
    try:
        # Credentials in --llm-url go to the step through the environment (a local "Secret"), never into the
        # workflow, whose parameters become process arguments.
        llm_url, llm_credentials = split_credentials(o.llm_url) if o.llm_url else (o.llm_url, None)
        llm_model, context = o.llm_model, o.context_tokens
        if not llm_url:
            server = LlamaServer(model=Path(o.gguf) if o.gguf else None, ctx_per_slot=context, parallel=o.concurrency,
                                 threads=1, log_path=Path(out) / ".kubescribe" / "llama-server.log" if not is_s3(out) else None)
            with console.status("starting local llama.cpp server"):
                server.start()
            llm_url, llm_model = server.url, server.model
            console.print(f"LLM: local llama-server {llm_url} ({llm_model}; demo-grade model, point --llm-url or --gguf at a real one)")
        settings = PipelineSettings(**{
            **LOCAL_PROFILE,  # what the options below leave out (retries)
            "name": "kubescribe",
            "input": audio,
            "output": out,
            "whisper_model": o.model,
            "language": o.language or "",
            "beam_size": o.beam_size,
            "llm_url": llm_url,
            "llm_model": llm_model or "default",
            "shard_seconds": o.shard_seconds,
            "max_shards": o.max_shards,
            "only_new": o.only_new,
            "accelerator": accelerator,
            "parallelism": o.parallelism,
            "summarize_concurrency": o.concurrency,
            "context_tokens": context,
            "max_output_tokens": o.max_output_tokens,
            "threads": o.threads,
            "s3_endpoint": os.environ.get("KUBESCRIBE_S3_ENDPOINT") if uses_s3 else None,
            "s3_secret": LOCAL_S3_SECRET if uses_s3 else None,
            "llm_secret": LOCAL_LLM_SECRET if llm_credentials else None,
        })
        workflow = build_workflow(settings, name=run_id).to_dict()
        secrets = local_secrets(uses_s3, llm_credentials)
        workdir = Path(o.workdir) if o.workdir else (Path(out) / ".kubescribe" / "local" if not is_s3(out) else Path(".kubescribe-local"))
        with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            view = ProgressView(progress)
            runner = LocalRunner(workdir, capacity=capacity, secrets=secrets, on_event=view.on_event, on_log=view.on_log)
            with signals.cancels(runner.cancel):  # SIGTERM/SIGINT: kill running steps, start nothing new
                result = runner.run(workflow)
    except (LlamaServerError, LocalRunnerError, StoreError) as e:
        console.print(f"[red]error:[/red] {safe(e, multiline=True)}")
        return 2
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        console.print(f"[red]error:[/red] invalid settings: {safe(problems)}")
        return 2
    except Interrupted as e:
        console.print(stopped_line(e, workdir), soft_wrap=True)
        return e.exit_code
    finally:
        if server is not None:
            server.stop()

    # Every store access below is guarded: an S3 outage that outlasted the steps' retries ends in one line
    # (exit 2) plus what did finish, never a traceback.
    report = None
    try:
        store = open_store(out)
        if store.exists("report.json"):
            report = json.loads(store.read_text("report.json"))
        if isinstance(report, dict) and report.get("run_id") == run_id:
            if o.show:
                print_texts(report, store)
            print_report(report, out)
    except (StoreError, ValueError) as e:  # ValueError: report.json is not JSON
        what = e if isinstance(e, StoreError) else f"cannot read the run's report {out}/report.json: {e}"
        console.print(f"[red]error:[/red] {safe(what)}", soft_wrap=True)
        print_partial(result)
        return 2
    if not isinstance(report, dict) or report.get("run_id") != run_id:
        console.print(f"[red]error:[/red] the run ended ({result.phase}) without a report: {safe(result.message)}",
                      soft_wrap=True)
        print_partial(result)
        return 2
    if report["totals"]["files"] == 0:
        if report["totals"]["already_processed"]:
            console.print(f"nothing new: {report['totals']['already_processed']} input(s) were already processed")
            return 0
        console.print(f"[yellow]no audio files found under {safe(audio)}[/yellow]")
        return 1
    return 0 if report["totals"]["failed"] == 0 else 1
