"""``kubescribe``: run the pipeline locally, render its manifests, or talk to a cluster.

This module parses the command line and dispatches: ``run`` to :mod:`workflows.local_run`, ``render`` to
:mod:`workflows.render`, ``submit`` / ``templates install`` / ``doctor`` to :mod:`workflows.cluster`.

``kubescribe run AUDIO_DIR --out OUT_DIR`` builds the same Argo Workflow that a cluster would run and executes
it with the local runner: real Whisper, a real llama.cpp server (started here unless ``--llm-url`` is given),
the real step code. Exit status: 0 when every file succeeded, 1 when any failed, 2 on usage/setup errors,
128+signal when stopped by SIGTERM (143) or SIGINT (130): every child process is stopped first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from steps.defaults import BEAM_SIZE
from workflows.settings import LOCAL_PROFILE


def cmd_run(a: argparse.Namespace) -> int:
    from workflows.local_run import RunOptions, run_with_signals

    return run_with_signals(RunOptions(**{f.name: getattr(a, f.name) for f in dataclasses.fields(RunOptions)}))


def cmd_render(a: argparse.Namespace) -> int:
    from workflows.render import render_all

    for path in render_all(Path(a.out)):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubescribe", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    local = LOCAL_PROFILE

    r = sub.add_parser("run", help="transcribe and summarize a folder locally (the embedded default)")
    r.add_argument("audio_dir", help="folder of recordings (or s3://bucket/prefix with KUBESCRIBE_S3_ENDPOINT set)")
    r.add_argument("--out", required=True, help="output folder (or s3://bucket/prefix)")
    r.add_argument("--model", default="tiny.en", help="whisper model name, checkpoint path or CTranslate2 dir (default: bundled tiny.en)")
    r.add_argument("--language", default="", help="ISO code; default auto-detect")
    r.add_argument("--beam-size", type=int, default=BEAM_SIZE, help="Whisper beam width; 1 is greedy (faster)")
    r.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL; default: start a local llama.cpp server")
    r.add_argument("--llm-model", default=None, help="model name for --llm-url")
    r.add_argument("--gguf", default=None, help="GGUF model for the local llama.cpp server (default: bundled SmolLM2-135M)")
    r.add_argument("--context-tokens", type=int, default=local["context_tokens"], help="LLM context window per request")
    r.add_argument("--max-output-tokens", type=int, default=local["max_output_tokens"])
    r.add_argument("--concurrency", type=int, default=local["summarize_concurrency"], help="summaries in flight at once")
    r.add_argument("--shard-seconds", type=int, default=local["shard_seconds"], help="target audio seconds per Whisper task")
    r.add_argument("--max-shards", type=int, default=local["max_shards"])
    r.add_argument("--only-new", action="store_true", help="skip inputs that finished in an earlier run into --out")
    r.add_argument("--parallelism", type=int, default=local["parallelism"], help="Whisper tasks running at once")
    r.add_argument("--threads", type=int, default=local["threads"], help="torch threads per Whisper task")
    r.add_argument("--accelerator", default="auto", help="auto (local GPUs if any, else CPU), cpu, or an extended resource name")
    r.add_argument("--slots", type=int, default=1, help="local capacity of --accelerator")
    r.add_argument("--show", action="store_true", help="print every transcript and summary at the end")
    r.add_argument("--workdir", default=None, help="where the local runner keeps task logs")
    r.set_defaults(fn=cmd_run)

    rd = sub.add_parser("render", help="write the Argo manifests (WorkflowTemplate, CronWorkflow) into a folder",
                        description="Write workflowtemplate.yaml and cronworkflow.yaml, rendered from the hera source "
                                    "with the default settings. The Helm chart's generated templates are rewritten "
                                    "by `make chart` (tools/chart.py), not by the installed CLI.")
    rd.add_argument("--out", required=True, help="folder for workflowtemplate.yaml and cronworkflow.yaml")
    rd.set_defaults(fn=cmd_render)

    from workflows.cluster import add_cluster_commands

    add_cluster_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)  # `run` handles SIGTERM/SIGINT itself; the cluster commands handle Ctrl-C themselves


if __name__ == "__main__":
    sys.exit(main())
