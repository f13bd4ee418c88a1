"""`kubescribe submit --wait` fetches the run's own report from the output store when the workflow ends, through
the real CLI (a subprocess). The Argo Server is the recording fake of tests/cluster_support.py (no cluster here);
the output store is a real S3-protocol server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from minio import Minio

from tests.cli_support import cli_env
from tests.cluster_support import NS, TOKEN, WF_NAME, FakeServer, handler, node, submitted_workflow, workflow_status
from tests.support import ROOT, make_bucket

pytestmark = pytest.mark.e2e


@pytest.fixture
def argo() -> Iterator[tuple[FakeServer, str]]:
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(fake))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    fake.on("POST", f"/api/v1/workflows/{NS}/submit", (200, submitted_workflow()))
    done = node("1", "report", "Failed", "2026-11-27T10:00:02Z", "Error (exit code 1)")
    fake.on("GET", f"/api/v1/workflows/{NS}/{WF_NAME}", (200, workflow_status("Running", [], "0/1")),
            (200, workflow_status("Failed", [done], "1/1", "child failed")))
    yield fake, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def submit(url: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", "submit", "--argo-server", url, "--token", TOKEN, "-n", NS, "--wait",
         "--poll-interval", "0.01", "-p", "output=s3://reports/results", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=cli_env(NO_PROXY="127.0.0.1,localhost", **env))


def test_submit_wait_prints_the_runs_report_from_s3(argo, s3_server: str, tmp_path: Path) -> None:
    _, url = argo
    make_bucket(s3_server, "reports")
    report = {"run_id": WF_NAME, "files": [
        {"input": "a.wav", "status": "succeeded", "error": None},
        {"input": "b.wav", "status": "failed", "error": "b.wav: not decodable audio"}],
        "totals": {"files": 2, "succeeded": 1, "failed": 1, "transcripts_cached": 0, "audio_seconds": 60.0}}
    data = json.dumps(report).encode()
    client = Minio(s3_server.split("://")[1], access_key="test-access", secret_key="test-secret", secure=False)
    client.put_object("reports", f"results/.kubescribe/runs/{WF_NAME}/report.json", io.BytesIO(data), len(data))
    env = {"KUBESCRIBE_S3_ENDPOINT": s3_server, "AWS_ACCESS_KEY_ID": "test-access",
           "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}
    saved = tmp_path / "report.json"
    result = submit(url, env, "--report", str(saved))
    assert result.returncode == 1, result.stderr  # the workflow failed (a file did)
    assert "report: 1/2 succeeded, 1 failed, 1.0 min of audio" in result.stdout
    assert "failed b.wav: not decodable audio" in result.stdout
    assert json.loads(saved.read_text()) == report
    assert "Traceback" not in result.stdout + result.stderr


def test_submit_wait_without_s3_access_says_where_the_report_is(argo) -> None:
    _, url = argo
    result = submit(url, {})
    assert result.returncode == 1
    assert f"s3://reports/results/.kubescribe/runs/{WF_NAME}/report.json" in result.stderr
    assert "KUBESCRIBE_S3_ENDPOINT" in result.stderr and "Traceback" not in result.stderr
