"""``kubescribe-step``: the entrypoint of every workflow pod (and of every local runner task).

Exit codes: 0 the step did its work (individual files may have failed; they are recorded), 1 the report found
failed files, 2 an infrastructure error (store or endpoint unreachable) that Argo retries, 3 a usage or
configuration error (bad arguments, store URL, bucket, credentials, model) that no retry can fix. The pipeline's
retry expression (workflows/pipeline.py) keys on exactly this. Expected failures print one clear line, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from steps import layout
from steps.deadlines import (DEFAULT_BUSY_WAIT_S, DEFAULT_FIRST_TOKEN_TIMEOUT_S, DEFAULT_IDLE_READ_TIMEOUT_S, DEFAULT_REQUEST_TIMEOUT_S,
                             DEFAULT_SUMMARIZE_BUDGET_S)
from steps.defaults import (BEAM_SIZE, CONTEXT_TOKENS, ENGINE_CPU, ENGINE_GPU, MAX_OUTPUT_TOKENS, MAX_SHARDS, OUTPUT_FORMAT,
                            SHARD_SECONDS, SUMMARIZE_CONCURRENCY, TEMPERATURE, TEMPERATURE_INCREMENT_ON_FALLBACK,
                            VAD_METHOD)
from steps.events import emit


def say(text: str, file=None, flush: bool = True) -> None:
    """Print one log line. Names and errors are user- or model-controlled: escapes are shown, never executed."""
    from steps.sanitize import show_control

    print(show_control(text), file=file or sys.stdout, flush=flush)


def _write_output(path: str | None, value: str) -> None:
    if path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value)


def cmd_plan(a: argparse.Namespace) -> int:
    from steps.plan import make_plan, read_selection
    from steps.runstate import write_plan
    from steps.store import open_store

    output_store = open_store(a.output)
    plan = make_plan(open_store(a.input), a.output, a.run_id, shard_seconds=a.shard_seconds, max_shards=a.max_shards,
                     only_new=a.only_new == "true", output_store=output_store,
                     include=read_selection(output_store, a.run_id))
    shards = write_plan(plan, output_store)
    total = sum(f.duration_s or 0 for f in plan.files)
    say(f"planned {len(plan.files)} audio file(s), {total:.0f} s of audio, in {len(shards)} shard(s)")
    if plan.already_processed:
        say(f"skipped {plan.already_processed} input(s) already processed by earlier runs")
    for entry in plan.ignored:
        say(f"ignored: {entry['input']}: {entry['reason']}")
    for entry in plan.rejected:
        say(f"FAILED  {entry['input']}: {entry['reason']}")
    emit("plan", "planned", files=len(plan.files), cached=plan.already_processed, ignored=len(plan.ignored),
         shards=len(shards), audio_s=round(total, 2))
    for entry in plan.rejected:  # inputs that failed before any step could take them
        emit("plan", "file_done", input=entry["input"], status="failed", error=f"{entry['input']}: {entry['reason']}")
    _write_output(a.shards_file, json.dumps(shards))
    return 0


def cmd_transcribe(a: argparse.Namespace) -> int:
    from steps import decode_options as opts
    from steps.transcribe import TranscribeOptions, _pick_device, auto_engine, run_shard

    device = _pick_device(a.device)
    engine = a.engine if a.engine != "auto" else auto_engine(device, a.model)
    if a.beam_size < 1:
        raise ValueError(f"--beam-size {a.beam_size}: must be at least 1")
    options = TranscribeOptions(language=opts.parse_language(a.language), task=opts.parse_task(a.task),
                                beam_size=a.beam_size, best_of=a.beam_size, vad=a.vad == "true", vad_method=a.vad_method,
                                engine=engine, output_formats=opts.parse_output_formats(a.output_format),
                                initial_prompt=a.initial_prompt or None, word_timestamps=a.word_timestamps == "true",
                                temperature=opts.temperatures(a.temperature, a.temperature_increment_on_fallback))

    warned: set[str] = set()

    def progress(r) -> None:
        if r.status == "succeeded":
            how = "cached" if r.cached else f"{r.seconds:.1f}s, RTF {r.rtf:.3f}" if r.rtf else f"{r.seconds:.1f}s"
            say(f"ok      {r.input} ({how})", flush=True)
        else:
            say(f"FAILED  {r.error}", flush=True)
        for w in r.warnings:  # a warning about the run (the model) is said once, not for every file
            if w not in warned:
                warned.add(w)
                say(f"warning: {r.input}: {w}", flush=True)

    result = run_shard(a.output, a.run_id, a.shard, a.model, options, device=device, threads=a.threads, progress=progress,
                       batch_size=a.batch_size)
    failed = sum(r.status != "succeeded" for r in result.files)
    say(f"shard {a.shard}: {len(result.files) - failed} succeeded, {failed} failed on {result.device} ({engine} engine)")
    return 0


def cmd_summarize(a: argparse.Namespace) -> int:
    from steps.llm import LLMSettings
    from steps.records import summary_warnings
    from steps.summarize import run_step
    from steps.urls import BASIC_AUTH_ENV, parse_userinfo, redact_url, split_credentials

    # Credentials never stay in the URL (it is logged and stored); the environment (a Secret) is the right place.
    url, credentials = split_credentials(a.llm_url)
    if credentials is not None:
        say(f"warning: --llm-url {redact_url(a.llm_url)} carries credentials; they are used for basic auth and "
              "kept out of logs and results, but a workflow parameter is visible to anyone who can read the "
              f"workflow: put them in the gateway Secret's basic-auth key ({BASIC_AUTH_ENV}) instead", file=sys.stderr)
    settings = LLMSettings(
        url=url,
        model=a.llm_model,
        objective=a.objective or None,
        api_key=os.environ.get("LLM_API_KEY") or None,
        basic_auth=credentials or parse_userinfo(os.environ.get(BASIC_AUTH_ENV) or ""),
        concurrency=a.concurrency,
        context_tokens=a.context_tokens,
        max_output_tokens=a.max_output_tokens,
        first_token_timeout_s=a.first_token_timeout,
        read_timeout_s=a.idle_timeout,
        request_timeout_s=a.request_timeout,
        budget_s=a.budget or None,
        busy_wait_s=a.busy_wait,
    )

    def progress(r) -> None:
        if r.status == "succeeded":
            ttft = (r.metrics or {}).get("ttft_s")
            say(f"ok      {r.input} ({'cached' if r.cached else f'TTFT {ttft:.2f}s'})", flush=True)
            for w in summary_warnings(r.metrics):
                say(f"warning: {r.input}: {w}", flush=True)
        else:
            say(f"FAILED  {r.error}", flush=True)

    records = run_step(a.output, a.run_id, settings, progress=progress)
    say(f"summaries: {sum(r.status == 'succeeded' for r in records)} succeeded, {sum(r.status == 'failed' for r in records)} failed")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from steps.report import run_step
    from steps.report_markdown import markdown_summary, one_line
    from steps.store import open_store

    report = run_step(a.output, a.run_id)
    store = open_store(a.output)
    if a.artifacts_dir:  # what the Argo UI shows: report.json and summary.md as artifacts, the line as a parameter
        data = report.to_dict()
        _write_output(f"{a.artifacts_dir}/report.json", report.to_json())
        _write_output(f"{a.artifacts_dir}/summary.md", markdown_summary(data, store.uri))
        _write_output(f"{a.artifacts_dir}/result.txt", one_line(data))
    t = report.totals
    for f in report.files:
        if f.status != "succeeded":
            say(f"FAILED  {f.error}")
    say(f"{t['succeeded']}/{t['files']} file(s) succeeded; report: {layout.REPORT}")
    emit("report", "report", succeeded=t["succeeded"], failed=t["failed"], path=store.uri(layout.REPORT))
    return 1 if t["failed"] else 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2, which the pipeline would retry: usage errors are final
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _switch(sp: argparse.ArgumentParser, name: str, help: str) -> None:
    """``--NAME`` / ``--no-NAME``, and ``--NAME true|false`` for a workflow parameter; on by default."""
    dest = name.replace("-", "_")
    sp.add_argument(f"--{name}", dest=dest, nargs="?", const="true", default="true", choices=["true", "false"],
                    help=f"{help} (default: true)")
    sp.add_argument(f"--no-{name}", dest=dest, action="store_const", const="false", help=f"same as --{name} false")


def build_parser() -> argparse.ArgumentParser:
    from steps.models import DEFAULT_MODEL

    p = _Parser(prog="kubescribe-step", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--output", required=True, help="output store: a directory or s3://bucket/prefix")
        sp.add_argument("--run-id", required=True, help="the run's id (the workflow name in a cluster)")

    sp = sub.add_parser("plan", help="list audio, probe durations, write the shard plan")
    common(sp)
    sp.add_argument("--input", required=True, help="input store: a directory or s3://bucket/prefix")
    sp.add_argument("--shard-seconds", type=float, default=SHARD_SECONDS, help="target audio seconds per shard")
    sp.add_argument("--max-shards", type=int, default=MAX_SHARDS)
    sp.add_argument("--only-new", default="false", choices=["true", "false"],
                    help="skip inputs whose (key, size, etag) already have finished outputs")
    sp.add_argument("--shards-file", help="write the JSON list of shard numbers here (an Argo output parameter)")
    sp.set_defaults(fn=cmd_plan)

    sp = sub.add_parser("transcribe", help="transcribe one shard of the plan")
    common(sp)
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--model", default=DEFAULT_MODEL, help="whisper name, checkpoint path, or CTranslate2 dir")
    sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    sp.add_argument("--language", default=None, help="ISO code or name (fr, French); auto or empty: detect "
                    "(English-only .en models always transcribe English, with a warning when asked for another)")
    sp.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                    help="translate: speech in any language to English text (multilingual models only)")
    sp.add_argument("--beam-size", type=int, default=BEAM_SIZE)
    _switch(sp, "vad", "decode only spans with sound (--no-vad: the whole file, silence included)")
    sp.add_argument("--output-format", default=OUTPUT_FORMAT, metavar="FORMATS",
                    help="whisper's writers, comma-separated: txt, srt, vtt, tsv, json, or all (txt is always "
                         "written: the summary is made from it)")
    sp.add_argument("--initial-prompt", default="", help="text to condition the first window on (names, spelling)")
    _switch(sp, "word-timestamps", "word-level timestamps in the json output (also lets whisper skip "
            "hallucinated silences)")
    sp.add_argument("--temperature", type=float, default=TEMPERATURE, help="sampling temperature of the first decode")
    sp.add_argument("--temperature-increment-on-fallback", type=float, default=TEMPERATURE_INCREMENT_ON_FALLBACK,
                    metavar="STEP", help="temperature step on fallback, up to 1.0 (0: no fallback)")
    sp.add_argument("--vad-method", default=VAD_METHOD, choices=["energy", "silero"],
                    help="speech segmenter: a level gate, or the Silero VAD model")
    sp.add_argument("--engine", default="auto", choices=["auto", "batched", "sequential", "ct2"],
                    help=f"batched: chunks of all files of the shard decoded together; sequential: file by file; "
                         f"ct2: file by file through faster-whisper (CTranslate2; a CTranslate2 model folder or "
                         f"tiny.en) (auto: {ENGINE_GPU} on CUDA, {ENGINE_CPU} on the CPU where the model has a "
                         f"CTranslate2 form, else batched)")
    sp.add_argument("--batch-size", type=int, default=0, help="chunks per batch for the batched engine "
                    "(0: from free device memory on CUDA, 8 on the CPU)")
    sp.set_defaults(fn=cmd_transcribe)

    sp = sub.add_parser("summarize", help="summarize every finished transcript through an OpenAI-compatible endpoint")
    common(sp)
    sp.add_argument("--llm-url", required=True)
    sp.add_argument("--llm-model", required=True)
    sp.add_argument("--objective", default="", help="x-gateway-inference-objective header (llm-d priority)")
    sp.add_argument("--concurrency", type=int, default=SUMMARIZE_CONCURRENCY)
    sp.add_argument("--context-tokens", type=int, default=CONTEXT_TOKENS)
    sp.add_argument("--max-output-tokens", type=int, default=MAX_OUTPUT_TOKENS)
    sp.add_argument("--first-token-timeout", type=float, default=DEFAULT_FIRST_TOKEN_TIMEOUT_S, metavar="S",
                    help="seconds to the first generated token, per attempt (keep-alives do not count)")
    sp.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_READ_TIMEOUT_S, metavar="S",
                    help="seconds of silence tolerated once tokens flow")
    sp.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S, metavar="S",
                    help="seconds for one LLM call, retries included")
    sp.add_argument("--budget", type=float, default=DEFAULT_SUMMARIZE_BUDGET_S, metavar="S",
                    help="seconds for the whole step; files not summarized by then fail alone (0: no budget)")
    sp.add_argument("--busy-wait", type=float, default=DEFAULT_BUSY_WAIT_S, metavar="S",
                    help="seconds one LLM call keeps waiting while the gateway answers 429/503 (honours Retry-After)")
    sp.set_defaults(fn=cmd_summarize)

    sp = sub.add_parser("report", help="merge all results into report.json")
    common(sp)
    sp.add_argument("--artifacts-dir", help="also write report.json, summary.md and result.txt here (Argo outputs)")
    sp.set_defaults(fn=cmd_report)
    return p


EXIT_RETRYABLE = 2
EXIT_CONFIG = 3


def main(argv: list[str] | None = None) -> int:
    from steps.llm import EndpointUnreachable, LLMError
    from steps.models import ModelError
    from steps.store import S3Store, StoreConfigError, StoreError, s3_settings_from_env
    from steps.urls import redact_url

    logging.basicConfig(level=os.environ.get("KUBESCRIBE_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if any(str(getattr(args, name, "") or "").startswith("s3://") for name in ("input", "output")):
        say(f"S3 at {redact_url(s3_settings_from_env().endpoint)}: {S3Store.describe_waits()}", file=sys.stderr)
    try:
        return args.fn(args)
    except EndpointUnreachable as e:  # an outage of the gateway: worth another attempt after the backoff
        say(f"error: {e}", file=sys.stderr)
        return EXIT_RETRYABLE
    except (StoreConfigError, ModelError, LLMError, ValueError) as e:
        say(f"error: {e} (a configuration error: not retried)", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as e:  # the store is unreachable or failed (StoreConfigError, a bad URL, is caught above)
        say(f"error: {e}", file=sys.stderr)
        return EXIT_RETRYABLE


if __name__ == "__main__":
    sys.exit(main())
