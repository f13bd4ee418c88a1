"""``kubescribe``: run the pipeline locally, render its manifests, or talk to a cluster.

This module parses the command line and dispatches: ``run`` to :mod:`workflows.local_run`, ``runs``/``show`` to
:mod:`workflows.runs`, ``render`` to :mod:`workflows.render`, ``submit`` / ``templates install`` / ``doctor`` to
:mod:`workflows.cluster`. argparse stays the framework (the cluster and capacity commands plug their subparsers in);
shtab prints shell completion from the same parser (``kubescribe --print-completion bash``), and ``run``'s defaults
also come from a settings file and ``KUBESCRIBE_*`` variables (:mod:`workflows.run_config`, pydantic-settings).

``kubescribe run AUDIO... --out OUT_DIR`` builds the same Argo Workflow that a cluster would run and executes
it with the local runner: real Whisper, a real llama.cpp server (started here unless ``--llm-url`` is given),
the real step code. Exit status: 0 when every file succeeded, 1 when any failed, 2 on usage/setup errors,
128+signal when stopped by SIGTERM (143) or SIGINT (130): every child process is stopped first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from steps.defaults import BEAM_SIZE, OUTPUT_FORMAT, TEMPERATURE
from workflows.settings import LOCAL_PROFILE


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in help, except where there is none to show (None, False, or already in the text)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == "" or \
                action.default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("kubescribe")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        return "0+unknown"


def cmd_run(a: argparse.Namespace) -> int:
    from workflows.local_run import RunOptions, run_with_signals

    verbosity = 1 if a.verbose else -1 if a.quiet else 0
    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(RunOptions) if f.name not in ("verbosity",)}
    return run_with_signals(RunOptions(**{**values, "verbosity": verbosity}))


def cmd_render(a: argparse.Namespace) -> int:
    from workflows.render import render_all

    for path in render_all(Path(a.out)):
        print(path)
    return 0


def add_run_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    local = LOCAL_PROFILE
    r = sub.add_parser("run", help="transcribe and summarize a folder, files or globs locally (the embedded default)",
                       formatter_class=HelpFormatter,
                       description="Transcribe and summarize audio on this machine: the cluster's workflow, run by the "
                                   "local runner. Defaults also come from --config FILE (YAML, option: value) and "
                                   "KUBESCRIBE_<OPTION> environment variables; flags win.")
    r.add_argument("inputs", nargs="+", metavar="AUDIO",
                   help="a folder, audio files or globs (quoted globs are expanded here, ** included); or s3://bucket/"
                        "prefix, s3://bucket/key or s3://bucket/prefix/*.wav with KUBESCRIBE_S3_ENDPOINT set")
    r.add_argument("--out", help="output folder (or s3://bucket/prefix); required")
    r.add_argument("--config", metavar="FILE", help="YAML settings file with defaults for these options "
                   "(beam_size: 1, ...)")
    r.add_argument("-o", "--output", choices=["text", "json"], default="text",
                   help="json: JSON lines on stdout for scripts (every progress event, then the final report)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", help="also print each step's own log lines and each file's outcome")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress: only errors and the final count")
    w = r.add_argument_group("Whisper (as in whisper's own command line)")
    w.add_argument("--model", default="tiny.en", help="whisper model name, checkpoint path or CTranslate2 folder "
                   "(tiny.en is bundled)")
    w.add_argument("--language", default="auto", help="ISO code or language name; auto: detect")
    w.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                   help="translate: into English (multilingual models only)")
    w.add_argument("--output-format", default=OUTPUT_FORMAT,
                   help="transcript formats, comma-separated: txt, srt, vtt, tsv, json, or all (txt always)")
    w.add_argument("--initial-prompt", default="", help="text to condition Whisper on (names, spellings)")
    w.add_argument("--word-timestamps", action=argparse.BooleanOptionalAction, default=True,
                   help="word-level timestamps in the json transcript")
    w.add_argument("--temperature", type=float, default=TEMPERATURE, help="first sampling temperature; falls back "
                   "in steps of 0.2 up to 1")
    w.add_argument("--beam-size", type=int, default=BEAM_SIZE, help="Whisper beam width; 1 is greedy (faster)")
    w.add_argument("--no-vad", action="store_true", help="decode the whole file, silence included")
    s = r.add_argument_group("summaries")
    s.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL; unset: start a local llama.cpp server")
    s.add_argument("--llm-model", default=None, help="model name for --llm-url")
    s.add_argument("--gguf", default=None, help="GGUF model for the local llama.cpp server (unset: bundled SmolLM2-135M)")
    s.add_argument("--context-tokens", type=int, default=local["context_tokens"], help="LLM context window per request")
    s.add_argument("--max-output-tokens", type=int, default=local["max_output_tokens"], help="LLM output tokens per request")
    s.add_argument("--concurrency", type=int, default=local["summarize_concurrency"], help="summaries in flight at once")
    x = r.add_argument_group("run")
    x.add_argument("--shard-seconds", type=int, default=local["shard_seconds"], help="target audio seconds per Whisper task")
    x.add_argument("--max-shards", type=int, default=local["max_shards"], help="most Whisper tasks per run")
    x.add_argument("--only-new", action="store_true", help="skip inputs that finished in an earlier run into --out")
    x.add_argument("--parallelism", type=int, default=local["parallelism"], help="Whisper tasks running at once")
    x.add_argument("--threads", type=int, default=local["threads"], help="torch threads per Whisper task")
    x.add_argument("--accelerator", default="auto", help="auto (local GPUs if any, else CPU), cpu, or an extended resource name")
    x.add_argument("--slots", type=int, default=1, help="local capacity of --accelerator")
    x.add_argument("--show", action="store_true", help="print every transcript and summary at the end")
    x.add_argument("--workdir", default=None, help="where the local runner keeps task logs (unset: OUT/.kubescribe/local)")
    r.set_defaults(fn=cmd_run)
    return r


def build_parser() -> argparse.ArgumentParser:
    import shtab

    p = argparse.ArgumentParser(prog="kubescribe", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    shtab.add_argument_to(p, ["--print-completion"], help="print a shell completion script (bash, zsh, tcsh) and exit")
    sub = p.add_subparsers(dest="command", required=True)
    add_run_parser(sub)

    from workflows.runs import add_runs_commands

    add_runs_commands(sub)

    rd = sub.add_parser("render", help="write the Argo manifests (WorkflowTemplate, CronWorkflow) into a folder",
                        description="Write workflowtemplate.yaml and cronworkflow.yaml, rendered from the hera source "
                                    "with the default settings. The Helm chart's generated templates are rewritten "
                                    "by `make chart` (tools/chart.py), not by the installed CLI.")
    rd.add_argument("--out", required=True, help="folder for workflowtemplate.yaml and cronworkflow.yaml")
    rd.set_defaults(fn=cmd_render)

    from workflows.cluster import add_cluster_commands

    add_cluster_commands(sub)
    from workflows.capacity.cli import add_capacity_parser  # issue 12: capacity planning (pure Python, no cluster)
    add_capacity_parser(sub)
    return p


def _run_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse; for ``run``, defaults from --config and KUBESCRIBE_* first (flags still win)."""
    from workflows.run_config import ConfigError, load_run_defaults

    p = build_parser()
    args = p.parse_args(argv)
    if args.command != "run":
        return args
    run = _run_parser(p)
    try:
        defaults = load_run_defaults(args.config)
    except ConfigError as e:
        run.error(str(e))
    if defaults:
        run.set_defaults(**defaults)
        args = p.parse_args(argv)
    if not args.out:
        run.error("the following arguments are required: --out")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        return args.fn(args)  # `run` handles SIGTERM/SIGINT itself; the cluster commands handle Ctrl-C themselves
    except KeyboardInterrupt:  # Ctrl-C while parsing or importing: no traceback
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
