"""``kubescribe``: run the pipeline locally, or render its manifests.

``kubescribe run AUDIO_DIR --out OUT_DIR`` builds the same Argo Workflow that a cluster would run and executes
it with the local runner: real Whisper, a real llama.cpp server (started here unless ``--llm-url`` is given),
the real step code. Exit status: 0 when every file succeeded, 1 when any failed, 2 on usage/setup errors,
128+signal when stopped by SIGTERM (143) or SIGINT (130): every child process is stopped first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from steps.sanitize import show_control
from workflows.settings import PipelineSettings

console = Console(stderr=True, emoji=False)
#: The local stand-in for the cluster's gateway Secret (PipelineSettings.llm_secret) when --llm-url has credentials.
LOCAL_LLM_SECRET = "kubescribe-llm"



def _safe(text: object, multiline: bool = False) -> str:
    """Outside text (file names, paths, error messages, transcripts, summaries) ready for a rich markup string.

    Control characters become visible escapes (a file named ``\\x1b[2Jx.wav`` must not clear the screen;
    ``multiline`` keeps newlines and tabs), then rich markup is escaped (``[bold]x.wav`` and ``[/x].wav`` are
    printed as they are, never parsed). Every print of such text in this module goes through here.
    """
    if not multiline:
        return escape(show_control(str(text)))
    return escape("\n".join(show_control(line).replace("\\t", "\t") for line in str(text).split("\n")))


def _local_accelerator() -> tuple[str, dict[str, int]]:
    """Whole local GPUs when torch sees any (admitted one per Whisper task), else CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return "nvidia.com/gpu", {"nvidia.com/gpu": torch.cuda.device_count()}
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "cpu", {}


def _is_s3(url: str) -> bool:
    return url.startswith("s3://")


class _ProgressView:
    """Turns runner events and step log lines into rich progress bars."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.total_files: int | None = None

    def bar(self, name: str, total: int | None = None) -> int:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        return self.tasks[name]

    def on_event(self, ev) -> None:
        if ev.kind == "node-running" and ev.template == "plan":
            self.bar("plan", total=1)
        if ev.kind == "node-succeeded" and ev.template == "plan":
            self.progress.update(self.bar("plan", total=1), completed=1)
        if ev.kind in ("node-failed", "node-error") and ev.leaf:
            self.progress.console.print(f"[red]step {_safe(ev.node)} {ev.phase.lower()}[/red]: {_safe(ev.message)}")

    def on_log(self, node: str, line: str) -> None:
        template = node.split("(")[0].split(".")[-1]
        text = line.rstrip()
        if template == "plan" and text.startswith("planned "):
            self.total_files = int(text.split()[1])
            for name in ("transcribe", "summarize"):
                self.progress.update(self.bar(name, total=self.total_files), total=self.total_files)
        if template in ("transcribe", "summarize") and (text.startswith("ok ") or text.startswith("FAILED")):
            self.progress.advance(self.bar(template, total=self.total_files))
        if text.startswith("FAILED") or text.startswith("error:"):
            self.progress.console.print(f"[yellow]{_safe(template)}[/yellow] {_safe(text)}")


def _print_texts(report: dict, store) -> None:
    console_out = Console(emoji=False)
    for f in report["files"]:
        for kind in ("txt", "summary"):
            key = f["outputs"][kind]
            if key:
                title = "transcript" if kind == "txt" else "summary"
                console_out.rule(f"{_safe(f['input'])} — {title}")
                console_out.print(_safe(store.read_text(key).strip() or "(empty: no speech)", multiline=True))


def _print_report(report: dict, out: str) -> None:
    console_out = Console(emoji=False)
    table = Table(title=f"kubescribe report ({_safe(report['run_id'])})")
    for col in ("input", "status", "audio s", "transcript", "summary"):
        table.add_column(col, overflow="fold")
    for f in report["files"]:
        ok = f["status"] == "succeeded"
        table.add_row(
            _safe(f["input"]),
            "[green]succeeded[/green]" if ok else "[red]failed[/red]",
            f"{f['duration_s']:.1f}" if f["duration_s"] else "-",
            _safe(f["outputs"]["txt"] or "-"),
            _safe(f["outputs"]["summary"] or "-"),
        )
    console_out.print(table)
    for f in report["files"]:
        if f["error"]:
            console_out.print(f"[red]failed[/red] {_safe(f['error'])}")
    t = report["totals"]
    rtf = f", real-time factor {t['transcribe_rtf']:.3f}" if t["transcribe_rtf"] else ""
    ttft = f", mean TTFT {t['ttft_mean_s']:.2f} s" if t["ttft_mean_s"] else ""
    console_out.print(f"{t['succeeded']}/{t['files']} succeeded ({t['transcripts_cached']} transcripts reused){rtf}{ttft}")
    out = _safe(out)
    console_out.print(f"transcripts: {out}/transcripts/\nsummaries:   {out}/summaries/\nreport:      {out}/report.json",
                      soft_wrap=True)  # long paths stay whole (copyable); the terminal wraps them


def _step_error(node) -> str:
    """A failed step's message plus its own last ``error: ...`` line (exit codes alone say little)."""
    try:
        lines = node.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    last = next((line for line in reversed(lines) if line.startswith("error: ")), None)
    return f"{node.message}: {last[len('error: '):]}" if last else node.message


def _print_partial(result) -> None:
    """What finished before a run broke off, from the steps' own output (the store may be unreachable)."""
    done: dict[str, dict[str, None]] = {"transcribe": {}, "summarize": {}}
    for node in result.nodes.values():
        if node.log_path is not None and node.template in done:  # leaf attempts only, not fan-out groups
            for line in (node.result or "").splitlines():
                if line.startswith("ok "):  # "ok      calls/a.mp3 (3.1s, RTF 0.120)"
                    done[node.template][line[3:].strip().rsplit(" (", 1)[0]] = None
    for step, verb in (("transcribe", "transcribed"), ("summarize", "summarized")):
        names = ", ".join(_safe(n) for n in done[step]) or "nothing"
        console.print(f"{verb} before the run ended: {names}", soft_wrap=True)
    for name, node in result.nodes.items():
        if node.phase in ("Failed", "Error") and node.log_path:
            console.print(f"  {_safe(name)}: {_safe(_step_error(node))} (log: {_safe(node.log_path)})", soft_wrap=True)
    console.print(f"task logs: {_safe(result.run_dir)}", soft_wrap=True)


def _stopped_line(e, workdir: Path | None) -> str:
    logs = f"; task logs under {_safe(workdir)}" if workdir is not None else ""
    return (f"[yellow]stopped by {e.name}[/yellow]: every process it started was ended and nothing new started; "
            f"finished outputs are kept, re-run to resume{logs}")


def cmd_run(a: argparse.Namespace) -> int:
    from steps.store import StoreError, open_store
    from workflows.local import LocalRunner, LocalRunnerError
    from workflows.local.llm_server import LlamaServer, LlamaServerError
    from workflows.local.shutdown import Interrupted, SignalStop
    from pydantic import ValidationError

    from steps.urls import format_userinfo, split_credentials
    from workflows.pipeline import build_workflow

    audio, out = a.audio_dir, a.out
    if not _is_s3(audio):
        if not Path(audio).is_dir():
            console.print(f"[red]error:[/red] audio directory not found: {_safe(audio)}")
            return 2
        audio = str(Path(audio).resolve())
    if not _is_s3(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        out = str(Path(out).resolve())
    uses_s3 = _is_s3(audio) or _is_s3(out)
    for url in (audio, out):
        if _is_s3(url):
            try:
                open_store(url).check()
            except StoreError as e:
                console.print(f"[red]error:[/red] {_safe(e)}")
                return 2

    accelerator, capacity = _local_accelerator() if a.accelerator == "auto" else (a.accelerator, {})
    if a.accelerator not in ("auto", "cpu"):
        capacity = {a.accelerator: a.slots}
    run_id = f"kubescribe-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"
    server = None
    workdir: Path | None = None
    signals = getattr(a, "signals", None) or SignalStop()  # main() installs the handlers; a bare call: no-op
    try:
        # Credentials in --llm-url go to the step through the environment (a local "Secret"), never into the
        # workflow, whose parameters become process arguments.
        llm_url, llm_credentials = split_credentials(a.llm_url) if a.llm_url else (a.llm_url, None)
        llm_model, context = a.llm_model, a.context_tokens
        if not llm_url:
            server = LlamaServer(model=Path(a.gguf) if a.gguf else None, ctx_per_slot=context, parallel=a.concurrency,
                                 threads=1, log_path=Path(out) / ".kubescribe" / "llama-server.log" if not _is_s3(out) else None)
            with console.status("starting local llama.cpp server"):
                server.start()
            llm_url, llm_model = server.url, server.model
            console.print(f"LLM: local llama-server {llm_url} ({llm_model}; demo-grade model, point --llm-url or --gguf at a real one)")
        settings = PipelineSettings(
            name="kubescribe",
            input=audio,
            output=out,
            whisper_model=a.model,
            language=a.language or "",
            beam_size=a.beam_size,
            llm_url=llm_url,
            llm_model=llm_model or "default",
            shard_seconds=a.shard_seconds,
            max_shards=a.max_shards,
            only_new=a.only_new,
            accelerator=accelerator,
            parallelism=a.parallelism,
            summarize_concurrency=a.concurrency,
            context_tokens=context,
            max_output_tokens=a.max_output_tokens,
            threads=a.threads,
            s3_endpoint=os.environ.get("KUBESCRIBE_S3_ENDPOINT") if uses_s3 else None,
            s3_secret="kubescribe-s3" if uses_s3 else None,
            llm_secret=LOCAL_LLM_SECRET if llm_credentials else None,
            retries=1,
        )
        workflow = build_workflow(settings, name=run_id).to_dict()
        secrets = {}
        if uses_s3:
            secrets = {("kubescribe-s3", "accesskey"): os.environ.get("AWS_ACCESS_KEY_ID", ""),
                       ("kubescribe-s3", "secretkey"): os.environ.get("AWS_SECRET_ACCESS_KEY", "")}
        if llm_credentials:
            secrets[(LOCAL_LLM_SECRET, "api-key")] = os.environ.get("LLM_API_KEY", "")
            secrets[(LOCAL_LLM_SECRET, "basic-auth")] = format_userinfo(llm_credentials)
        workdir = Path(a.workdir) if a.workdir else (Path(out) / ".kubescribe" / "local" if not _is_s3(out) else Path(".kubescribe-local"))
        with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            view = _ProgressView(progress)
            runner = LocalRunner(workdir, capacity=capacity, secrets=secrets, on_event=view.on_event, on_log=view.on_log)
            with signals.cancels(runner.cancel):  # SIGTERM/SIGINT: kill running steps, start nothing new
                result = runner.run(workflow)
    except (LlamaServerError, LocalRunnerError, StoreError) as e:
        console.print(f"[red]error:[/red] {_safe(e, multiline=True)}")
        return 2
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        console.print(f"[red]error:[/red] invalid settings: {_safe(problems)}")
        return 2
    except Interrupted as e:
        console.print(_stopped_line(e, workdir), soft_wrap=True)
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
            if a.show:
                _print_texts(report, store)
            _print_report(report, out)
    except (StoreError, ValueError) as e:  # ValueError: report.json is not JSON
        what = e if isinstance(e, StoreError) else f"cannot read the run's report {out}/report.json: {e}"
        console.print(f"[red]error:[/red] {_safe(what)}", soft_wrap=True)
        _print_partial(result)
        return 2
    if not isinstance(report, dict) or report.get("run_id") != run_id:
        console.print(f"[red]error:[/red] the run ended ({result.phase}) without a report: {_safe(result.message)}",
                      soft_wrap=True)
        _print_partial(result)
        return 2
    if report["totals"]["files"] == 0:
        if report["totals"]["already_processed"]:
            console.print(f"nothing new: {report['totals']['already_processed']} input(s) were already processed")
            return 0
        console.print(f"[yellow]no audio files found under {_safe(audio)}[/yellow]")
        return 1
    return 0 if report["totals"]["failed"] == 0 else 1


def cmd_render(a: argparse.Namespace) -> int:
    from workflows.chart import CHART_DIR, generate_chart_templates
    from workflows.render import render_all

    if a.chart is None and a.out is None:
        console.print("[red]error:[/red] give --out DIR (manifests) and/or --chart [DIR] (Helm templates)")
        return 2
    paths = render_all(Path(a.out)) if a.out else []
    if a.chart is not None:
        paths += generate_chart_templates(Path(a.chart) if a.chart else CHART_DIR)
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubescribe", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="transcribe and summarize a folder locally (the embedded default)")
    r.add_argument("audio_dir", help="folder of recordings (or s3://bucket/prefix with KUBESCRIBE_S3_ENDPOINT set)")
    r.add_argument("--out", required=True, help="output folder (or s3://bucket/prefix)")
    r.add_argument("--model", default="tiny.en", help="whisper model name, checkpoint path or CTranslate2 dir (default: bundled tiny.en)")
    r.add_argument("--language", default="", help="ISO code; default auto-detect")
    r.add_argument("--beam-size", type=int, default=5, help="Whisper beam width; 1 is greedy (faster)")
    r.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL; default: start a local llama.cpp server")
    r.add_argument("--llm-model", default=None, help="model name for --llm-url")
    r.add_argument("--gguf", default=None, help="GGUF model for the local llama.cpp server (default: bundled SmolLM2-135M)")
    r.add_argument("--context-tokens", type=int, default=4096, help="LLM context window per request")
    r.add_argument("--max-output-tokens", type=int, default=256)
    r.add_argument("--concurrency", type=int, default=2, help="summaries in flight at once")
    r.add_argument("--shard-seconds", type=int, default=600, help="target audio seconds per Whisper task")
    r.add_argument("--max-shards", type=int, default=8)
    r.add_argument("--only-new", action="store_true", help="skip inputs that finished in an earlier run into --out")
    r.add_argument("--parallelism", type=int, default=2, help="Whisper tasks running at once")
    r.add_argument("--threads", type=int, default=1, help="torch threads per Whisper task")
    r.add_argument("--accelerator", default="auto", help="auto (local GPUs if any, else CPU), cpu, or an extended resource name")
    r.add_argument("--slots", type=int, default=1, help="local capacity of --accelerator")
    r.add_argument("--show", action="store_true", help="print every transcript and summary at the end")
    r.add_argument("--workdir", default=None, help="where the local runner keeps task logs")
    r.set_defaults(fn=cmd_run)

    rd = sub.add_parser("render", help="write the Argo manifests, or regenerate the Helm chart's generated templates")
    rd.add_argument("--out", help="folder for workflowtemplate.yaml and cronworkflow.yaml")
    rd.add_argument("--chart", nargs="?", const="", default=None,
                    help="regenerate the chart's templates from the hera source (default: charts/kubescribe)")
    rd.set_defaults(fn=cmd_render)

    from workflows.cluster import add_cluster_commands

    add_cluster_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fn is not cmd_run:  # cluster commands handle Ctrl-C themselves
        return args.fn(args)
    from workflows.local.shutdown import Interrupted, SignalStop

    # SIGTERM/SIGINT stop every child (running steps, the local llama-server) and exit 128+signal, no traceback.
    with SignalStop() as signals:
        args.signals = signals
        try:
            return cmd_run(args)
        except Interrupted as e:  # outside the runner (preflight, report): nothing of ours is left running
            console.print(_stopped_line(e, None), soft_wrap=True)
            return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
