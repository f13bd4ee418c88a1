"""``kubescribe``: run the pipeline locally, or render its manifests.

``kubescribe run AUDIO_DIR --out OUT_DIR`` builds the same Argo Workflow that a cluster would run and executes
it with the local runner: real Whisper, a real llama.cpp server (started here unless ``--llm-url`` is given),
the real step code. Exit status: 0 when every file succeeded, 1 when any failed, 2 on usage/setup errors.
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workflows.settings import PipelineSettings

console = Console(stderr=True)


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
            self.progress.console.print(f"[red]step {ev.node} {ev.phase.lower()}[/red]: {ev.message}")

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
            self.progress.console.print(f"[yellow]{template}[/yellow] {text}")


def _print_texts(report: dict, store) -> None:
    console_out = Console()
    for f in report["files"]:
        for kind in ("txt", "summary"):
            key = f["outputs"][kind]
            if key:
                title = "transcript" if kind == "txt" else "summary"
                console_out.rule(f"{f['input']} — {title}")
                console_out.print(store.read_text(key).strip() or "(empty: no speech)", markup=False)


def _print_report(report: dict, out: str) -> None:
    console_out = Console()
    table = Table(title=f"kubescribe report ({report['run_id']})")
    for col in ("input", "status", "audio s", "transcript", "summary"):
        table.add_column(col, overflow="fold")
    for f in report["files"]:
        ok = f["status"] == "succeeded"
        table.add_row(
            f["input"],
            "[green]succeeded[/green]" if ok else "[red]failed[/red]",
            f"{f['duration_s']:.1f}" if f["duration_s"] else "-",
            f["outputs"]["txt"] or "-",
            f["outputs"]["summary"] or "-",
        )
    console_out.print(table)
    for f in report["files"]:
        if f["error"]:
            console_out.print(f"[red]failed[/red] {f['error']}")
    t = report["totals"]
    rtf = f", real-time factor {t['transcribe_rtf']:.3f}" if t["transcribe_rtf"] else ""
    ttft = f", mean TTFT {t['ttft_mean_s']:.2f} s" if t["ttft_mean_s"] else ""
    console_out.print(f"{t['succeeded']}/{t['files']} succeeded ({t['transcripts_cached']} transcripts reused){rtf}{ttft}")
    console_out.print(f"transcripts: {out}/transcripts/\nsummaries:   {out}/summaries/\nreport:      {out}/report.json")


def cmd_run(a: argparse.Namespace) -> int:
    from steps.store import StoreError, open_store
    from workflows.local import LocalRunner, LocalRunnerError
    from workflows.local.llm_server import LlamaServer, LlamaServerError
    from pydantic import ValidationError

    from workflows.pipeline import build_workflow

    audio, out = a.audio_dir, a.out
    if not _is_s3(audio):
        if not Path(audio).is_dir():
            console.print(f"[red]error:[/red] audio directory not found: {audio}")
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
                console.print(f"[red]error:[/red] {e}")
                return 2

    accelerator, capacity = _local_accelerator() if a.accelerator == "auto" else (a.accelerator, {})
    if a.accelerator not in ("auto", "cpu"):
        capacity = {a.accelerator: a.slots}
    run_id = f"kubescribe-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:5]}"
    server = None
    try:
        llm_url, llm_model, context = a.llm_url, a.llm_model, a.context_tokens
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
            retries=1,
        )
        workflow = build_workflow(settings, name=run_id).to_dict()
        secrets = {}
        if uses_s3:
            secrets = {("kubescribe-s3", "accesskey"): os.environ.get("AWS_ACCESS_KEY_ID", ""),
                       ("kubescribe-s3", "secretkey"): os.environ.get("AWS_SECRET_ACCESS_KEY", "")}
        workdir = Path(a.workdir) if a.workdir else (Path(out) / ".kubescribe" / "local" if not _is_s3(out) else Path(".kubescribe-local"))
        with Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            view = _ProgressView(progress)
            runner = LocalRunner(workdir, capacity=capacity, secrets=secrets, on_event=view.on_event, on_log=view.on_log)
            result = runner.run(workflow)
    except (LlamaServerError, LocalRunnerError, StoreError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        console.print(f"[red]error:[/red] invalid settings: {problems}")
        return 2
    finally:
        if server is not None:
            server.stop()

    store = open_store(out)
    if not store.exists("report.json") or json.loads(store.read_text("report.json"))["run_id"] != run_id:
        console.print(f"[red]error:[/red] the run ended ({result.phase}) without a report: {result.message}")
        for name, node in result.nodes.items():
            if node.phase in ("Failed", "Error") and node.log_path:
                console.print(f"  {name}: {node.message} (log: {node.log_path})")
        return 2
    report = json.loads(store.read_text("report.json"))
    if a.show:
        _print_texts(report, store)
    _print_report(report, out)
    if report["totals"]["files"] == 0:
        if report["totals"]["already_processed"]:
            console.print(f"nothing new: {report['totals']['already_processed']} input(s) were already processed")
            return 0
        console.print(f"[yellow]no audio files found under {audio}[/yellow]")
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
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
