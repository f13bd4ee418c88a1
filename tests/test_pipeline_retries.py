"""The pipeline's own retry strategies, run by the local runner with Argo's semantics (workflows/local/retries.py).

The plan step is the first to touch the input store. When S3 is unreachable it exits 2 ("infrastructure, retry
me", steps/cli.py) and the retry strategy (workflows/pipeline.py, after argo operator.go processNodeRetries)
retries it; when the input itself is wrong (a usage/configuration error) it exits 3 and is not retried.
"""

from __future__ import annotations

import socket

import pytest

from tests.cli_support import TcpProxy
from tests.support import make_bucket
from workflows.local import LocalRunner
from workflows.pipeline import build_workflow
from workflows.settings import PipelineSettings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workflow(tmp_path, input_url: str, endpoint: str) -> dict:
    settings = PipelineSettings(input=input_url, output=str(tmp_path / "out"), accelerator="cpu", queue_name=None,
                                llm_url="http://127.0.0.1:9/v1", s3_endpoint=endpoint, s3_secret="kubescribe-s3",
                                retries=2)
    return build_workflow(settings, name="retry-test").to_dict()


def _runner(tmp_path, events: list) -> LocalRunner:
    secrets = {("kubescribe-s3", "accesskey"): "test-access", ("kubescribe-s3", "secretkey"): "test-secret"}
    # time_scale shrinks the pipeline's 30 s backoff; the decisions are the same.
    return LocalRunner(tmp_path / "work", secrets=secrets, on_event=events.append, time_scale=0.02)


def test_plan_retried_after_an_s3_outage_then_succeeds(tmp_path, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    make_bucket(s3_server, "incoming")
    port = _free_port()  # nothing listens here yet: the first attempt finds S3 unreachable
    events: list = []
    proxy: list[TcpProxy] = []

    def bring_s3_back(ev) -> None:
        events.append(ev)
        if ev.kind == "node-pending" and ev.template == "plan" and "attempt 1 failed" in (ev.message or "") \
                and not proxy:
            assert "exit code 2" in ev.message
            proxy.append(TcpProxy(s3_server.split("://")[1], port=port))

    runner = LocalRunner(tmp_path / "work", secrets={("kubescribe-s3", "accesskey"): "test-access",
                                                      ("kubescribe-s3", "secretkey"): "test-secret"},
                         on_event=bring_s3_back, time_scale=0.02)
    try:
        result = runner.run(_workflow(tmp_path, "s3://incoming/calls", f"http://127.0.0.1:{port}"))
    finally:
        for p in proxy:
            p.down()
    plan = result.nodes["plan"]
    assert (plan.phase, plan.attempts, plan.exit_code) == ("Succeeded", 2, 0), plan
    assert result.phase == "Succeeded", result.message


def test_a_configuration_error_is_not_retried(tmp_path):
    events: list = []
    result = _runner(tmp_path, events).run(_workflow(tmp_path, "gs://not-a-supported/store", "http://127.0.0.1:9"))
    plan = result.nodes["plan"]
    assert (plan.phase, plan.attempts, plan.exit_code) == ("Failed", 1, 3), plan
    assert "unsupported store URL" in plan.log_path.read_text()  # the step's log (stdout and stderr)


def test_a_whisper_shard_with_an_unknown_model_is_not_retried(tmp_path):
    """Transcribe retries every failure (preemption, OOM, exit 2) except a configuration error: exit 3 fails the
    same way on every attempt (workflows/pipeline.py NOT_A_CONFIG_ERROR)."""
    import shutil

    from tests.support import FIXTURES

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(FIXTURES / "speech" / "weather.wav", src / "weather.wav")
    settings = PipelineSettings(input=str(src), output=str(tmp_path / "out"), accelerator="cpu", queue_name=None,
                                whisper_model="no-such-model", llm_url="http://127.0.0.1:9/v1", s3_endpoint=None,
                                s3_secret=None, retries=2)
    result = _runner(tmp_path, []).run(build_workflow(settings, name="model-test").to_dict())
    shards = [n for n in result.nodes.values() if n.template == "transcribe" and n.exit_code is not None]
    assert shards and all((n.phase, n.attempts, n.exit_code) == ("Failed", 1, 3) for n in shards), shards
    assert "unknown model: 'no-such-model'" in shards[0].log_path.read_text()
    assert result.nodes["plan"].phase == "Succeeded"
