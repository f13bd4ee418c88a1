"""``kubescribe submit`` / ``templates install`` / ``doctor`` at the HTTP boundary.

A real HTTP server on 127.0.0.1 (``http.server`` in a thread) records every request and replays responses shaped
like the Argo Server's (gRPC-gateway JSON errors: ``{"code": 16, "message": ...}``) and the Kubernetes API's
(``Status`` objects, CRDs, nodes, PartialObjectMetadata). hera's WorkflowsService, the kubernetes client (through a
generated kubeconfig) and httpx talk to it over real sockets; nothing inside the code under test is patched.

Every recorded response is written by hand after the upstream API shapes (Argo Server, Kubernetes, Kueue v1beta2,
Argo's controller ConfigMap, DAS's RuntimeClass); none was captured from a live cluster. Where a behaviour comes from
upstream code, the comment next to it names the file.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster_support import (
    NS,
    TOKEN,
    WF_NAME,
    FakeServer,
    Request,
    Response,
    handler,
    node,
    submitted_workflow,
    workflow_status,
)
from workflows.cluster import add_cluster_commands
from workflows.cron import build_cron_workflow
from workflows.pipeline import build_workflow, build_workflow_template
from workflows.settings import PipelineSettings

K8S_TOKEN = "sha256~k8s-user-token-91ab"


@pytest.fixture
def http() -> Iterator[tuple[FakeServer, str]]:
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(fake))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    assert not fake.unexpected, f"requests nobody expected: {fake.unexpected}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("ARGO_SERVER", "ARGO_TOKEN", "ARGO_NAMESPACE", "ARGO_SECURE", "ARGO_INSECURE_SKIP_VERIFY",
                "LLM_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="kubescribe")
    add_cluster_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc = args.fn(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert TOKEN not in out + err and TOKEN.split(".")[-1] not in out + err, "the token leaked into the output"
    assert K8S_TOKEN not in out + err
    return rc, out, err


# --- recorded Argo Server responses -----------------------------------------------------------------------------


def argo_error(code: int, message: str) -> dict:
    """The Argo Server's error body (grpc-gateway): gRPC code + message."""
    return {"code": code, "message": message}


ALREADY_EXISTS = (409, argo_error(6, 'workflowtemplates.argoproj.io "kubescribe" already exists'))
CRON_EXISTS = (409, argo_error(6, 'cronworkflows.argoproj.io "kubescribe" already exists'))
UNAUTHORIZED = (401, argo_error(16, "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/"))
FORBIDDEN = (403, argo_error(7, 'workflowtemplates.argoproj.io is forbidden: User "system:serviceaccount:audio:ci" cannot '
                                'create resource "workflowtemplates" in API group "argoproj.io" in the namespace "audio"'))
TEMPLATE_NOT_FOUND = (404, argo_error(5, 'workflowtemplates.argoproj.io "kubescribe" not found'))


def stored(manifest: dict, version: str = "48213") -> dict:
    """What the Argo Server returns for a stored object: the manifest plus server-set metadata."""
    out = copy.deepcopy(manifest)
    out["metadata"].update(namespace=NS, uid="0b7c6c1e-5d0a-4a51-9a43-7f5d6b1c2e90", resourceVersion=version,
                           generation=1, creationTimestamp="2026-11-27T09:58:12Z")
    return out


def echo_created(key: str) -> Callable[[Request], Response]:
    return lambda req: (200, stored(req.json[key], "48100"))


# --- recorded Kubernetes API responses for the workflow RBAC -------------------------------------------------------
# Hand-written (Kubernetes rbac.authorization.k8s.io/v1 and core/v1 shapes), not captured from a cluster.

RBAC_API = "/apis/rbac.authorization.k8s.io/v1"
SA_COLLECTION = f"/api/v1/namespaces/{NS}/serviceaccounts"
ROLE_COLLECTION = f"{RBAC_API}/namespaces/{NS}/roles"
BINDING_COLLECTION = f"{RBAC_API}/namespaces/{NS}/rolebindings"
SA_NAME = "kubescribe-workflow"
# What argo-workflows v4.1.2 says the emissary executor needs (docs/workflow-rbac.md, "The minimum for the executor
# to function"; manifests/quick-start/base/executor/emissary/executor-role.yaml), written out by hand here so the
# test does not take the rules from the code it checks.
UPSTREAM_EXECUTOR_RULES = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]


def k8s_object(manifest: dict, version: str = "7001") -> dict:
    out = copy.deepcopy(manifest)
    out["metadata"].update(uid="6a1f0c2e-7777-4000-8000-00000000000a", resourceVersion=version,
                           creationTimestamp="2026-11-27T09:50:00Z")
    return out


def k8s_echo(req: Request) -> Response:
    return 201, k8s_object(req.json)


def k8s_exists(resource: str, name: str) -> Response:
    return 409, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": f'{resource} "{name}" already exists', "reason": "AlreadyExists",
                 "details": {"name": name, "kind": resource.split(".")[0]}, "code": 409}


def sa_manifest(name: str = SA_NAME) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NS}}


def role_manifest(rules: list[dict], name: str = SA_NAME) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": NS},
            "rules": rules}


def binding_manifest(name: str = SA_NAME, role: str = SA_NAME, subjects: list[dict] | None = None,
                     role_kind: str = "Role") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": subjects if subjects is not None else [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": NS}]}


def binding_list(*bindings: dict) -> tuple[int, dict]:
    # An unrelated binding of the namespace (Argo's own server account) that must not count.
    other = binding_manifest("argo-server-view", "view", [{"kind": "ServiceAccount", "name": "argo-server", "namespace": NS}], "ClusterRole")
    return 200, {"kind": "RoleBindingList", "apiVersion": "rbac.authorization.k8s.io/v1",
                 "metadata": {"resourceVersion": "7100"}, "items": [k8s_object(b) for b in (other, *bindings)]}


def in_namespace(obj: tuple[int, dict] | dict, namespace: str) -> Any:
    """A recorded object (or list) moved to another namespace."""
    text = json.dumps(obj).replace(f'"namespace": "{NS}"', f'"namespace": "{namespace}"')
    return tuple(json.loads(text)) if isinstance(obj, tuple) else json.loads(text)


def rbac_present(fake: FakeServer, rules: list[dict] | None = None, namespace: str = NS) -> None:
    """ServiceAccount, Role and RoleBinding as the chart or `templates install` make them; ClusterRoleBindings are
    forbidden, as for a namespace admin."""
    def path(p: str) -> str:
        return p.replace(f"/namespaces/{NS}/", f"/namespaces/{namespace}/")

    fake.on("GET", path(f"{SA_COLLECTION}/{SA_NAME}"), (200, in_namespace(k8s_object(sa_manifest()), namespace)))
    fake.on("GET", path(BINDING_COLLECTION), in_namespace(binding_list(binding_manifest()), namespace))
    fake.on("GET", path(f"{ROLE_COLLECTION}/{SA_NAME}"),
            (200, in_namespace(k8s_object(role_manifest(rules or UPSTREAM_EXECUTOR_RULES)), namespace)))
    fake.on("GET", f"{RBAC_API}/clusterrolebindings",
            (403, k8s_status(403, "Forbidden", 'clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "jane" '
                                               'cannot list resource "clusterrolebindings" at the cluster scope')))


def rbac_writable(fake: FakeServer) -> None:
    for collection in (SA_COLLECTION, ROLE_COLLECTION, BINDING_COLLECTION):
        fake.on("POST", collection, k8s_echo)


def install_argv(url: str, tmp_path: Path, *extra: str) -> list[str]:
    """templates install against the fake server, which plays both the Argo Server and the Kubernetes API."""
    return ["templates", "install", "--argo-server", url, "--token", TOKEN, "-n", NS,
            "--kubeconfig", str(kubeconfig(tmp_path, url)), *extra]


def argo_requests(fake: FakeServer) -> list[Request]:
    return [r for r in fake.requests if r.path.startswith("/api/v1/workflow-templates") or r.path.startswith("/api/v1/cron-workflows")]


# --- templates install --------------------------------------------------------------------------------------------


def test_templates_install_posts_the_rendered_manifest(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 0, err
    [req] = fake.sent("POST", f"/api/v1/workflow-templates/{NS}")
    assert req.json == {"template": build_workflow_template().to_dict()}
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"  # hera adds "Bearer " to a bare token
    assert f"WorkflowTemplate kubescribe created in namespace {NS}: {url}/workflow-templates/{NS}/kubescribe" in out


def test_templates_install_creates_the_pods_service_account_role_and_binding(http, capsys, tmp_path: Path) -> None:
    """Issue 7 point 1: the WorkflowTemplate's serviceAccountName exists and may report results (least privilege)."""
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 0, err
    # The pods' identity is in place before the template that names it.
    assert [f"{r.method} {r.path}" for r in fake.requests] == [
        f"POST {SA_COLLECTION}", f"POST {ROLE_COLLECTION}", f"POST {BINDING_COLLECTION}", f"POST /api/v1/workflow-templates/{NS}"]
    [sa] = fake.sent("POST", SA_COLLECTION)
    [role] = fake.sent("POST", ROLE_COLLECTION)
    [binding] = fake.sent("POST", BINDING_COLLECTION)
    template = fake.sent("POST", f"/api/v1/workflow-templates/{NS}")[0].json["template"]
    assert sa.json["metadata"]["name"] == template["spec"]["serviceAccountName"] == SA_NAME
    assert role.json["rules"] == UPSTREAM_EXECUTOR_RULES  # nothing more than Argo's executor needs
    assert binding.json["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.json["metadata"]["name"]}
    assert binding.json["subjects"] == [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": NS}]
    assert all(r.json["metadata"]["namespace"] == NS for r in (sa, role, binding))
    assert all(r.headers["Authorization"] == f"Bearer {K8S_TOKEN}" for r in (sa, role, binding))  # the kubeconfig's, not Argo's
    assert f"ServiceAccount {SA_NAME} created in namespace {NS}" in out
    assert f"Role {SA_NAME} created in namespace {NS} (create, patch on workflowtaskresults.argoproj.io)" in out
    assert f"RoleBinding {SA_NAME} created in namespace {NS}" in out


def test_templates_install_without_a_service_account_binds_the_namespace_default(http, capsys, tmp_path: Path) -> None:
    # No serviceAccountName: Argo runs the pods as "default" (argo-workflows docs/workflow-rbac.md), which exists in
    # every namespace; only the Role and its binding are made, named after the template.
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text("service_account: null\n")
    rc, out, err = run_cli(install_argv(url, tmp_path, "--settings", str(settings_file)), capsys)
    assert rc == 0, err
    assert not fake.sent("POST", SA_COLLECTION)
    [binding] = fake.sent("POST", BINDING_COLLECTION)
    assert binding.json["metadata"]["name"] == binding.json["roleRef"]["name"] == "kubescribe-executor"
    assert binding.json["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]
    assert "serviceAccountName" not in fake.sent("POST", f"/api/v1/workflow-templates/{NS}")[0].json["template"]["spec"]


def test_templates_install_updates_existing_rbac_and_keeps_the_service_account(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    fake.on("POST", SA_COLLECTION, k8s_exists("serviceaccounts", SA_NAME))
    fake.on("POST", ROLE_COLLECTION, k8s_exists("roles.rbac.authorization.k8s.io", SA_NAME))
    fake.on("POST", BINDING_COLLECTION, k8s_exists("rolebindings.rbac.authorization.k8s.io", SA_NAME))
    helm_meta = {"labels": {"app.kubernetes.io/managed-by": "Helm"}, "annotations": {"meta.helm.sh/release-name": "kubescribe"}}
    old_role = k8s_object(role_manifest([{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create"]}]), "811")
    old_role["metadata"].update(copy.deepcopy(helm_meta))
    sa = k8s_object(sa_manifest(), "810")
    sa["imagePullSecrets"] = [{"name": "kubescribe-workflow-dockercfg-x7k2p"}]  # added by the platform (OpenShift)
    fake.on("GET", f"{SA_COLLECTION}/{SA_NAME}", (200, sa))
    fake.on("GET", f"{ROLE_COLLECTION}/{SA_NAME}", (200, old_role))
    fake.on("GET", f"{BINDING_COLLECTION}/{SA_NAME}", (200, k8s_object(binding_manifest(), "812")))
    fake.on("PUT", f"{ROLE_COLLECTION}/{SA_NAME}", lambda req: (200, req.json))
    fake.on("PUT", f"{BINDING_COLLECTION}/{SA_NAME}", lambda req: (200, req.json))
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 0, err
    assert not fake.sent("PUT", f"{SA_COLLECTION}/{SA_NAME}"), "the ServiceAccount is left as is (its imagePullSecrets)"
    [put_role] = fake.sent("PUT", f"{ROLE_COLLECTION}/{SA_NAME}")
    assert put_role.json["rules"] == UPSTREAM_EXECUTOR_RULES
    assert put_role.json["metadata"]["resourceVersion"] == "811"
    # Labels and annotations already there win: an object Helm owns stays Helm's.
    assert put_role.json["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert put_role.json["metadata"]["annotations"] == helm_meta["annotations"]
    assert fake.sent("PUT", f"{BINDING_COLLECTION}/{SA_NAME}")[0].json["metadata"]["resourceVersion"] == "812"
    assert f"ServiceAccount {SA_NAME} already exists" in out and f"Role {SA_NAME} updated" in out


def test_templates_install_refuses_a_binding_to_another_role(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", BINDING_COLLECTION, k8s_exists("rolebindings.rbac.authorization.k8s.io", SA_NAME))
    fake.on("GET", f"{BINDING_COLLECTION}/{SA_NAME}", (200, k8s_object(binding_manifest(role="edit", role_kind="ClusterRole"))))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "binds ClusterRole edit" in err and "roleRef cannot be changed" in err and "--no-rbac" in err
    assert not argo_requests(fake), "nothing installed in Argo when the pods' RBAC is not right"


def test_templates_install_rbac_forbidden_is_one_clear_line(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", ROLE_COLLECTION, (403, k8s_status(403, "Forbidden", 'roles.rbac.authorization.k8s.io "kubescribe-workflow" is '
                                                       'forbidden: user "jane" is attempting to grant RBAC permissions not currently held')))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 2 and err.count("\n") == 1
    for fragment in (f"no permission to create Role {NS}/{SA_NAME} (403)", "attempting to grant", "escalate", "--no-rbac"):
        assert fragment in err, err
    assert not argo_requests(fake)


def test_templates_install_without_kubernetes_credentials_says_what_and_why(http, capsys) -> None:
    fake, url = http
    rc, _, err = run_cli(["templates", "install", "--argo-server", url, "--token", TOKEN, "-n", NS], capsys)
    assert rc == 2 and err.count("\n") == 1 and not fake.requests
    assert f"creating ServiceAccount {SA_NAME}, Role {SA_NAME}, RoleBinding {SA_NAME} needs the Kubernetes API" in err
    assert "--kubeconfig" in err and "--no-rbac" in err


def test_templates_install_no_rbac_refuses_naming_what_is_missing(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    fake.on("GET", f"{SA_COLLECTION}/{SA_NAME}", k8s_not_found("serviceaccounts", SA_NAME))
    fake.on("GET", BINDING_COLLECTION, binding_list())  # only the unrelated binding
    fake.on("GET", f"{RBAC_API}/clusterrolebindings", (200, {"kind": "ClusterRoleBindingList", "apiVersion": "rbac.authorization.k8s.io/v1",
                                                           "metadata": {}, "items": []}))
    rc, out, err = run_cli(install_argv(url, tmp_path, "--no-rbac"), capsys)
    assert rc == 2 and err.count("\n") == 1
    assert f"ServiceAccount {NS}/{SA_NAME}" in err
    assert f"a RoleBinding of ServiceAccount {SA_NAME} to a Role with create, patch on workflowtaskresults.argoproj.io" in err
    assert "Rerun without --no-rbac" in err
    assert all(r.method == "GET" for r in fake.requests) and not argo_requests(fake)


def test_templates_install_no_rbac_refuses_a_role_without_patch(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_present(fake, rules=[{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create"]}])
    rc, out, err = run_cli(install_argv(url, tmp_path, "--no-rbac"), capsys)
    assert rc == 2
    assert f"patch on workflowtaskresults.argoproj.io for ServiceAccount {SA_NAME} (bound through RoleBinding {SA_NAME})" in err


def test_templates_install_no_rbac_installs_when_they_exist(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_present(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    rc, out, err = run_cli(install_argv(url, tmp_path, "--no-rbac"), capsys)
    assert rc == 0 and err == "", err
    assert not [r for r in fake.requests if r.method != "GET" and not r.path.startswith("/api/v1/workflow-templates")]


def test_templates_install_no_rbac_without_kubernetes_access_warns_and_installs(http, capsys) -> None:
    fake, url = http
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    rc, out, err = run_cli(["templates", "install", "--argo-server", url, "--token", TOKEN, "-n", NS, "--no-rbac"], capsys)
    assert rc == 0
    assert err.startswith("warning: --no-rbac: cannot check ServiceAccount kubescribe-workflow") and "installing anyway" in err
    assert "WorkflowTemplate kubescribe created" in out


def test_templates_install_updates_on_conflict_with_the_current_resource_version(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    rendered = build_workflow_template().to_dict()
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", ALREADY_EXISTS)
    fake.on("GET", f"/api/v1/workflow-templates/{NS}/kubescribe", (200, stored(rendered, "48213")))
    fake.on("PUT", f"/api/v1/workflow-templates/{NS}/kubescribe", lambda req: (200, stored(req.json["template"], "48214")))
    rc, out, err = run_cli(install_argv(url, tmp_path), capsys)
    assert rc == 0, err
    assert [f"{r.method} {r.path.split('?')[0]}" for r in argo_requests(fake)] == [
        f"POST /api/v1/workflow-templates/{NS}", f"GET /api/v1/workflow-templates/{NS}/kubescribe",
        f"PUT /api/v1/workflow-templates/{NS}/kubescribe"]
    expected = copy.deepcopy(rendered)
    expected["metadata"]["resourceVersion"] = "48213"
    assert fake.sent("PUT", f"/api/v1/workflow-templates/{NS}/kubescribe")[0].json == {"template": expected}
    assert "WorkflowTemplate kubescribe updated" in out


def test_templates_install_with_cron_creates_or_updates_the_cron_workflow(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    fake.on("POST", f"/api/v1/cron-workflows/{NS}", CRON_EXISTS)
    cron = build_cron_workflow(PipelineSettings(), schedules=["0 * * * *"]).to_dict()  # the helper module's manifest
    fake.on("GET", f"/api/v1/cron-workflows/{NS}/kubescribe", (200, stored(cron, "777")))
    fake.on("PUT", f"/api/v1/cron-workflows/{NS}/kubescribe", lambda req: (200, stored(req.json["cronWorkflow"], "778")))
    rc, out, err = run_cli(install_argv(url, tmp_path, "--cron", "0 * * * *"), capsys)
    assert rc == 0, err
    [post] = fake.sent("POST", f"/api/v1/cron-workflows/{NS}")
    assert post.json == {"cronWorkflow": cron}
    assert post.json["cronWorkflow"]["spec"]["schedules"] == ["0 * * * *"]
    assert post.json["cronWorkflow"]["kind"] == "CronWorkflow"
    [put] = fake.sent("PUT", f"/api/v1/cron-workflows/{NS}/kubescribe")
    assert put.json["cronWorkflow"]["metadata"]["resourceVersion"] == "777"
    assert f"CronWorkflow kubescribe updated in namespace {NS} (0 * * * *): {url}/cron-workflows/{NS}/kubescribe" in out


def test_templates_install_uses_settings_file_and_flags(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    rbac_writable(fake)
    fake.on("POST", f"/api/v1/workflow-templates/{NS}", echo_created("template"))
    settings_file = tmp_path / "cluster.yaml"
    settings_file.write_text("name: transcripts\nwhisper-image: registry.local/kubescribe-whisper:0.1.0\nparallelism: 3\n"
                             "service_account: transcripts-pods\n")
    rc, _, err = run_cli(["templates", "install", "--argo-server", url, "-n", NS, "--settings", str(settings_file),
                          "--kubeconfig", str(kubeconfig(tmp_path, url)),
                          "--queue", "gpu-small", "--accelerator", "nvidia.com/mig-3g.40gb"], capsys)
    assert rc == 0, err
    expected = PipelineSettings(name="transcripts", whisper_image="registry.local/kubescribe-whisper:0.1.0",
                                parallelism=3, queue_name="gpu-small", accelerator="nvidia.com/mig-3g.40gb",
                                service_account="transcripts-pods")
    [req] = fake.sent("POST", f"/api/v1/workflow-templates/{NS}")
    assert req.json == {"template": build_workflow_template(expected).to_dict()}
    assert "Authorization" not in req.headers  # no token given: none sent (server auth mode)
    assert fake.sent("POST", SA_COLLECTION)[0].json["metadata"]["name"] == "transcripts-pods"
    assert fake.sent("POST", BINDING_COLLECTION)[0].json["subjects"][0]["name"] == "transcripts-pods"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cron", "every hour"], "is not a cron schedule"),
        (["--queue", "default"], "do not name the LocalQueue 'default'"),
        (["--accelerator", "gpu please"], "accelerator must be"),
    ],
)
def test_templates_install_rejects_bad_input_before_any_request(http, capsys, argv, message) -> None:
    fake, url = http
    rc, out, err = run_cli(["templates", "install", "--argo-server", url, *argv], capsys)
    assert rc == 2 and not fake.requests
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_settings_file_errors_are_one_line(http, capsys, tmp_path: Path) -> None:
    _, url = http
    bad = tmp_path / "s.yaml"
    bad.write_text("no_such_field: 1\n")
    rc, _, err = run_cli(["templates", "install", "--argo-server", url, "--settings", str(bad)], capsys)
    assert rc == 2 and "invalid settings" in err and "no_such_field" in err and err.count("\n") == 1
    rc, _, err = run_cli(["templates", "install", "--argo-server", url, "--settings", str(tmp_path / "missing.yaml")], capsys)
    assert rc == 2 and "cannot read settings file" in err


# --- submit -------------------------------------------------------------------------------------------------------


def test_submit_sends_parameters_and_prints_name_and_link(http, capsys, monkeypatch) -> None:
    fake, url = http
    fake.on("POST", f"/api/v1/workflows/{NS}/submit", (200, submitted_workflow()))
    monkeypatch.setenv("ARGO_SERVER", url)  # flags fall back to the argo CLI's environment
    monkeypatch.setenv("ARGO_TOKEN", TOKEN)
    monkeypatch.setenv("ARGO_NAMESPACE", NS)
    rc, out, err = run_cli(["submit", "-p", "input=s3://audio/2026-11", "-p", "whisper-model=small"], capsys)
    assert rc == 0, err
    [req] = fake.sent("POST", f"/api/v1/workflows/{NS}/submit")
    assert req.json == {"namespace": NS, "resourceKind": "WorkflowTemplate", "resourceName": "kubescribe",
                        "submitOptions": {"parameters": ["input=s3://audio/2026-11", "whisper-model=small"]}}
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert out.splitlines() == [f"workflow {WF_NAME} submitted in namespace {NS}", f"{url}/workflows/{NS}/{WF_NAME}"]


def test_submit_keeps_an_explicit_bearer_prefix(http, capsys) -> None:
    fake, url = http
    fake.on("POST", "/api/v1/workflows/default/submit", (200, submitted_workflow()))
    rc, _, err = run_cli(["submit", "--argo-server", url + "/", "--token", f"Bearer {TOKEN}"], capsys)
    assert rc == 0, err
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert fake.requests[0].json["namespace"] == "default" and "submitOptions" not in fake.requests[0].json


def test_submit_inline_creates_the_pipeline_workflow(http, capsys) -> None:
    fake, url = http
    fake.on("POST", f"/api/v1/workflows/{NS}", lambda req: (200, {**submitted_workflow(), "spec": req.json["workflow"]["spec"]}))
    rc, out, err = run_cli(["submit", "--inline", "--argo-server", url, "--token", TOKEN, "-n", NS,
                            "-p", "max-shards=4", "-p", "output=s3://audio/out"], capsys)
    assert rc == 0, err
    [req] = fake.sent("POST", f"/api/v1/workflows/{NS}")
    expected = build_workflow(PipelineSettings(max_shards=4, output="s3://audio/out")).to_dict()
    assert req.json == {"workflow": expected}
    params = {p["name"]: p["value"] for p in req.json["workflow"]["spec"]["arguments"]["parameters"]}
    assert params["max-shards"] == "4" and params["output"] == "s3://audio/out"
    assert f"{url}/workflows/{NS}/{WF_NAME}" in out


def test_submit_rejects_unknown_or_malformed_parameters(http, capsys) -> None:
    fake, url = http
    rc, _, err = run_cli(["submit", "--argo-server", url, "-p", "imput=s3://x"], capsys)
    assert rc == 2 and "unknown parameter 'imput'" in err and "input" in err
    rc, _, err = run_cli(["submit", "--argo-server", url, "-p", "input"], capsys)
    assert rc == 2 and "key=value" in err
    rc, _, err = run_cli(["submit", "--inline", "--argo-server", url, "-p", "max-shards=lots"], capsys)
    assert rc == 2 and "max_shards" in err
    assert not fake.requests


@pytest.mark.parametrize(("final", "rc_expected"), [("Succeeded", 0), ("Failed", 1)])
def test_submit_wait_streams_node_progress_and_exits_by_phase(http, capsys, final, rc_expected) -> None:
    fake, url = http
    fake.on("POST", f"/api/v1/workflows/{NS}/submit", (200, submitted_workflow()))
    plan_ok = node("1", "plan", "Succeeded", "2026-11-27T10:00:02Z")
    dag = node("0", WF_NAME, "Running", "2026-11-27T10:00:01Z", type_="DAG")
    t0 = node("2", "transcribe(0:0)", "Running", "2026-11-27T10:01:00Z")
    t0_end = node("2", "transcribe(0:0)", "Succeeded" if final == "Succeeded" else "Failed", "2026-11-27T10:01:00Z",
                  None if final == "Succeeded" else "OOMKilled (exit code 137)")
    summ = node("3", "summarize", "Succeeded", "2026-11-27T10:05:00Z")
    fake.on("GET", f"/api/v1/workflows/{NS}/{WF_NAME}",
            (200, workflow_status("Pending", [], "0/0")),
            (200, workflow_status("Running", [dag, plan_ok], "1/2")),
            (200, workflow_status("Running", [dag, plan_ok, t0], "1/2")),
            (200, workflow_status(final, [dag, plan_ok, t0_end, summ], "3/3" if final == "Succeeded" else "2/3",
                                  None if final == "Succeeded" else "child 'kubescribe-x7k2p-2' failed")))
    rc, out, err = run_cli(["submit", "--argo-server", url, "--token", TOKEN, "-n", NS, "--wait",
                            "--poll-interval", "0.01"], capsys)
    assert rc == rc_expected, err
    lines = out.splitlines()
    assert lines[:2] == [f"workflow {WF_NAME} submitted in namespace {NS}", f"{url}/workflows/{NS}/{WF_NAME}"]
    steps = [ln.split() for ln in lines if ln.startswith("  ")]
    assert [s[:2] for s in steps][:3] == [["plan", "Succeeded"], ["transcribe(0:0)", "Running"],
                                          ["transcribe(0:0)", final if final == "Succeeded" else "Failed:"]]
    assert not any(WF_NAME == s[0] for s in steps), "only pods are streamed, not the DAG node"
    assert "progress 1/2" in lines
    assert lines[-1].startswith(f"workflow {WF_NAME} {final}")
    if final == "Failed":
        assert "OOMKilled" in out


SUBMIT = ["submit", "--token", TOKEN, "-n", NS]
INSTALL = ["templates", "install", "--token", TOKEN, "-n", NS, "--no-rbac"]  # the RBAC objects exist (rbac_present)


@pytest.mark.parametrize(
    ("argv", "method", "path", "response", "expected"),
    [
        (SUBMIT, "POST", f"/api/v1/workflows/{NS}/submit", UNAUTHORIZED,
         ["401 Unauthorized", "token is missing or expired", "--token", "ARGO_TOKEN"]),
        (SUBMIT, "POST", f"/api/v1/workflows/{NS}/submit", (403, argo_error(7, f'... "audio" (token was {TOKEN})')),
         ["403 Forbidden", "RBAC", "service account", "lacks permission", f"namespace {NS}"]),
        (SUBMIT, "POST", f"/api/v1/workflows/{NS}/submit", TEMPLATE_NOT_FOUND,
         ["404", f"namespace {NS} or WorkflowTemplate kubescribe not found", "kubescribe templates install"]),
        (INSTALL, "POST", f"/api/v1/workflow-templates/{NS}", FORBIDDEN,
         ["403 Forbidden", "RBAC", "workflowtemplates.argoproj.io (create, get, update)"]),
        (INSTALL, "POST", f"/api/v1/workflow-templates/{NS}", UNAUTHORIZED, ["401 Unauthorized", "expired"]),
        (INSTALL, "POST", f"/api/v1/workflow-templates/{NS}", (404, "404 page not found\n"),
         ["404", f"namespace {NS} does not exist", "--argo-server"]),
        (SUBMIT, "POST", f"/api/v1/workflows/{NS}/submit", (400, "Client sent an HTTP request to an HTTPS server.\n"),
         ["speaks HTTPS", "--argo-server https://"]),
        (SUBMIT, "POST", f"/api/v1/workflows/{NS}/submit", (200, "<!doctype html><title>Argo</title>"),
         ["not Argo Server API JSON"]),
    ],
    ids=["submit-401", "submit-403", "submit-404", "install-403", "install-401", "install-404", "http-to-https", "html"],
)
def test_argo_errors_are_one_clear_line(http, capsys, tmp_path: Path, argv, method, path, response, expected) -> None:
    fake, url = http
    fake.on(method, path, response)
    if argv is INSTALL:
        rbac_present(fake)
        argv = [*argv, "--kubeconfig", str(kubeconfig(tmp_path, url))]
    rc, out, err = run_cli([*argv, "--argo-server", url], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert url in err  # names the server
    for fragment in expected:
        assert fragment in err, err


@pytest.mark.parametrize("argv", [SUBMIT, INSTALL, [*SUBMIT, "--wait"]])
def test_connection_refused_names_the_server(http, capsys, tmp_path: Path, argv) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    if argv is INSTALL:  # the Kubernetes API answers (RBAC in place); the Argo Server does not
        fake, kube = http
        rbac_present(fake)
        argv = [*argv, "--kubeconfig", str(kubeconfig(tmp_path, kube))]
    t0 = time.monotonic()
    rc, out, err = run_cli([*argv, "--argo-server", url], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert f"cannot reach the Argo Server at {url} (connection refused)" in err and "port-forward" in err
    assert time.monotonic() - t0 < 5


def test_missing_server_says_how_to_give_one(capsys) -> None:
    rc, _, err = run_cli(["submit"], capsys)
    assert rc == 2 and "--argo-server" in err and "ARGO_SERVER" in err


def test_argo_cli_style_host_port_means_https(capsys, monkeypatch) -> None:
    # ARGO_SERVER=host:port as the argo CLI uses it → https://; here nothing listens with TLS, so it must say so.
    monkeypatch.setenv("ARGO_SERVER", f"127.0.0.1:{_closed_port()}")
    rc, _, err = run_cli(["submit", "--token", TOKEN], capsys)
    assert rc == 2 and "https://127.0.0.1:" in err


# --- doctor -------------------------------------------------------------------------------------------------------


def crd(plural: str, group: str, kind: str, versions: list[str]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "resourceVersion": "901", "uid": "c0ffee00-0000-4000-8000-000000000001"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [{"name": v, "served": True, "storage": i == len(versions) - 1,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
                         for i, v in enumerate(versions)],
        },
    }


def k8s_status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def k8s_not_found(resource: str, name: str) -> tuple[int, dict]:
    return 404, k8s_status(404, "NotFound", f'{resource} "{name}" not found')


VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.2", "gitCommit": "a57b6f7709f6c2722b92f07b8b4c48210a51fc40",
           "gitTreeState": "clean", "buildDate": "2025-06-17T18:34:39Z", "goVersion": "go1.24.4", "compiler": "gc",
           "platform": "linux/amd64"}


def gpu_node(name: str, allocatable: dict[str, str]) -> dict:
    base = {"cpu": "63500m", "memory": "1031571084Ki", "pods": "250", "ephemeral-storage": "846324950Ki"}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {**base, **allocatable}, "capacity": {**base, **allocatable}}}


NODES = {"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1200"},
         "items": [gpu_node("cpu-worker-0", {}),
                   gpu_node("gpu-h100-a", {"mig.das.com/1g.10gb": "7", "mig.das.com/3g.40gb": "2", "nvidia.com/gpu": "0"})]}

LOCAL_QUEUE = {
    "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
    "metadata": {"name": "kubescribe-whisper", "namespace": NS, "resourceVersion": "3344"},
    "spec": {"clusterQueue": "whisper-cq"},
    "status": {"conditions": [{"type": "Active", "status": "True", "reason": "Ready", "message": "Can submit new workloads to localQueue",
                               "lastTransitionTime": "2026-11-20T08:00:00Z"}], "pendingWorkloads": 0, "admittedWorkloads": 0},
}

SECRET_METADATA = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "kubescribe-s3", "namespace": NS, "uid": "9d0c1b2a-0000-4000-8000-000000000002",
                                "resourceVersion": "5521", "creationTimestamp": "2026-11-01T12:00:00Z"}}

# Argo's controller ConfigMap as the upstream manifests install it (namespace argo, name workflow-controller-configmap:
# argo-workflows v4.1.2 manifests/base/workflow-controller/workflow-controller-configmap.yaml), one key per field
# (config/controller.go parseConfigMap), with an executor securityContext at the restricted Pod Security level.
RESTRICTED_EXECUTOR = """\
image: quay.io/argoproj/argoexec:v4.1.2-nonroot
resources:
  requests:
    cpu: 10m
    memory: 64Mi
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
"""
CONTROLLER_CM_PATH = "/api/v1/namespaces/argo/configmaps/workflow-controller-configmap"


def controller_configmap(data: dict[str, str], namespace: str = "argo", name: str = "workflow-controller-configmap") -> tuple[int, dict]:
    return 200, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "namespace": namespace, "resourceVersion": "2201",
                              "uid": "a1b2c3d4-0000-4000-8000-000000000003"},
                 "data": data}


def namespace_object(labels: dict[str, str]) -> tuple[int, dict]:
    return 200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NS, "uid": "0f0e0d0c-0000-4000-8000-000000000004", "resourceVersion": "12",
        "labels": {"kubernetes.io/metadata.name": NS, **labels}}, "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}}


# DAS: its webhook sets runtimeClassName nvidia-legacy (openshift/instaslice-operator next, pkg/webhook/webhook.go);
# the RuntimeClass itself is cluster-scoped (node.k8s.io/v1). Hand-written, handler as its name.
RUNTIME_CLASS_PATH = "/apis/node.k8s.io/v1/runtimeclasses/nvidia-legacy"


def runtime_class(overhead: dict[str, str] | None = None) -> tuple[int, dict]:
    rc = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "handler": "nvidia-legacy",
          "metadata": {"name": "nvidia-legacy", "resourceVersion": "3101", "uid": "11111111-0000-4000-8000-000000000005"}}
    if overhead:
        rc["overhead"] = {"podFixed": overhead}
    return 200, rc


CQ_PATH = "/apis/kueue.x-k8s.io/v1beta2/clusterqueues/whisper-cq"


def cluster_queue(accelerator: str | None = "mig.das.com/1g.10gb", extra: tuple[str, ...] = (), cpu_memory: tuple[str, ...] = ("cpu", "memory")) -> tuple[int, dict]:
    """A Kueue v1beta2 ClusterQueue (shape of tests/schemas/kueue.x-k8s.io_clusterqueues.yaml)."""
    names = [*cpu_memory, *([accelerator] if accelerator else []), *extra]
    quota = {"cpu": "32", "memory": "128Gi"}
    return 200, {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
        "metadata": {"name": "whisper-cq", "resourceVersion": "4410", "uid": "22222222-0000-4000-8000-000000000006"},
        "spec": {"namespaceSelector": {}, "queueingStrategy": "BestEffortFIFO", "resourceGroups": [{
            "coveredResources": names,
            "flavors": [{"name": "default-flavor", "resources": [{"name": n, "nominalQuota": quota.get(n, "4")} for n in names]}]}]},
        "status": {"conditions": [{"type": "Active", "status": "True", "reason": "Ready", "message": "Can admit new workloads",
                                   "lastTransitionTime": "2026-11-20T08:00:00Z"}]},
    }


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
LQ_PATH = f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/localqueues/kubescribe-whisper"
SECRET_PATH = f"/api/v1/namespaces/{NS}/secrets/kubescribe-s3"


def healthy_cluster(fake: FakeServer) -> None:
    """A namespace where everything kubescribe needs is in place (DAS MIG node, Kueue v0.19, Argo v4)."""
    fake.on("GET", "/version/?", (200, VERSION))
    fake.on("GET", CRD_PATH + "workflowtemplates.argoproj.io", (200, crd("workflowtemplates", "argoproj.io", "WorkflowTemplate", ["v1alpha1"])))
    fake.on("GET", CRD_PATH + "workflows.argoproj.io", (200, crd("workflows", "argoproj.io", "Workflow", ["v1alpha1"])))
    fake.on("GET", CRD_PATH + "cronworkflows.argoproj.io", (200, crd("cronworkflows", "argoproj.io", "CronWorkflow", ["v1alpha1"])))
    fake.on("GET", CRD_PATH + "localqueues.kueue.x-k8s.io", (200, crd("localqueues", "kueue.x-k8s.io", "LocalQueue", ["v1beta1", "v1beta2"])))
    fake.on("GET", LQ_PATH, (200, LOCAL_QUEUE))
    fake.on("GET", "/api/v1/nodes", (200, NODES))
    fake.on("GET", SECRET_PATH, (200, SECRET_METADATA))
    fake.on("GET", "/v1/models", (200, {"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "object": "model", "owned_by": "vllm"}]}))
    fake.on("GET", CONTROLLER_CM_PATH, controller_configmap({"executor": RESTRICTED_EXECUTOR, "namespaceParallelism": "20"}))
    rbac_present(fake)
    fake.on("GET", RUNTIME_CLASS_PATH, runtime_class())
    fake.on("GET", CQ_PATH, cluster_queue())


def kubeconfig(tmp_path: Path, server: str, namespace: str = NS) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": K8S_TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "me", "namespace": namespace}}],
    }))
    return path


def doctor(capsys, tmp_path: Path, url: str, *extra: str, llm_url: str | None = None) -> tuple[int, dict[str, str], str]:
    rc, out, err = run_cli(["doctor", "--kubeconfig", str(kubeconfig(tmp_path, url)), "--llm-url", llm_url or f"{url}/v1",
                            *extra], capsys)
    states = {}
    for line in out.splitlines():
        m = re.match(r"(PASS|WARN|FAIL|SKIP)\s+(.+?)\s{2,}", line)
        if m:
            states[m.group(2)] = m.group(1)
    return rc, states, out


ALL_CHECKS = ["Kubernetes API", "Argo Workflows CRDs", "Argo executor", "Workflow RBAC", "Kueue CRDs", "Kueue LocalQueue",
              "GPU resource", "DAS RuntimeClass", "Kueue ClusterQueue", "MinIO Secret", "LLM gateway"]


def test_doctor_passes_on_a_ready_namespace(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0, out
    assert states == {name: "PASS" for name in ALL_CHECKS}
    assert "mig.das.com/1g.10gb" in out and "gpu-h100-a" in out  # DAS's name accepted for nvidia.com/mig-1g.10gb
    assert "11/11 checks passed" in out
    assert "ConfigMap argo/workflow-controller-configmap: executor.securityContext meets the restricted" in out
    assert f"ServiceAccount {NS}/{SA_NAME} exists; RoleBinding {SA_NAME} -> Role {SA_NAME} grant create, patch" in out
    assert "ClusterQueue whisper-cq covers cpu, memory, mig.das.com/1g.10gb" in out
    k8s = [r for r in fake.requests if r.path != "/v1/models"]
    assert [r.path for r in k8s if r.headers.get("Authorization") != f"Bearer {K8S_TOKEN}"] == []
    assert NS in out  # the kubeconfig context's namespace is used
    [secret] = fake.sent("GET", SECRET_PATH)
    assert "as=PartialObjectMetadata" in secret.headers["Accept"]  # metadata only: the data is never requested
    assert all(r.method == "GET" for r in fake.requests)  # doctor only reads


@pytest.mark.parametrize(
    ("failing", "setup", "fragments"),
    [
        ("Argo Workflows CRDs", lambda f: f.on("GET", CRD_PATH + "workflowtemplates.argoproj.io",
                                              k8s_not_found("customresourcedefinitions.apiextensions.k8s.io", "workflowtemplates.argoproj.io")),
         ["workflowtemplates.argoproj.io", "install Argo Workflows"]),
        ("Kueue CRDs", lambda f: f.on("GET", CRD_PATH + "localqueues.kueue.x-k8s.io",
                                     (200, crd("localqueues", "kueue.x-k8s.io", "LocalQueue", ["v1beta1"]))),
         ["not v1beta2", "upgrade Kueue"]),
        ("Kueue LocalQueue", lambda f: f.on("GET", LQ_PATH, k8s_not_found("localqueues.kueue.x-k8s.io", "kubescribe-whisper")),
         [f"LocalQueue {NS}/kubescribe-whisper not found", "kind: LocalQueue"]),
        ("Kueue LocalQueue", lambda f: f.on("GET", LQ_PATH, (200, {**LOCAL_QUEUE, "status": {"conditions": [
            {"type": "Active", "status": "False", "reason": "ClusterQueueDoesNotExist", "message": "Can't submit new workloads to clusterQueue",
             "lastTransitionTime": "2026-11-20T08:00:00Z"}]}})),
         ["not active", "kubectl get clusterqueue whisper-cq"]),
        ("GPU resource", lambda f: f.on("GET", "/api/v1/nodes", (200, {**NODES, "items": [
            gpu_node("gpu-h200-a", {"mig.das.com/1g.18gb": "7", "mig.das.com/3g.71gb": "2"})]})),
         ["no node has mig.das.com/1g.10gb allocatable (DAS renames nvidia.com/mig-1g.10gb to it)", "nvidia.com/mig-1g.18gb",
          "--accelerator"]),
        ("MinIO Secret", lambda f: f.on("GET", SECRET_PATH, k8s_not_found("secrets", "kubescribe-s3")),
         [f"Secret {NS}/kubescribe-s3 not found", "create secret generic kubescribe-s3"]),
        ("MinIO Secret", lambda f: f.on("GET", SECRET_PATH, (403, k8s_status(403, "Forbidden", 'secrets "kubescribe-s3" is forbidden'))),
         ["no permission", "auth can-i get secret/kubescribe-s3"]),
        ("LLM gateway", lambda f: f.on("GET", "/v1/models", (503, "no healthy upstream")),
         ["503", "InferencePool"]),
    ],
    ids=["argo-missing", "kueue-too-old", "queue-missing", "queue-inactive", "no-such-mig", "secret-missing",
         "secret-forbidden", "gateway-503"],
)
def test_doctor_fails_exactly_the_broken_check(http, capsys, tmp_path: Path, failing, setup, fragments) -> None:
    fake, url = http
    healthy_cluster(fake)
    setup(fake)
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2
    expected = {name: "PASS" for name in ALL_CHECKS}
    expected[failing] = "FAIL"
    if failing == "Kueue CRDs":
        expected["Kueue LocalQueue"] = expected["Kueue ClusterQueue"] = "SKIP"
    if failing == "Kueue LocalQueue" and "not found" in fragments[0]:
        expected["Kueue ClusterQueue"] = "SKIP"
    assert states == expected, out
    assert "fix: " in out
    for fragment in fragments:
        assert fragment in out, out


def test_doctor_falls_back_to_discovery_when_crds_are_forbidden(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    forbidden = (403, k8s_status(403, "Forbidden", "customresourcedefinitions.apiextensions.k8s.io is forbidden"))
    fake.on("GET", CRD_PATH + ".*", forbidden)
    fake.on("GET", "/apis", (200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "argoproj.io", "versions": [{"groupVersion": "argoproj.io/v1alpha1", "version": "v1alpha1"}],
         "preferredVersion": {"groupVersion": "argoproj.io/v1alpha1", "version": "v1alpha1"}},
        {"name": "kueue.x-k8s.io", "versions": [{"groupVersion": "kueue.x-k8s.io/v1beta2", "version": "v1beta2"},
                                                 {"groupVersion": "kueue.x-k8s.io/v1beta1", "version": "v1beta1"}],
         "preferredVersion": {"groupVersion": "kueue.x-k8s.io/v1beta2", "version": "v1beta2"}}]}))

    def resources(group_version: str, names: list[str]) -> tuple[int, dict]:
        return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                     "resources": [{"name": n, "namespaced": True, "kind": n.title(), "verbs": ["get", "list"]} for n in names]}

    fake.on("GET", "/apis/argoproj.io/v1alpha1", resources("argoproj.io/v1alpha1", ["workflows", "workflowtemplates", "cronworkflows"]))
    fake.on("GET", "/apis/kueue.x-k8s.io/v1beta2", resources("kueue.x-k8s.io/v1beta2", ["localqueues", "clusterqueues"]))
    fake.on("GET", "/apis/kueue.x-k8s.io/v1beta1", resources("kueue.x-k8s.io/v1beta1", ["localqueues", "clusterqueues"]))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0, out
    assert "via API discovery" in out


def test_doctor_accepts_whole_gpus_and_cpu(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", "/api/v1/nodes", (200, {**NODES, "items": [gpu_node("gpu-l4-0", {"nvidia.com/gpu": "1"})]}))
    fake.on("GET", CQ_PATH, cluster_queue("nvidia.com/gpu"))
    rc, states, out = doctor(capsys, tmp_path, url, "--accelerator", "nvidia.com/gpu")
    assert rc == 0 and "gpu-l4-0 (nvidia.com/gpu: 1)" in out, out
    assert "DAS not in use" in out
    rc, states, out = doctor(capsys, tmp_path, url, "--accelerator", "cpu", "--queue", "", "--s3-secret", "")
    assert rc == 0 and states["GPU resource"] == "PASS" and "no GPU resource needed" in out


def test_doctor_never_prints_secret_data(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    # A server (or proxy) that ignores the metadata-only Accept header and returns the whole Secret.
    full = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": SECRET_METADATA["metadata"],
            "data": {"accesskey": "bWluaW9hZG1pbg==", "secretkey": "c3VwZXItc2VjcmV0LWtleQ=="}}
    fake.on("GET", SECRET_PATH, (200, full))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["MinIO Secret"] == "PASS"
    assert "bWluaW9hZG1pbg" not in out and "c3VwZXItc2VjcmV0" not in out and "super-secret" not in out


def test_doctor_unreachable_api_server_skips_cluster_checks(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    fake.on("GET", "/v1/models", (200, {"object": "list", "data": [{"id": "Qwen/Qwen3-8B"}]}))
    dead = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    rc, out, err = run_cli(["doctor", "--kubeconfig", str(kubeconfig(tmp_path, dead)), "--llm-url", f"{url}/v1"], capsys)
    assert rc == 2 and time.monotonic() - t0 < 10
    assert re.search(rf"FAIL\s+Kubernetes API\s+cannot reach the Kubernetes API at {dead} \(connection refused\)", out)
    assert out.count("SKIP") == 7 and re.search(r"PASS\s+LLM gateway", out)


def test_doctor_expired_credentials(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", "/version/?", (401, k8s_status(401, "Unauthorized", "Unauthorized")))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Kubernetes API"] == "FAIL" and "rejected the credentials (401)" in out
    assert "expired" in out


def test_doctor_gateway_refused_and_outside_cluster_hint(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    rc, states, out = doctor(capsys, tmp_path, url, llm_url=dead)
    assert rc == 2 and states["LLM gateway"] == "FAIL"
    assert f"GET {dead}/models: connection refused" in out and "port-forward" in out


def test_doctor_without_kubeconfig_is_a_failed_check_not_a_traceback(capsys, tmp_path: Path) -> None:
    rc, out, err = run_cli(["doctor", "--kubeconfig", str(tmp_path / "nope"), "--llm-url", f"http://127.0.0.1:{_closed_port()}/v1"], capsys)
    assert rc == 2 and re.search(r"FAIL\s+Kubernetes API\s+kubeconfig .*nope does not exist", out)


def test_doctor_namespace_flag_and_settings(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", "/apis/kueue.x-k8s.io/v1beta2/namespaces/batch/localqueues/q1", (200, {**LOCAL_QUEUE, "metadata": {"name": "q1", "namespace": "batch"}}))
    fake.on("GET", "/api/v1/namespaces/batch/secrets/minio-creds", (200, SECRET_METADATA))
    rbac_present(fake, namespace="batch")
    settings = tmp_path / "s.yaml"
    settings.write_text("queue_name: q1\ns3_secret: minio-creds\n")
    rc, states, out = doctor(capsys, tmp_path, url, "--namespace", "batch", "--settings", str(settings))
    assert rc == 0, out
    assert "LocalQueue batch/q1 exists" in out



# --- doctor: Argo's executor securityContext (issue 7 point 2) ----------------------------------------------------


def fix_block(out: str, check: str) -> str:
    """The multi-line fix printed under ``check``, without the indentation."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"(FAIL|WARN)\s+{re.escape(check)}\s", ln)) + 1
    block = []
    for ln in lines[start:]:
        if re.match(r"(PASS|WARN|FAIL|SKIP) ", ln) or re.match(r"\d+/\d+ checks passed", ln):
            break
        block.append(ln)
    indent = len(block[0]) - len(block[0].lstrip())
    return "\n".join(ln[indent:] for ln in block)


UNSET_EXECUTOR = "image: quay.io/argoproj/argoexec:v4.1.2-nonroot\nresources:\n  requests:\n    cpu: 10m\n"


def test_doctor_fails_an_executor_without_security_context_in_a_restricted_namespace(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CONTROLLER_CM_PATH, controller_configmap({"executor": UNSET_EXECUTOR}))
    fake.on("GET", f"/api/v1/namespaces/{NS}", namespace_object({"pod-security.kubernetes.io/enforce": "restricted"}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Argo executor"] == "FAIL", out
    assert {k: v for k, v in states.items() if k != "Argo executor"} == {n: "PASS" for n in ALL_CHECKS if n != "Argo executor"}
    assert "lacks runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities.drop: [ALL], seccompProfile.type: RuntimeDefault" in out
    assert f"which namespace {NS} enforces: every pod is rejected" in out
    fix = fix_block(out, "Argo executor")
    assert fix.startswith("fix: kubectl -n argo edit configmap workflow-controller-configmap, and add (keeping its other keys):")
    # The snippet is exact: pasted into the ConfigMap and merged with the executor already there, it gives a
    # securityContext at the restricted level.
    snippet = yaml.safe_load(textwrap.dedent(fix.split("\n", 1)[1]))
    added = yaml.safe_load(snippet["data"]["executor"])
    assert added == {"securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                         "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}
    assert all(r.method == "GET" for r in fake.requests)


def test_doctor_warns_about_the_executor_where_restricted_is_not_enforced(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CONTROLLER_CM_PATH, controller_configmap({"executor": UNSET_EXECUTOR}))
    fake.on("GET", f"/api/v1/namespaces/{NS}", namespace_object({"pod-security.kubernetes.io/enforce": "baseline"}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["Argo executor"] == "WARN", out  # works today: a warning, not a failure
    assert f"namespace {NS} enforces baseline" in out and "10/11 checks passed, 1 warning(s)" in out
    assert "drop: [ALL]" in fix_block(out, "Argo executor")  # the snippet is shown with the warning too


def test_doctor_reads_the_legacy_single_config_key(http, capsys, tmp_path: Path) -> None:
    # config/controller.go parseConfigMap: a sole "config" key holds the whole configuration.
    fake, url = http
    healthy_cluster(fake)
    legacy = "executor:\n" + "".join(f"  {ln}\n" for ln in RESTRICTED_EXECUTOR.replace("drop: [ALL]", "drop: [NET_RAW]").splitlines())
    fake.on("GET", CONTROLLER_CM_PATH, controller_configmap({"config": legacy}))
    fake.on("GET", f"/api/v1/namespaces/{NS}", (403, k8s_status(403, "Forbidden", 'namespaces "audio" is forbidden')))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert states["Argo executor"] == "WARN", out
    assert "lacks capabilities.drop: [ALL]," in out and "the namespace's labels are not readable" in out
    fix = fix_block(out, "Argo executor")
    assert "data:\n  config: |\n    executor:\n      securityContext:\n" in textwrap.dedent(fix.split("\n", 1)[1])


def test_doctor_finds_the_controller_configmap_of_a_namespaced_or_helm_install(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CONTROLLER_CM_PATH, k8s_not_found("configmaps", "workflow-controller-configmap"))
    fake.on("GET", f"/api/v1/namespaces/{NS}/configmaps/workflow-controller-configmap",
            controller_configmap({"executor": RESTRICTED_EXECUTOR}, namespace=NS))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and f"ConfigMap {NS}/workflow-controller-configmap: executor.securityContext meets" in out, out
    # Argo's Helm chart names it <release>-workflow-controller-configmap: --argo-configmap says where.
    helm = "/api/v1/namespaces/argo-workflows/configmaps/argo-workflows-workflow-controller-configmap"
    fake.on("GET", helm, controller_configmap({"executor": RESTRICTED_EXECUTOR}, "argo-workflows", "argo-workflows-workflow-controller-configmap"))
    rc, states, out = doctor(capsys, tmp_path, url, "--argo-configmap", "argo-workflows/argo-workflows-workflow-controller-configmap")
    assert rc == 0 and "ConfigMap argo-workflows/argo-workflows-workflow-controller-configmap: executor" in out, out


def test_doctor_warns_when_the_controller_configmap_is_not_found(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CONTROLLER_CM_PATH, k8s_not_found("configmaps", "workflow-controller-configmap"))
    fake.on("GET", f"/api/v1/namespaces/{NS}/configmaps/workflow-controller-configmap", k8s_not_found("configmaps", "workflow-controller-configmap"))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["Argo executor"] == "WARN", out
    assert "--argo-configmap NAMESPACE/NAME" in out and "runAsNonRoot: true" in out


def test_doctor_warns_about_the_root_executor_image(http, capsys, tmp_path: Path) -> None:
    # workflow/controller/config.go: the default executor image is quay.io/argoproj/argoexec:<tag>, which runs as
    # root (Dockerfile stage argoexec has no USER): under runAsNonRoot it needs a runAsUser, or the -nonroot image.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CONTROLLER_CM_PATH, controller_configmap({"executor": RESTRICTED_EXECUTOR.split("\n", 1)[1]}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["Argo executor"] == "WARN", out
    assert "meets the restricted Pod Security level; but the executor image is Argo's default root argoexec" in out
    assert "image: quay.io/argoproj/argoexec:<your Argo version>-nonroot" in out


# --- doctor: the workflow RBAC (issue 7 point 1) -------------------------------------------------------------------


def test_doctor_fails_a_role_without_patch(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    rbac_present(fake, rules=[{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "get"]}])
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Workflow RBAC"] == "FAIL", out
    assert f"missing: patch on workflowtaskresults.argoproj.io for ServiceAccount {SA_NAME} (bound through RoleBinding {SA_NAME})" in out
    assert f"kubescribe templates install -n {NS}" in out


def test_doctor_fails_a_missing_service_account_and_binding(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", f"{SA_COLLECTION}/{SA_NAME}", k8s_not_found("serviceaccounts", SA_NAME))
    fake.on("GET", BINDING_COLLECTION, binding_list())
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Workflow RBAC"] == "FAIL", out
    assert f"ServiceAccount {NS}/{SA_NAME}; a RoleBinding of ServiceAccount {SA_NAME} to a Role with create, patch" in out


def test_doctor_accepts_a_binding_to_a_cluster_role_or_group(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    group = [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": f"system:serviceaccounts:{NS}"}]
    fake.on("GET", BINDING_COLLECTION, binding_list(binding_manifest("argo-executor", "argo-executor", group, "ClusterRole")))
    fake.on("GET", f"{RBAC_API}/clusterroles/argo-executor", (200, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "argo-executor"},
        "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults", "workflowtasksets"], "verbs": ["*"]}]}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and "RoleBinding argo-executor -> ClusterRole argo-executor grant create, patch" in out, out


def test_doctor_warns_when_the_bound_cluster_role_is_not_readable(http, capsys, tmp_path: Path) -> None:
    # A namespace admin may list RoleBindings but not read ClusterRoles: unknown, not missing.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", BINDING_COLLECTION, binding_list(binding_manifest("argo-executor", "argo-executor", None, "ClusterRole")))
    fake.on("GET", f"{RBAC_API}/clusterroles/argo-executor", (403, k8s_status(403, "Forbidden", "clusterroles is forbidden")))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["Workflow RBAC"] == "WARN", out
    assert "cannot check ClusterRole argo-executor (referenced by RoleBinding argo-executor)" in out


def test_doctor_warns_when_rbac_is_not_readable(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", BINDING_COLLECTION, (403, k8s_status(403, "Forbidden", "rolebindings.rbac.authorization.k8s.io is forbidden")))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and states["Workflow RBAC"] == "WARN", out
    assert f"cannot check RoleBindings of namespace {NS} (no permission to read it)" in out


# --- doctor: DAS (issue 7, DAS part) ---------------------------------------------------------------------------------


def test_doctor_fails_when_the_das_runtime_class_is_missing(http, capsys, tmp_path: Path) -> None:
    # openshift/instaslice-operator next, pkg/webhook/webhook.go: a rewritten pod gets runtimeClassName nvidia-legacy
    # and schedulerName das-scheduler; the API server rejects a pod whose RuntimeClass does not exist.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", RUNTIME_CLASS_PATH, k8s_not_found("runtimeclasses.node.k8s.io", "nvidia-legacy"))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["DAS RuntimeClass"] == "FAIL", out
    for fragment in ("RuntimeClass nvidia-legacy not found", "mig.das.com/1g.10gb", "schedulerName das-scheduler",
                     "runtimeClassName nvidia-legacy"):
        assert fragment in out, out


def test_doctor_reports_the_runtime_class_overhead_kueue_counts(http, capsys, tmp_path: Path) -> None:
    # kueue v0.19.2 pkg/workload/resources.go handlePodOverhead: the RuntimeClass's overhead.podFixed becomes the pod
    # set's overhead, so it is counted against the ClusterQueue.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", RUNTIME_CLASS_PATH, runtime_class({"cpu": "250m", "memory": "120Mi"}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0, out
    assert "overhead.podFixed (cpu: 250m, memory: 120Mi) is added to each Whisper pod's requests, and Kueue counts it" in out
    assert "plus RuntimeClass overhead cpu: 250m, memory: 120Mi per pod" in out
    fake.on("GET", CQ_PATH, cluster_queue(cpu_memory=("cpu",)))  # a queue that forgot memory: nothing is admitted
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Kueue ClusterQueue"] == "FAIL" and "does not cover memory" in out, out


def test_doctor_fails_a_cluster_queue_counting_the_name_before_das_renames_it(http, capsys, tmp_path: Path) -> None:
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", CQ_PATH, cluster_queue("nvidia.com/mig-1g.10gb"))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 2 and states["Kueue ClusterQueue"] == "FAIL", out
    assert ("ClusterQueue whisper-cq counts nvidia.com/mig-1g.10gb, but the DAS webhook renames the Whisper pods' limit "
            "to mig.das.com/1g.10gb before Kueue builds their Workload") in out
    assert "replace nvidia.com/mig-1g.10gb with mig.das.com/1g.10gb" in out


def test_doctor_without_das_wants_the_mig_name_itself(http, capsys, tmp_path: Path) -> None:
    # The NVIDIA device plugin's MIG strategy "mixed" advertises nvidia.com/mig-<profile>; no DAS rename happens.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", "/api/v1/nodes", (200, {**NODES, "items": [gpu_node("gpu-a100-0", {"nvidia.com/mig-1g.10gb": "7"})]}))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert states["DAS RuntimeClass"] == "PASS" and "DAS not in use" in out, out
    assert states["Kueue ClusterQueue"] == "FAIL" and "does not cover nvidia.com/mig-1g.10gb" in out
    fake.on("GET", CQ_PATH, cluster_queue("nvidia.com/mig-1g.10gb"))
    rc, states, out = doctor(capsys, tmp_path, url)
    assert rc == 0 and "gpu-a100-0 (nvidia.com/mig-1g.10gb: 7)" in out, out
    assert not fake.sent("GET", RUNTIME_CLASS_PATH)


def test_doctor_whole_gpus_cannot_be_had_where_das_renames_them(http, capsys, tmp_path: Path) -> None:
    # pkg/webhook/webhook.go renames every nvidia.com/<x> limit to mig.das.com/<x>, nvidia.com/gpu included; DAS
    # nodes advertise only mig.das.com/<profile>.
    fake, url = http
    healthy_cluster(fake)
    fake.on("GET", "/api/v1/nodes", (200, {**NODES, "items": [*NODES["items"], gpu_node("gpu-l4-0", {"nvidia.com/gpu": "1"})]}))
    fake.on("GET", CQ_PATH, cluster_queue("mig.das.com/gpu"))
    rc, states, out = doctor(capsys, tmp_path, url, "--accelerator", "nvidia.com/gpu")
    assert rc == 2 and states["GPU resource"] == "FAIL", out
    assert "no node has mig.das.com/gpu allocatable (DAS renames nvidia.com/gpu to it)" in out
    assert "ask for a MIG profile" in out


# --- doctor: URL credentials of the gateway (issue 7 point 4; guards what steps.urls already does) ----------------


def test_doctor_sends_gateway_url_credentials_as_basic_auth_and_never_prints_them(http, capsys, tmp_path: Path) -> None:
    import base64

    fake, url = http
    healthy_cluster(fake)
    host = url.removeprefix("http://")
    rc, states, out = doctor(capsys, tmp_path, url, llm_url=f"http://summarizer:s3cr%40t-pw@{host}/v1")
    assert rc == 0 and states["LLM gateway"] == "PASS", out
    [models] = fake.sent("GET", "/v1/models")
    assert models.headers["Authorization"] == "Basic " + base64.b64encode(b"summarizer:s3cr@t-pw").decode()
    assert "s3cr" not in out and "summarizer" not in out and f"GET {url}/v1/models answered" in out


def test_submit_with_a_run_deadline_creates_a_workflow_that_references_the_template(http, capsys) -> None:
    """The submit API's options carry no deadline; a Workflow that references the template does, and Argo lets the
    Workflow's spec win over the template's (argo-workflows workflow/util/merge.go JoinWorkflowSpec)."""
    fake, url = http
    fake.on("POST", f"/api/v1/workflows/{NS}", lambda req: (200, {**submitted_workflow(), "spec": req.json["workflow"]["spec"]}))
    rc, out, err = run_cli(["submit", "--argo-server", url, "--token", TOKEN, "-n", NS, "--active-deadline", "7200",
                            "-p", "input=s3://audio/2026-12"], capsys)
    assert rc == 0, err
    assert not fake.sent("POST", f"/api/v1/workflows/{NS}/submit")
    [req] = fake.sent("POST", f"/api/v1/workflows/{NS}")
    assert req.json == {"workflow": {"metadata": {"generateName": "kubescribe-"}, "spec": {
        "workflowTemplateRef": {"name": "kubescribe"}, "activeDeadlineSeconds": 7200,
        "arguments": {"parameters": [{"name": "input", "value": "s3://audio/2026-12"}]}}}}
    assert f"{url}/workflows/{NS}/{WF_NAME}" in out

    rc, _, err = run_cli(["submit", "--inline", "--argo-server", url, "--token", TOKEN, "-n", NS,
                          "--active-deadline", "600"], capsys)
    assert rc == 0, err
    assert fake.sent("POST", f"/api/v1/workflows/{NS}")[-1].json["workflow"]["spec"]["activeDeadlineSeconds"] == 600
    with pytest.raises(SystemExit):  # argparse: under a minute is refused before anything is sent
        run_cli(["submit", "--argo-server", url, "--active-deadline", "30"], capsys)
    assert "at least 60 s" in capsys.readouterr().err
    assert len(fake.requests) == 2
