"""A recording HTTP server standing in for the Argo Server and the Kubernetes API (``http.server`` in a thread:
real sockets, responses written by hand after the upstream API shapes), and a submitted workflow as the Argo Server
returns it. Used by tests/test_cluster_cli.py and tests/test_cli_front_submit.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

TOKEN = "eyJhbGciOiJSUzI1NiJ9.argo-test-token-5f2c"
NS = "audio"

# --- a recording HTTP server ------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Response = tuple[int, Any]  # (status, JSON body or str)


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    responses: list[Response | Callable[[Request], Response]]

    def next(self, req: Request) -> Response:
        r = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return r(req) if callable(r) else r


@dataclass
class FakeServer:
    routes: list[Route] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def on(self, method: str, path: str, *responses: Response | Callable[[Request], Response]) -> None:
        """Answer ``method path`` (a regex matched against the path without its query) with ``responses`` in
        order, the last one repeating. Later registrations win, so a test can override a default route."""
        self.routes.insert(0, Route(method, re.compile(path + r"$"), list(responses)))

    def handle(self, req: Request) -> Response:
        self.requests.append(req)
        bare = req.path.split("?")[0]
        for route in self.routes:
            if route.method == req.method and route.pattern.match(bare):
                return route.next(req)
        self.unexpected.append(f"{req.method} {req.path}")
        return 500, {"code": 2, "message": f"fake server: no route for {req.method} {req.path}"}

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path.split("?")[0])]


def handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            status, payload = server.handle(Request(self.command, self.path, {k.title(): v for k, v in self.headers.items()}, body))
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


# --- recorded Argo Server responses: a submitted workflow -------------------------------------------------------


WF_NAME = "kubescribe-x7k2p"


def submitted_workflow() -> dict:
    return {
        "metadata": {"name": WF_NAME, "generateName": "kubescribe-", "namespace": NS,
                     "uid": "5e1d3c2b-1111-4a51-9a43-7f5d6b1c2e90", "resourceVersion": "50001",
                     "creationTimestamp": "2026-11-27T10:00:00Z",
                     "labels": {"workflows.argoproj.io/workflow-template": "kubescribe"}},
        "spec": {"workflowTemplateRef": {"name": "kubescribe"}, "arguments": {}},
        "status": {},
    }


def node(suffix: str, display: str, phase: str, started: str, message: str | None = None, type_: str = "Pod") -> dict:
    n = {"id": f"{WF_NAME}-{suffix}", "name": f"{WF_NAME}.{display}", "displayName": display, "type": type_,
         "templateName": display.split("(")[0], "phase": phase, "startedAt": started}
    if message:
        n["message"] = message
    return n


def workflow_status(phase: str, nodes: list[dict], progress: str, message: str | None = None) -> dict:
    wf = submitted_workflow()
    wf["status"] = {"phase": phase, "startedAt": "2026-11-27T10:00:01Z", "progress": progress,
                    "nodes": {n["id"]: n for n in nodes}}
    if message:
        wf["status"]["message"] = message
    return wf
