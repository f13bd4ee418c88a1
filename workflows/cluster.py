"""Cluster commands: ``kubescribe submit``, ``kubescribe templates install`` and ``kubescribe doctor``.

``submit`` and ``templates install`` talk to the Argo Server REST API through hera's ``WorkflowsService``;
``templates install`` also creates or updates the workflow pods' ServiceAccount, Role and RoleBinding
(``workflows/rbac.py``) through the Kubernetes API (kubeconfig), or with ``--no-rbac`` refuses when they are missing.
``doctor`` checks a namespace with the ``kubernetes`` client (and the LLM gateway with httpx): Argo (CRDs, the
controller's executor securityContext), the workflow RBAC, Kueue (LocalQueue, ClusterQueue quota), the GPU resource
and DAS (``workflows/das.py``), the S3 Secret and the gateway. It only reads.

Where values come from, first wins: the command-line flag, then the environment (``ARGO_SERVER``, ``ARGO_TOKEN``,
``ARGO_NAMESPACE``, ``ARGO_INSECURE_SKIP_VERIFY``, as the argo CLI uses them), then ``--settings FILE.yaml``
(``PipelineSettings`` fields), then the ``PipelineSettings`` defaults.

Exit status: 0 success; 1 ``submit --wait`` saw the workflow fail; 2 any error (one line on stderr, no
traceback) or, for ``doctor``, any failed or skipped check (warnings do not fail). The Argo token is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workflows.settings import PipelineSettings

T = TypeVar("T")

ENV_SERVER, ENV_TOKEN, ENV_NAMESPACE = "ARGO_SERVER", "ARGO_TOKEN", "ARGO_NAMESPACE"
ENV_INSECURE = "ARGO_INSECURE_SKIP_VERIFY"
DEFAULT_NAMESPACE = "default"
HTTP_TIMEOUT_S = 30.0
FINISHED_PHASES = ("Succeeded", "Failed", "Error")
PORT_FORWARD_HINT = "e.g. `kubectl -n argo port-forward svc/argo-server 2746:2746` and --argo-server https://localhost:2746"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class ClusterError(Exception):
    """An expected failure: the message is one line that says what happened and what to do."""


# --- settings -----------------------------------------------------------------------------------------------------

# flag attribute → PipelineSettings field. "" means "unset" for the optional fields.
_SETTING_FLAGS = {
    "template": "name",
    "queue": "queue_name",
    "accelerator": "accelerator",
    "s3_secret": "s3_secret",
    "llm_url": "llm_url",
    "llm_model": "llm_model",
    "whisper_image": "whisper_image",
    "steps_image": "steps_image",
}
_OPTIONAL_FIELDS = {"queue_name", "s3_secret", "priority_class", "llm_secret", "namespace", "service_account"}


def _validation_message(exc: Exception, source: str) -> str:
    errors = getattr(exc, "errors", lambda: [])()
    if not errors:
        return f"invalid settings ({source}): {exc}"
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "settings"
        parts.append(f"{loc}: {e.get('msg', '').removeprefix('Value error, ')}")
    return f"invalid settings ({source}): " + "; ".join(parts)


def load_settings(a: argparse.Namespace) -> PipelineSettings:
    """PipelineSettings from ``--settings FILE.yaml`` (optional) overridden by the command's flags."""
    import yaml
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    source = "defaults"
    if getattr(a, "settings", None):
        path = Path(a.settings)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ClusterError(f"cannot read settings file {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ClusterError(f"settings file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ClusterError(f"settings file {path} must hold a mapping of PipelineSettings fields")
        data = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    flags = {}
    for attr, fld in _SETTING_FLAGS.items():
        value = getattr(a, attr, None)
        if value is not None:
            flags[fld] = None if (value == "" and fld in _OPTIONAL_FIELDS) else value
    if flags:
        source += " + flags" if source != "defaults" else "flags"
    try:
        return PipelineSettings(**{**data, **flags})
    except ValidationError as e:
        raise ClusterError(_validation_message(e, source)) from None


def _resolve_namespace(a: argparse.Namespace, settings: PipelineSettings, fallback: str | None = None) -> tuple[str, PipelineSettings]:
    """The target namespace (flag > $ARGO_NAMESPACE > settings > fallback > "default"), and settings whose
    ``namespace`` (rendered into metadata when set) does not contradict it."""
    override = getattr(a, "namespace", None) or os.environ.get(ENV_NAMESPACE) or None
    if override and settings.namespace and settings.namespace != override:
        settings = settings.model_copy(update={"namespace": override})
    return override or settings.namespace or fallback or DEFAULT_NAMESPACE, settings


# --- Argo Server ----------------------------------------------------------------------------------------------------


def _requests_session(timeout: float):
    import requests

    class _Session(requests.Session):
        def request(self, method, url, **kwargs):  # hera sets no timeout: never hang on a dead server
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, **kwargs)

    return _Session()


@dataclass
class ArgoTarget:
    server: str  # base URL without trailing slash, as shown to the user
    namespace: str
    token: str | None
    verify: bool

    def ui(self, *parts: str) -> str:
        return "/".join([self.server, *parts])

    def redact(self, text: str) -> str:
        if self.token:
            for secret in {self.token, self.token.split()[-1]}:
                if len(secret) >= 4:
                    text = text.replace(secret, "***")
        return text

    def service(self):
        from hera.workflows import WorkflowsService

        if not self.verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return WorkflowsService(host=self.server + "/", token=self.token, verify_ssl=self.verify, namespace=self.namespace,
                                session=_requests_session(HTTP_TIMEOUT_S))


def argo_target(a: argparse.Namespace, namespace: str) -> ArgoTarget:
    server = (getattr(a, "argo_server", None) or os.environ.get(ENV_SERVER) or "").strip()
    if not server:
        raise ClusterError(f"no Argo Server given: pass --argo-server URL or set {ENV_SERVER} ({PORT_FORWARD_HINT})")
    if "://" not in server:  # the argo CLI's ARGO_SERVER is host:port, HTTPS unless ARGO_SECURE=false
        scheme = "http" if os.environ.get("ARGO_SECURE", "true").lower() == "false" else "https"
        server = f"{scheme}://{server}"
    if not server.startswith(("http://", "https://")):
        raise ClusterError(f"--argo-server must be an http(s):// URL, got {server!r}")
    insecure = getattr(a, "insecure", False) or os.environ.get(ENV_INSECURE, "").lower() in ("1", "true", "yes")
    token = getattr(a, "token", None) or os.environ.get(ENV_TOKEN) or None
    return ArgoTarget(server.rstrip("/"), namespace, token.strip() if token else None, verify=not insecure)


def _server_message(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"with message: `(.*)`", text, re.S)
    return " ".join((m.group(1) if m else text).split())[:300]


def _network_reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if re.search(r"Name or service not known|nodename nor servname|Failed to resolve|getaddrinfo", text):
        return "the host name does not resolve"
    if "timed out" in text.lower():
        return "the connection timed out"
    return "the connection failed"


def explain_argo_error(exc: Exception, t: ArgoTarget, action: str, *, resource: str, not_found: str) -> ClusterError:
    """One actionable line for an Argo Server failure while doing ``action`` (e.g. "submit kubescribe")."""
    import requests
    from hera.exceptions import Forbidden, HeraException, NotFound, Unauthorized

    s, ns = t.server, t.namespace
    if isinstance(exc, requests.exceptions.SSLError):
        msg = (f"TLS to the Argo Server {s} failed while trying to {action}: the certificate is not trusted (self-signed?) "
               f"or the server speaks plain HTTP. Pass --insecure (or set REQUESTS_CA_BUNDLE to its CA), or use http:// "
               f"if it runs with --secure=false")
    elif isinstance(exc, requests.exceptions.Timeout):
        msg = f"the Argo Server {s} did not answer within {HTTP_TIMEOUT_S:.0f} s while trying to {action}; check --argo-server and the server's health"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        msg = (f"cannot reach the Argo Server at {s} ({_network_reason(exc)}) while trying to {action}. "
               f"Check --argo-server / {ENV_SERVER} and that the server is reachable from here ({PORT_FORWARD_HINT})")
    elif isinstance(exc, Unauthorized):
        msg = (f"the Argo Server {s} answered 401 Unauthorized to {action}: the token is missing or expired. "
               f"Pass --token or set {ENV_TOKEN} to a fresh one, e.g. `kubectl -n {ns} create token <service-account>`")
    elif isinstance(exc, Forbidden):
        msg = (f"the Argo Server {s} answered 403 Forbidden to {action} in namespace {ns}: RBAC - the service account "
               f"behind the token lacks permission on {resource} there. Bind it to a Role that allows it (ask your "
               f"cluster admin). Server said: {_server_message(exc)}")
    elif isinstance(exc, NotFound):
        msg = f"the Argo Server {s} answered 404 Not Found to {action}: {not_found}"
    elif isinstance(exc, HeraException):
        status = getattr(exc, "status_code", "an error")
        detail = _server_message(exc)
        if "HTTP request to an HTTPS server" in detail:
            msg = f"the Argo Server {s} speaks HTTPS: use --argo-server {s.replace('http://', 'https://', 1)}"
        else:
            msg = f"the Argo Server {s} answered {status} to {action}: {detail}"
    elif isinstance(exc, (ValueError, TypeError)):  # a 2xx that is not the Argo API's JSON (JSONDecodeError, pydantic)
        msg = f"{s} answered {action} with something that is not Argo Server API JSON: is --argo-server the Argo Server URL?"
    else:
        msg = f"{action} failed against {s}: {exc}"
    return ClusterError(t.redact(msg))


def _argo_call(t: ArgoTarget, action: str, fn: Callable[..., T], *args: Any, resource: str, not_found: str,
               passthrough: tuple[type[BaseException], ...] = (), **kwargs: Any) -> T:
    import requests
    from hera.exceptions import HeraException
    from pydantic import ValidationError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hera's pydantic-v1 style .json() deprecation noise
            return fn(*args, **kwargs)
    except passthrough:
        raise
    # requests' JSONDecodeError is a RequestException; ValidationError: a 2xx body that is not the object asked for
    except (requests.RequestException, HeraException, ValidationError) as e:
        raise explain_argo_error(e, t, action, resource=resource, not_found=not_found) from None


def _parse_parameters(items: list[str] | None) -> dict[str, str]:
    from workflows.pipeline import RUN_PARAMETERS

    known = [name for name, _, _ in RUN_PARAMETERS]
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ClusterError(f"-p wants key=value, got {item!r}")
        if key not in known:
            raise ClusterError(f"unknown parameter {key!r}; the template's parameters are: {', '.join(known)}")
        params[key] = value
    return params


def _create_or_update(t: ArgoTarget, kind: str, name: str, create: Callable[[], Any], get: Callable[[], Any],
                      update: Callable[[str], Any], resource: str) -> str:
    """Create; on 409 AlreadyExists fetch the resourceVersion and update. Returns "created" or "updated"."""
    from hera.exceptions import AlreadyExists

    ns_hint = (f"namespace {t.namespace} does not exist, or {t.server} is not an Argo Server API URL; "
               f"check --namespace and --argo-server")
    try:
        _argo_call(t, f"create {kind} {name}", create, resource=resource, not_found=ns_hint, passthrough=(AlreadyExists,))
        return "created"
    except AlreadyExists:
        pass
    current = _argo_call(t, f"read {kind} {name}", get, resource=resource,
                         not_found=f"{kind} {name} was reported to exist in {t.namespace} but cannot be read; retry")
    version = current.metadata.resource_version if current.metadata else None
    if not version:
        raise ClusterError(f"the Argo Server {t.server} returned {kind} {name} without a resourceVersion; cannot update it")
    _argo_call(t, f"update {kind} {name}", update, version, resource=resource, not_found=ns_hint)
    return "updated"


def build_cron(settings: PipelineSettings, schedules: list[str]):
    """The CronWorkflow model of ``workflows.cron``: the installed WorkflowTemplate, run with ``only-new=true``."""
    from workflows.cron import build_cron_workflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_cron_workflow(settings, schedules=schedules).build()


_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def _check_schedule(s: str) -> str:
    s = " ".join(s.split())
    body = re.sub(r"^CRON_TZ=\S+ ", "", s)
    if body.startswith("@") or (len(body.split()) == 5 and all(_CRON_FIELD.match(f) for f in body.split())):
        return s
    raise ClusterError(f"--cron {s!r} is not a cron schedule: use 5 fields like \"0 * * * *\" or @hourly/@daily")


# --- commands: templates install, submit ----------------------------------------------------------------------------


def cmd_templates_install(a: argparse.Namespace) -> int:
    from hera.workflows.models import (
        CreateCronWorkflowRequest,
        UpdateCronWorkflowRequest,
        WorkflowTemplateCreateRequest,
        WorkflowTemplateUpdateRequest,
    )

    from workflows.pipeline import build_workflow_template

    settings = load_settings(a)
    ns, settings = _resolve_namespace(a, settings)
    schedules = [_check_schedule(s) for s in a.cron or []]
    t = argo_target(a, ns)
    ws = t.service()
    name = settings.name

    # The pods' identity first: a WorkflowTemplate whose serviceAccountName does not exist (or may not report
    # results) only fails at run time, pod by pod.
    if a.no_rbac:
        require_rbac(a, ns, settings)
    else:
        for line in install_rbac(a, ns, settings):
            print(line)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = build_workflow_template(settings).build()
        cron = build_cron(settings, schedules) if schedules else None

    def update_template(version: str):
        model = template.model_copy(deep=True)
        model.metadata.resource_version = version
        return ws.update_workflow_template(name, WorkflowTemplateUpdateRequest(template=model), namespace=ns)

    what = _create_or_update(
        t, "WorkflowTemplate", name,
        create=lambda: ws.create_workflow_template(WorkflowTemplateCreateRequest(template=template), namespace=ns),
        get=lambda: ws.get_workflow_template(name, namespace=ns),
        update=update_template,
        resource="workflowtemplates.argoproj.io (create, get, update)",
    )
    print(f"WorkflowTemplate {name} {what} in namespace {ns}: {t.ui('workflow-templates', ns, name)}")

    if cron is not None:
        cron_name = cron.metadata.name

        def update_cron(version: str):
            model = cron.model_copy(deep=True)
            model.metadata.resource_version = version
            return ws.update_cron_workflow(cron_name, UpdateCronWorkflowRequest(cron_workflow=model), namespace=ns)

        what = _create_or_update(
            t, "CronWorkflow", cron_name,
            create=lambda: ws.create_cron_workflow(CreateCronWorkflowRequest(cron_workflow=cron), namespace=ns),
            get=lambda: ws.get_cron_workflow(cron_name, namespace=ns),
            update=update_cron,
            resource="cronworkflows.argoproj.io (create, get, update)",
        )
        print(f"CronWorkflow {cron_name} {what} in namespace {ns} ({'; '.join(schedules)}): {t.ui('cron-workflows', ns, cron_name)}")
    return 0


def cmd_submit(a: argparse.Namespace) -> int:
    from hera.workflows.models import SubmitOpts, WorkflowCreateRequest, WorkflowSubmitRequest

    from workflows.pipeline import RUN_PARAMETERS, build_workflow

    settings = load_settings(a)
    ns, settings = _resolve_namespace(a, settings)
    params = _parse_parameters(a.param)
    t = argo_target(a, ns)
    ws = t.service()
    install_hint = f"install it with `kubescribe templates install --namespace {ns}`"

    if a.inline:
        fields = {pname: fld for pname, fld, _ in RUN_PARAMETERS}
        from pydantic import ValidationError

        try:
            settings = PipelineSettings(**{**settings.model_dump(), **{fields[k]: v for k, v in params.items()}})
        except ValidationError as e:
            raise ClusterError(_validation_message(e, "-p parameters")) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_workflow(settings).build()
        created = _argo_call(
            t, f"create a Workflow from the {settings.name} pipeline", ws.create_workflow,
            WorkflowCreateRequest(workflow=model), namespace=ns,
            resource="workflows.argoproj.io (create)",
            not_found=f"namespace {ns} does not exist, or {t.server} is not an Argo Server API URL; check --namespace and --argo-server",
        )
    else:
        opts = SubmitOpts(parameters=[f"{k}={v}" for k, v in params.items()]) if params else None
        req = WorkflowSubmitRequest(namespace=ns, resource_kind="WorkflowTemplate", resource_name=settings.name,
                                    submit_options=opts)
        created = _argo_call(
            t, f"submit WorkflowTemplate {settings.name}", ws.submit_workflow, req, namespace=ns,
            resource="workflows.argoproj.io (create) and workflowtemplates.argoproj.io (get)",
            not_found=f"namespace {ns} or WorkflowTemplate {settings.name} not found; check --namespace/--template, or {install_hint}",
        )
    name = created.metadata.name if created.metadata else None
    if not name:
        raise ClusterError(f"the Argo Server {t.server} accepted the workflow but returned no name")
    print(f"workflow {name} submitted in namespace {ns}")
    print(t.ui("workflows", ns, name))
    sys.stdout.flush()
    if not a.wait:
        return 0
    return wait_for_workflow(ws, t, name, interval=a.poll_interval)


def _node_line(node: Any) -> str:
    label = node.display_name or node.name or node.id
    line = f"  {label:<28} {node.phase}"
    if node.phase in ("Failed", "Error") and node.message:
        line += f": {node.message}"
    return line


def wait_for_workflow(ws: Any, t: ArgoTarget, name: str, interval: float, max_network_errors: int = 5) -> int:
    """Poll until the workflow finishes, printing each pod's phase changes; 0 if it Succeeded, else 1."""
    import requests

    seen: dict[str, str] = {}
    last_progress = None
    network_errors = 0
    try:
        while True:
            try:
                wf = _argo_call(t, f"read workflow {name}", ws.get_workflow, name, namespace=t.namespace,
                                resource="workflows.argoproj.io (get)",
                                not_found=f"workflow {name} is gone from {t.namespace} (deleted, or archived and garbage-collected)",
                                passthrough=(requests.ConnectionError, requests.Timeout))
                network_errors = 0
            except (requests.ConnectionError, requests.Timeout) as e:
                network_errors += 1
                if network_errors >= max_network_errors:
                    raise explain_argo_error(e, t, f"watch workflow {name}", resource="workflows", not_found="") from None
                time.sleep(interval)
                continue
            status = wf.status
            nodes = (status.nodes or {}) if status else {}
            for node in sorted(nodes.values(), key=lambda n: (str(n.started_at.root if n.started_at else "~"), n.id or "")):
                if node.type != "Pod" or not node.phase:
                    continue
                if seen.get(node.id) != node.phase:
                    seen[node.id] = node.phase
                    print(_node_line(node))
            if status and status.progress and status.progress != last_progress:
                last_progress = status.progress
                print(f"progress {status.progress}")
            phase = status.phase if status else None
            if phase in FINISHED_PHASES:
                msg = f": {status.message}" if status.message else ""
                print(f"workflow {name} {phase}{msg}")
                return 0 if phase == "Succeeded" else 1
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        print(f"stopped waiting; workflow {name} keeps running: {t.ui('workflows', t.namespace, name)}", file=sys.stderr)
        return 130


# --- doctor ---------------------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    state: str  # "pass" | "warn" (works now, may break; not a failure) | "fail" | "skip"
    detail: str
    fix: str | None = None


def _kube_client(kubeconfig: str | None, context: str | None):
    """(ApiClient, the context's namespace or None): --kubeconfig, else $KUBECONFIG / ~/.kube/config, else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    default_paths = [p for p in os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep) if p]
    try:
        if kubeconfig or any(Path(p).expanduser().exists() for p in default_paths):
            if kubeconfig and not Path(kubeconfig).is_file():
                raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
            namespace = (active or {}).get("context", {}).get("namespace")
        else:
            config.load_incluster_config(client_configuration=cfg)
            ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            namespace = ns_file.read_text().strip() if ns_file.exists() else None
    except ConfigException as e:
        raise ClusterError(f"no usable Kubernetes credentials: {str(e).rstrip('.')}. Pass --kubeconfig or set KUBECONFIG") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ClusterError(f"cannot load kubeconfig {kubeconfig or os.environ.get('KUBECONFIG', '~/.kube/config')}: {e}") from None
    cfg.retries = 1
    return client.ApiClient(cfg), namespace


def _kube_reason(exc: Exception) -> tuple[int | None, str]:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = ""
        with contextlib.suppress(ValueError, TypeError):
            message = json.loads(exc.body or "").get("message", "")
        return exc.status, " ".join((message or str(exc.reason or "")).split())[:200]
    return None, _network_reason(exc)


class _KubeProbe:
    """Thin wrappers around the kubernetes client that turn transport failures into Check results."""

    def __init__(self, api: Any):
        from kubernetes import client

        self.api = api
        self.host = api.configuration.host
        self.core = client.CoreV1Api(api)
        self.ext = client.ApiextensionsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def call(self, method: str, path: str, body: dict | None = None, accept: str = "application/json") -> dict:
        """One Kubernetes API request with JSON in and out; ApiException on a non-2xx answer."""
        from kubernetes.client.exceptions import ApiException

        header_params = {"Accept": accept}
        if body is not None:
            header_params["Content-Type"] = "application/json"
        method, url, headers, data, _ = self.api.param_serialize(method, path, header_params=header_params, body=body,
                                                                 auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, body=data, _request_timeout=HTTP_TIMEOUT_S)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data) if resp.data else {}

    def raw_get(self, path: str, accept: str = "application/json") -> dict:
        return self.call("GET", path, accept=accept)

    def common_failure(self, exc: Exception, what: str) -> Check | None:
        status, reason = _kube_reason(exc)
        if status == 401:
            return Check(what, "fail", f"the Kubernetes API {self.host} rejected the credentials (401): {reason}",
                         "log in again / refresh the kubeconfig token (it is missing or expired)")
        if status is None or status == 0:
            return Check(what, "fail", f"cannot reach the Kubernetes API at {self.host} ({reason})",
                         "check --kubeconfig / the current context, VPN and the API server address")
        return None


def _crd_versions(probe: _KubeProbe, plural: str, group: str) -> tuple[list[str] | None, str]:
    """Served versions of ``plural.group`` (None: not installed) and how it was found. Reading CRDs is
    cluster-scoped; users without that right fall back to API discovery, which every authenticated user may read."""
    from kubernetes.client.exceptions import ApiException

    try:
        crd = probe.ext.read_custom_resource_definition(f"{plural}.{group}", _request_timeout=HTTP_TIMEOUT_S)
        return [v.name for v in crd.spec.versions if v.served], "CRD"
    except ApiException as e:
        if e.status == 404:
            return None, "CRD"
        if e.status != 403:
            raise
    groups = probe.raw_get("/apis")
    for g in groups.get("groups", []):
        if g.get("name") == group:
            versions = []
            for v in g.get("versions", []):
                resources = probe.raw_get(f"/apis/{group}/{v['version']}").get("resources", [])
                if any(r.get("name") == plural for r in resources):
                    versions.append(v["version"])
            return versions or None, "API discovery"
    return None, "API discovery"


# --- workflow RBAC: templates install creates it, doctor and templates install --no-rbac check it -------------------

_RBAC = "/apis/rbac.authorization.k8s.io/v1"
_COLLECTIONS = {"ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts", "Role": _RBAC + "/namespaces/{ns}/roles",
                "RoleBinding": _RBAC + "/namespaces/{ns}/rolebindings"}


def _install_probe(a: argparse.Namespace) -> _KubeProbe:
    api, _ = _kube_client(getattr(a, "kubeconfig", None), getattr(a, "context", None))
    return _KubeProbe(api)


def _kube_write_error(probe: _KubeProbe, exc: Exception, action: str, namespace: str) -> ClusterError:
    status, reason = _kube_reason(exc)
    if status == 401:
        msg = (f"the Kubernetes API {probe.host} rejected the credentials (401) while trying to {action}: refresh the "
               f"kubeconfig token")
    elif status == 403:
        escalate = (" Creating a Role also needs the permissions it grants (create, patch on "
                    "workflowtaskresults.argoproj.io) or the escalate verb." if " Role " in f" {action} " else "")
        msg = (f"no permission to {action} (403): {reason}.{escalate} Ask your cluster admin to create the "
               f"ServiceAccount, Role and RoleBinding (or to install the Helm chart), then rerun with --no-rbac")
    elif status == 404:
        msg = f"namespace {namespace} not found while trying to {action}: create it or check --namespace"
    elif not status:
        msg = (f"cannot reach the Kubernetes API at {probe.host} ({reason}) while trying to {action}: check "
               f"--kubeconfig / --context, or pass --no-rbac if the RBAC objects already exist")
    else:
        msg = f"the Kubernetes API {probe.host} answered {status} to {action}: {reason}"
    return ClusterError(msg)


def _apply(probe: _KubeProbe, obj: dict) -> str:
    """Create ``obj``; if it exists, update it (Role, RoleBinding) or leave it as is (ServiceAccount: other tools add
    imagePullSecrets to it). Labels and annotations already there are kept, so a Helm-owned object stays Helm's."""
    from kubernetes.client.exceptions import ApiException

    kind, meta = obj["kind"], obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    base = _COLLECTIONS[kind].format(ns=ns)
    try:
        probe.call("POST", base, obj)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise _kube_write_error(probe, e, f"create {kind} {ns}/{name}", ns) from None
    except Exception as e:  # noqa: BLE001 - transport failures
        raise _kube_write_error(probe, e, f"create {kind} {ns}/{name}", ns) from None
    try:
        current = probe.call("GET", f"{base}/{name}")
    except Exception as e:  # noqa: BLE001
        raise _kube_write_error(probe, e, f"read {kind} {ns}/{name}", ns) from None
    if kind == "ServiceAccount":
        return "already exists"
    if kind == "RoleBinding" and current.get("roleRef") != obj["roleRef"]:
        ref = current.get("roleRef") or {}
        raise ClusterError(f"RoleBinding {ns}/{name} exists but binds {ref.get('kind')} {ref.get('name')}, and a "
                           f"RoleBinding's roleRef cannot be changed: delete it (kubectl -n {ns} delete rolebinding "
                           f"{name}) and rerun, or keep it and pass --no-rbac")
    old = current.get("metadata") or {}
    body = copy.deepcopy(obj)
    body["metadata"]["resourceVersion"] = old.get("resourceVersion")
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), **(old.get("labels") or {})}
    if old.get("annotations"):
        body["metadata"]["annotations"] = old["annotations"]
    try:
        probe.call("PUT", f"{base}/{name}", body)
    except Exception as e:  # noqa: BLE001
        raise _kube_write_error(probe, e, f"update {kind} {ns}/{name}", ns) from None
    return "updated"


def install_rbac(a: argparse.Namespace, namespace: str, settings: PipelineSettings) -> list[str]:
    """Create or update the ServiceAccount (unless the pods run as ``default``), Role and RoleBinding of
    ``workflows.rbac``; return one line per object."""
    from workflows import rbac

    sa, name = rbac.names(settings.service_account, settings.name)
    objects = [rbac.service_account(sa, namespace, rbac.INSTALL_LABELS)] if settings.service_account else []
    objects += [rbac.role(name, namespace, rbac.INSTALL_LABELS), rbac.role_binding(name, namespace, sa, rbac.INSTALL_LABELS)]
    try:
        probe = _install_probe(a)
    except ClusterError as e:
        listed = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objects)
        raise ClusterError(f"creating {listed} needs the Kubernetes API: {e}; or pass --no-rbac if they exist "
                           f"already (an admin or the Helm chart made them)") from None
    lines = []
    for obj in objects:
        what = _apply(probe, obj)
        extra = f" ({rbac.needed()})" if obj["kind"] == "Role" else ""
        lines.append(f"{obj['kind']} {obj['metadata']['name']} {what} in namespace {namespace}{extra}")
    return lines


@dataclass
class RbacReport:
    missing: list[str]  # what certainly is not there (one phrase each)
    unknown: list[str]  # what could not be read
    grants: list[str]  # "RoleBinding x -> Role y" that grant (part of) the executor's rules


def _binds(binding: dict, sa: str, namespace: str) -> bool:
    binding_ns = (binding.get("metadata") or {}).get("namespace") or namespace
    for s in binding.get("subjects") or []:
        kind, name = s.get("kind"), s.get("name")
        if kind == "ServiceAccount" and name == sa and (s.get("namespace") or binding_ns) == namespace:
            return True
        if kind == "User" and name == f"system:serviceaccount:{namespace}:{sa}":
            return True
        if kind == "Group" and name in ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"):
            return True
    return False


def inspect_rbac(probe: _KubeProbe, namespace: str, sa: str) -> RbacReport:
    """Does ServiceAccount ``sa`` exist, and do the RoleBindings of ``namespace`` (and the ClusterRoleBindings, when
    readable) grant it ``workflows.rbac.EXECUTOR_RULES``? Transport errors and 401 are raised."""
    from kubernetes.client.exceptions import ApiException

    from workflows import rbac

    report = RbacReport([], [], [])

    def get(path: str, what: str) -> dict | None:
        try:
            return probe.call("GET", path)
        except ApiException as e:
            if e.status == 404:
                report.missing.append(what)
            elif e.status == 403:
                report.unknown.append(f"{what} (no permission to read it)")
            else:
                raise
        return None

    get(f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}", f"ServiceAccount {namespace}/{sa}")
    bindings = get(f"{_RBAC}/namespaces/{namespace}/rolebindings", f"RoleBindings of namespace {namespace}")
    if bindings is None:
        return report
    have: set[tuple[str, str, str]] = set()
    seen: list[str] = []
    roles_missing = roles_unknown = False

    def follow(binding: dict, binding_kind: str) -> None:
        nonlocal have, roles_missing, roles_unknown
        ref = binding.get("roleRef") or {}
        bname = f"{binding_kind} {(binding.get('metadata') or {}).get('name')}"
        seen.append(bname)
        before, unknown_before = len(report.missing), len(report.unknown)
        if ref.get("kind") == "Role" and binding_kind == "RoleBinding":
            role = get(f"{_RBAC}/namespaces/{namespace}/roles/{ref.get('name')}",
                       f"Role {namespace}/{ref.get('name')} (referenced by {bname})")
        elif ref.get("kind") == "ClusterRole":
            role = get(f"{_RBAC}/clusterroles/{ref.get('name')}", f"ClusterRole {ref.get('name')} (referenced by {bname})")
        else:
            return
        roles_missing |= len(report.missing) > before
        roles_unknown |= len(report.unknown) > unknown_before  # e.g. a ClusterRole a namespace admin cannot read
        got = rbac.granted((role or {}).get("rules") or [])
        if got:
            have |= got
            report.grants.append(f"{bname} -> {ref.get('kind')} {ref.get('name')}")

    for b in bindings.get("items") or []:
        if _binds(b, sa, namespace):
            follow(b, "RoleBinding")
    if rbac.missing_permissions(have):
        with contextlib.suppress(ApiException):  # cluster-wide bindings: only when readable (admins)
            for b in probe.call("GET", f"{_RBAC}/clusterrolebindings").get("items") or []:
                if _binds(b, sa, namespace):
                    follow(b, "ClusterRoleBinding")
    lacking = rbac.missing_permissions(have)
    if lacking and not roles_missing and not roles_unknown:
        if seen:
            report.missing.append(f"{'; '.join(lacking)} for ServiceAccount {sa} (bound through {', '.join(seen)})")
        else:
            report.missing.append(f"a RoleBinding of ServiceAccount {sa} to a Role with {rbac.needed()}")
    return report


def require_rbac(a: argparse.Namespace, namespace: str, settings: PipelineSettings) -> None:
    """``templates install --no-rbac``: refuse when the pods' ServiceAccount or its executor permissions are missing;
    warn (and go on) when they cannot be checked."""
    from workflows import rbac

    sa, _ = rbac.names(settings.service_account, settings.name)
    try:
        report = inspect_rbac(_install_probe(a), namespace, sa)
    except ClusterError as e:
        print(f"warning: --no-rbac: cannot check ServiceAccount {sa} and its RBAC ({e}); installing anyway", file=sys.stderr)
        return
    except Exception as e:  # noqa: BLE001 - transport failure, 401
        print(f"warning: --no-rbac: cannot check ServiceAccount {sa} and its RBAC ({_kube_reason(e)[1]}); installing "
              f"anyway", file=sys.stderr)
        return
    if report.missing:
        raise ClusterError(f"--no-rbac, but namespace {namespace} lacks {'; '.join(report.missing)}. Without them the "
                           f"workflow pods cannot run or report their results (Argo's executor needs {rbac.needed()}). "
                           f"Rerun without --no-rbac to create them, or ask your admin")
    if report.unknown:
        print(f"warning: --no-rbac: could not check {'; '.join(report.unknown)}; installing anyway", file=sys.stderr)


def check_rbac(probe: _KubeProbe, namespace: str, settings: PipelineSettings) -> Check:
    from workflows import rbac

    name = "Workflow RBAC"
    sa, role = rbac.names(settings.service_account, settings.name)
    try:
        report = inspect_rbac(probe, namespace, sa)
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read RBAC: {_kube_reason(e)[1]}")
    fix = (f"`kubescribe templates install -n {namespace}` creates ServiceAccount {sa}, Role and RoleBinding {role} "
           f"(the Helm chart does with rbac.create=true); or ask your admin for a Role with {rbac.needed()} bound to it")
    if report.missing:
        return Check(name, "fail", f"missing: {'; '.join(report.missing)} (Argo's executor needs {rbac.needed()})", fix)
    if report.unknown:
        found = f"; found {', '.join(report.grants)}" if report.grants else ""
        return Check(name, "warn", f"cannot check {'; '.join(report.unknown)}{found}",
                     f"ask your admin to confirm ServiceAccount {namespace}/{sa} has {rbac.needed()}")
    return Check(name, "pass", f"ServiceAccount {namespace}/{sa} exists; {', '.join(report.grants)} grant {rbac.needed()}")


def check_argo(probe: _KubeProbe) -> Check:
    name = "Argo Workflows CRDs"
    try:
        found = {plural: _crd_versions(probe, plural, "argoproj.io") for plural in ("workflowtemplates", "workflows", "cronworkflows")}
    except Exception as e:  # noqa: BLE001 - turned into a failed check with the reason
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read CRDs: {_kube_reason(e)[1]}")
    missing = [f"{p}.argoproj.io" for p, (versions, _) in found.items() if not versions or "v1alpha1" not in versions]
    if missing:
        return Check(name, "fail", f"{', '.join(missing)} not installed (v1alpha1)",
                     "install Argo Workflows (https://argo-workflows.readthedocs.io/en/latest/installation/) or ask your platform team")
    via = found["workflowtemplates"][1]
    return Check(name, "pass", f"workflowtemplates/workflows/cronworkflows.argoproj.io v1alpha1 served (via {via})")


# The controller reads its configuration from this ConfigMap in its own namespace (argo-workflows v4.1.2:
# cmd/workflow-controller/main.go flag --configmap, default common.ConfigMapName in workflow/common/common.go). Its
# `executor` key is a Container whose securityContext the controller copies onto the init and wait containers it
# injects into every pod (workflow/controller/workflowpod.go newExecContainer). Either one key per field, or a single
# `config` key holding all of them (config/controller.go parseConfigMap).
ARGO_CONFIGMAP = "workflow-controller-configmap"
ARGO_NAMESPACE = "argo"  # the upstream manifests' namespace
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
RESTRICTED_SECURITY_CONTEXT = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


_SECURITY_CONTEXT_YAML = """\
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
"""  # == {"securityContext": RESTRICTED_SECURITY_CONTEXT} (tests/test_cluster_cli.py parses the printed snippet)


def executor_snippet(key: str) -> str:
    """The ConfigMap lines that give Argo's executor the restricted securityContext (``key``: "executor" or the
    legacy single "config" key, where it sits under ``executor:``)."""
    body = _SECURITY_CONTEXT_YAML.splitlines()
    if key == "config":
        body = ["executor:", *(f"  {line}" for line in body)]
    return f"data:\n  {key}: |\n" + "\n".join(f"    {line}" for line in body)


def restricted_violations(sc: dict) -> list[str]:
    """What keeps a container with securityContext ``sc`` out of the restricted Pod Security level (as fields to set)."""
    out = []
    if sc.get("runAsNonRoot") is not True:
        out.append("runAsNonRoot: true")
    if sc.get("runAsUser") == 0:
        out.append("runAsUser other than 0")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation: false")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append("capabilities.drop: [ALL]")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append("no capabilities.add but NET_BIND_SERVICE")
    if (sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile.type: RuntimeDefault")
    if sc.get("privileged"):
        out.append("privileged: false")
    return out


def _enforced_level(probe: _KubeProbe, namespace: str) -> str | None:
    """The namespace's pod-security.kubernetes.io/enforce label ("" when unset, None when unreadable)."""
    try:
        meta = probe.call("GET", f"/api/v1/namespaces/{namespace}").get("metadata") or {}
    except Exception:  # noqa: BLE001 - namespaces are cluster-scoped: many users cannot read them
        return None
    return (meta.get("labels") or {}).get(PSA_ENFORCE, "")


def check_argo_executor(probe: _KubeProbe, namespace: str, location: str | None, pods_run_as_user: int | None = None) -> Check:
    """Argo's init/wait containers get their securityContext only from the controller ConfigMap's ``executor``;
    without a restricted one a namespace enforcing the ``restricted`` Pod Security level rejects every pod.

    Also: the controller's default executor image is the root ``quay.io/argoproj/argoexec:<tag>`` (argo-workflows
    v4.1.2 workflow/controller/config.go; Dockerfile stage ``argoexec`` has no USER, ``argoexec-nonroot`` has USER
    8737). Under runAsNonRoot (the kubescribe pods set it) the kubelet refuses to start a root image unless some
    runAsUser applies, so without the ``-nonroot`` image or a runAsUser the init/wait containers never start."""
    import yaml
    from kubernetes.client.exceptions import ApiException

    name = "Argo executor"
    if location and "/" in location:
        cm_ns, _, cm_name = location.partition("/")
        candidates = [(cm_ns, cm_name)]
    else:
        cm_name = location or ARGO_CONFIGMAP
        candidates = [(c, cm_name) for c in dict.fromkeys([ARGO_NAMESPACE, namespace])]
    cm, forbidden, where = None, [], ""
    for cm_ns, cm_name in candidates:
        try:
            cm = probe.call("GET", f"/api/v1/namespaces/{cm_ns}/configmaps/{cm_name}")
            where = f"{cm_ns}/{cm_name}"
            break
        except ApiException as e:
            if e.status == 403:
                forbidden.append(f"{cm_ns}/{cm_name}")
            elif e.status != 404:
                return Check(name, "fail", f"cannot read ConfigMap {cm_ns}/{cm_name}: {_kube_reason(e)[1]}")
        except Exception as e:  # noqa: BLE001
            return probe.common_failure(e, name) or Check(name, "fail", f"cannot read ConfigMap: {_kube_reason(e)[1]}")
    snippet = executor_snippet("executor")
    if cm is None:
        tried = ", ".join(f"{n}/{c}" for n, c in candidates)
        if forbidden:
            return Check(name, "warn", f"no permission to read ConfigMap {forbidden[0]} (403), so Argo's executor "
                         f"securityContext cannot be checked", f"ask the Argo admin to make sure it has:\n{snippet}")
        return Check(name, "warn", f"Argo's controller ConfigMap not found ({tried}), so its executor securityContext "
                     f"cannot be checked", f"pass --argo-configmap NAMESPACE/NAME (Helm installs of Argo name it "
                     f"<release>-workflow-controller-configmap); it needs:\n{snippet}")
    data = cm.get("data") or {}
    key = "config" if "config" in data else "executor"
    try:
        parsed = yaml.safe_load(data.get(key) or "") or {}
        executor = (parsed.get("executor") or {}) if key == "config" else parsed
        sc = executor.get("securityContext") or {}
        if not isinstance(sc, dict):
            raise TypeError
    except (yaml.YAMLError, AttributeError, TypeError):
        return Check(name, "fail", f"ConfigMap {where}: data.{key} is not a YAML mapping", f"fix data.{key} of {where}")
    problems = restricted_violations(sc)
    cm_ns, cm_name = where.split("/", 1)
    edit = f"kubectl -n {cm_ns} edit configmap {cm_name}, and add (keeping its other keys):"
    root_image = (not str(executor.get("image") or "").endswith("-nonroot") and not sc.get("runAsUser")
                  and not pods_run_as_user)
    root_note = ("the executor image is Argo's default root argoexec and no runAsUser applies, so under the pods' "
                 "runAsNonRoot the kubelet will not start the init/wait containers, unless the platform assigns a UID "
                 "(OpenShift) or the controller runs with --executor-image ...-nonroot")
    root_fix = (f"under data.{key}{'.executor' if key == 'config' else ''} also set the non-root executor image "
                f"(USER 8737; Argo docs/workflow-pod-security-context.md): "
                f"image: quay.io/argoproj/argoexec:<your Argo version>-nonroot")
    if not problems:
        detail = f"ConfigMap {where}: executor.securityContext meets the restricted Pod Security level"
        if root_image:
            return Check(name, "warn", f"{detail}; but {root_note}", root_fix)
        return Check(name, "pass", detail)
    fix = f"{edit}\n{executor_snippet(key)}" + (f"\nand {root_fix}" if root_image else "")
    detail = (f"ConfigMap {where}: executor.securityContext lacks {', '.join(problems)}, so Argo's init/wait "
              f"containers break the restricted Pod Security level")
    level = _enforced_level(probe, namespace)
    if level == "restricted":
        return Check(name, "fail", f"{detail}, which namespace {namespace} enforces: every pod is rejected", fix)
    why = "the namespace's labels are not readable" if level is None else f"namespace {namespace} enforces {level or 'no level'}"
    return Check(name, "warn", f"{detail} ({why}; pods are rejected where {PSA_ENFORCE}=restricted)", fix)


def check_kueue(probe: _KubeProbe, namespace: str, queue: str | None) -> tuple[list[Check], str | None]:
    """The Kueue CRD and LocalQueue checks, and the LocalQueue's ClusterQueue (None: unknown)."""
    crd_name, lq_name = "Kueue CRDs", "Kueue LocalQueue"
    if not queue:
        return [Check(lq_name, "pass", "Whisper pods are not queued (queue_name unset): Kueue not needed")], None
    try:
        versions, via = _crd_versions(probe, "localqueues", "kueue.x-k8s.io")
    except Exception as e:  # noqa: BLE001
        return [probe.common_failure(e, crd_name) or Check(crd_name, "fail", f"cannot read CRDs: {_kube_reason(e)[1]}"),
                Check(lq_name, "skip", "not checked (Kueue CRDs unknown)")], None
    if not versions:
        return [Check(crd_name, "fail", "localqueues.kueue.x-k8s.io is not installed",
                      "install Kueue (https://kueue.sigs.k8s.io/docs/installation/), or the Red Hat build of Kueue on OpenShift"),
                Check(lq_name, "skip", "not checked (Kueue missing)")], None
    if "v1beta2" not in versions:
        return [Check(crd_name, "fail", f"Kueue serves {', '.join(versions)} but not v1beta2 (Kueue < 0.15)",
                      "upgrade Kueue to v0.15 or later"),
                Check(lq_name, "skip", "not checked (Kueue too old)")], None
    checks = [Check(crd_name, "pass", f"localqueues.kueue.x-k8s.io serves v1beta2 (via {via})")]
    create = (f"create it: kubectl apply -f - <<< '{{apiVersion: kueue.x-k8s.io/v1beta2, kind: LocalQueue, "
              f"metadata: {{namespace: {namespace}, name: {queue}}}, spec: {{clusterQueue: <cluster-queue>}}}}'")
    try:
        lq = probe.custom.get_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, "localqueues", queue,
                                                       _request_timeout=HTTP_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001
        status, reason = _kube_reason(e)
        if status == 404:
            checks.append(Check(lq_name, "fail", f"LocalQueue {namespace}/{queue} not found", create))
        elif status == 403:
            checks.append(Check(lq_name, "fail", f"no permission to read LocalQueue {namespace}/{queue} (403): {reason}",
                                "ask your admin for get on localqueues.kueue.x-k8s.io in this namespace"))
        else:
            checks.append(probe.common_failure(e, lq_name) or Check(lq_name, "fail", f"cannot read LocalQueue: {reason}"))
        return checks, None
    cq = (lq.get("spec") or {}).get("clusterQueue", "?")
    active = next((c for c in (lq.get("status") or {}).get("conditions", []) if c.get("type") == "Active"), None)
    if active is not None and active.get("status") != "True":
        checks.append(Check(lq_name, "fail", f"LocalQueue {namespace}/{queue} is not active: {active.get('message') or active.get('reason')}",
                            f"check the ClusterQueue: kubectl get clusterqueue {cq} -o yaml"))
    else:
        checks.append(Check(lq_name, "pass", f"LocalQueue {namespace}/{queue} exists (ClusterQueue {cq})"))
    return checks, (None if cq == "?" else cq)


def _positive(quantity: Any) -> bool:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(str(quantity)) > 0
    except (ValueError, TypeError):
        return False


def list_nodes(probe: _KubeProbe) -> tuple[list | None, Exception | None]:
    try:
        return probe.core.list_node(_request_timeout=HTTP_TIMEOUT_S).items, None
    except Exception as e:  # noqa: BLE001 - reported by check_accelerator
        return None, e


def _resources(node: Any) -> dict[str, Any]:
    status = node.status
    return {**((status.capacity or {}) if status else {}), **((status.allocatable or {}) if status else {})}


def das_in_use(nodes: list | None) -> bool | None:
    """True when a node advertises DAS's ``mig.das.com/*`` resources (None: the nodes could not be read)."""
    from workflows.das import is_das_resource

    if nodes is None:
        return None
    return any(is_das_resource(r) for n in nodes for r in _resources(n))


def check_accelerator(probe: _KubeProbe, accelerator: str, nodes: list | None = None, error: Exception | None = None) -> Check:
    from workflows.das import das_resource_name, request_name

    name = "GPU resource"
    if accelerator == "cpu":
        return Check(name, "pass", "accelerator is cpu: no GPU resource needed")
    if nodes is None and error is None:
        nodes, error = list_nodes(probe)
    if error is not None:
        status, reason = _kube_reason(error)
        if status == 403:
            return Check(name, "fail", f"no permission to list nodes (403), so {accelerator} cannot be checked",
                         "ask an admin to run `kubescribe doctor`, or for get/list on nodes (cluster-scoped)")
        return probe.common_failure(error, name) or Check(name, "fail", f"cannot list nodes: {reason}")
    nodes = nodes or []
    das = das_in_use(nodes)
    # With DAS installed its webhook renames the pod's limit before the pod is scheduled (workflows/das.py).
    wanted = das_resource_name(accelerator) if das else accelerator
    renamed = f" (DAS renames {accelerator} to it)" if wanted != accelerator else ""
    hits, others = [], set()
    for node in nodes:
        alloc = (node.status.allocatable or {}) if node.status else {}
        for res, qty in alloc.items():
            if res == wanted and _positive(qty):
                hits.append(f"{node.metadata.name} ({res}: {qty})")
            elif res.startswith(("nvidia.com/", "mig.das.com/", "amd.com/")) and _positive(qty):
                others.add(res)
    if hits:
        shown = ", ".join(hits[:3]) + (f" and {len(hits) - 3} more" if len(hits) > 3 else "")
        return Check(name, "pass", f"{wanted}{renamed} allocatable on {len(hits)} node(s): {shown}")
    if others:
        fix = f"pass one that the nodes have with --accelerator: {', '.join(sorted(request_name(r) for r in others))}"
    else:
        fix = "install the GPU stack (NVIDIA GPU operator + DAS for MIG slices), or use --accelerator cpu"
    if das and not accelerator.startswith("nvidia.com/mig-") and wanted != accelerator:
        fix = (f"DAS is installed and its webhook renames every nvidia.com/* limit, so {accelerator} cannot be had in "
               f"namespaces it covers: ask for a MIG profile instead; " + fix)
    return Check(name, "fail", f"no node has {wanted} allocatable{renamed} ({len(nodes)} node(s) seen)", fix)


def _quantities(resources: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in resources.items())


def check_das(probe: _KubeProbe, accelerator: str, das: bool | None) -> tuple[Check, dict]:
    """When DAS rewrites the Whisper pods: its RuntimeClass exists, and the overhead Kueue will add to each pod.
    Returns the check and the RuntimeClass's overhead.podFixed ({} when none or unknown)."""
    from kubernetes.client.exceptions import ApiException

    from workflows.das import DAS_RUNTIME_CLASS, DAS_SCHEDULER, das_resource_name

    name = "DAS RuntimeClass"
    if accelerator == "cpu" or das_resource_name(accelerator) == accelerator:
        return Check(name, "pass", f"accelerator {accelerator}: the DAS webhook leaves the Whisper pods alone"), {}
    if das is None:
        return Check(name, "skip", "not checked: the nodes could not be read, so whether DAS is installed is unknown"), {}
    if not das:
        return Check(name, "pass", "DAS not in use (no node advertises mig.das.com/*)"), {}
    renamed = (f"DAS rewrites the Whisper pods' {accelerator} to {das_resource_name(accelerator)} and sets "
               f"schedulerName {DAS_SCHEDULER}, runtimeClassName {DAS_RUNTIME_CLASS}")
    try:
        rc = probe.call("GET", f"/apis/node.k8s.io/v1/runtimeclasses/{DAS_RUNTIME_CLASS}")
    except ApiException as e:
        if e.status == 404:
            return Check(name, "fail", f"RuntimeClass {DAS_RUNTIME_CLASS} not found, but {renamed}: the API server "
                         f"rejects a pod whose RuntimeClass does not exist",
                         f"ask the cluster admin to complete the DAS install (its own DaemonSet runs with "
                         f"RuntimeClass {DAS_RUNTIME_CLASS} too)"), {}
        if e.status == 403:
            return Check(name, "warn", f"{renamed}; no permission to read RuntimeClass {DAS_RUNTIME_CLASS} (403), so "
                         f"its existence and pod overhead (which Kueue counts) are unknown",
                         f"check `kubectl get runtimeclass {DAS_RUNTIME_CLASS} -o yaml` (overhead.podFixed)"), {}
        return Check(name, "fail", f"cannot read RuntimeClass {DAS_RUNTIME_CLASS}: {_kube_reason(e)[1]}"), {}
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read RuntimeClass: {_kube_reason(e)[1]}"), {}
    overhead = dict(((rc.get("overhead") or {}).get("podFixed")) or {})
    # Kueue adds overhead.podFixed to each pod's requests (kueue v0.19.2 pkg/workload/resources.go handlePodOverhead).
    counted = (f"its overhead.podFixed ({_quantities(overhead)}) is added to each Whisper pod's requests, and Kueue "
               f"counts it against the ClusterQueue" if overhead else "it has no overhead.podFixed")
    return Check(name, "pass", f"RuntimeClass {DAS_RUNTIME_CLASS} exists (handler {rc.get('handler')}); {renamed}; "
                 f"{counted}"), overhead


def check_cluster_queue(probe: _KubeProbe, cq: str | None, accelerator: str, das: bool | None, overhead: dict) -> Check:
    """The LocalQueue's ClusterQueue covers what a Whisper pod asks for, under the name Kueue sees: Kueue builds a
    plain pod's Workload from the pod as stored, i.e. after the DAS webhook renamed its limit (workflows/das.py)."""
    from kubernetes.client.exceptions import ApiException

    from workflows.das import das_resource_name

    name = "Kueue ClusterQueue"
    if cq is None:
        return Check(name, "skip", "not checked (no usable LocalQueue)")
    try:
        obj = probe.call("GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{cq}")
    except ApiException as e:
        if e.status == 404:
            return Check(name, "fail", f"ClusterQueue {cq} (of the LocalQueue) not found",
                         "create it, or point the LocalQueue at an existing one")
        if e.status == 403:
            return Check(name, "warn", f"no permission to read ClusterQueue {cq} (cluster-scoped; 403), so its quota "
                         f"cannot be checked", f"ask your admin to check `kubectl get clusterqueue {cq} -o yaml`")
        return Check(name, "fail", f"cannot read ClusterQueue {cq}: {_kube_reason(e)[1]}")
    except Exception as e:  # noqa: BLE001
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read ClusterQueue: {_kube_reason(e)[1]}")
    groups = (obj.get("spec") or {}).get("resourceGroups") or []
    covered = [r for g in groups for r in g.get("coveredResources") or []]
    accel = None if accelerator == "cpu" else (das_resource_name(accelerator) if das else accelerator)
    options = {accelerator, das_resource_name(accelerator)} if das is None and accel else {accel}
    needed = ["cpu", "memory", *[k for k in overhead if k not in ("cpu", "memory")]]
    missing = [r for r in needed if r not in covered]
    if accel and not options & set(covered):
        if das and accelerator in covered:
            return Check(name, "fail", f"ClusterQueue {cq} counts {accelerator}, but the DAS webhook renames the Whisper "
                         f"pods' limit to {accel} before Kueue builds their Workload: no Whisper pod is admitted",
                         f"in spec.resourceGroups[].coveredResources and flavors[].resources of ClusterQueue {cq}, "
                         f"replace {accelerator} with {accel} (the chart derives it with das.enabled=true)")
        missing.append(" or ".join(sorted(options)))
    if missing:
        return Check(name, "fail", f"ClusterQueue {cq} does not cover {', '.join(missing)} (covers "
                     f"{', '.join(covered) or 'nothing'}): Kueue admits no Workload that asks for a resource it does "
                     f"not cover", f"add {', '.join(missing)} to coveredResources and flavors[].resources of ClusterQueue {cq}")
    quota = [f"{r.get('nominalQuota')}" for g in groups for f in g.get("flavors") or [] for r in f.get("resources") or []
             if accel and r.get("name") in options]
    detail = f"ClusterQueue {cq} covers {', '.join(covered)}"
    if accel:
        detail += f"; the Whisper pods are counted as {' or '.join(sorted(options))} (nominal quota {' + '.join(quota) or '?'})"
    if overhead:
        detail += f", plus RuntimeClass overhead {_quantities(overhead)} per pod"
    return Check(name, "pass", detail)


def check_secret(probe: _KubeProbe, namespace: str, secret: str | None) -> Check:
    """Existence only, through a PartialObjectMetadata read: the Secret's data is never requested or printed."""
    name = "MinIO Secret"
    if not secret:
        return Check(name, "pass", "s3_secret unset: no S3 credentials are mounted")
    try:
        resp = probe.core.read_namespaced_secret(secret, namespace, _headers={"Accept": PARTIAL_METADATA},
                                                 _preload_content=False, _request_timeout=HTTP_TIMEOUT_S)
        meta = (json.loads(resp.data) or {}).get("metadata") or {}
    except Exception as e:  # noqa: BLE001
        status, reason = _kube_reason(e)
        if status == 404:
            return Check(name, "fail", f"Secret {namespace}/{secret} not found",
                         f"kubectl -n {namespace} create secret generic {secret} --from-literal=accesskey=... --from-literal=secretkey=...")
        if status == 403:
            return Check(name, "fail", f"no permission to get Secret {namespace}/{secret} (403), so it cannot be checked",
                         f"ask your admin, or check `kubectl -n {namespace} auth can-i get secret/{secret}`")
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read Secret metadata: {reason}")
    return Check(name, "pass", f"Secret {namespace}/{meta.get('name', secret)} exists (keys accesskey/secretkey not inspected)")


def models_url(llm_url: str) -> str:
    base = llm_url.strip().rstrip("/")  # the same rule as steps.llm: the base URL ends in /v1
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/models"


def check_gateway(llm_url: str, llm_model: str) -> Check:
    import httpx

    from steps.urls import split_credentials

    name = "LLM gateway"
    llm_url, credentials = split_credentials(llm_url)  # never print a password given in the URL
    url = models_url(llm_url)
    headers = {}
    if os.environ.get("LLM_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['LLM_API_KEY']}"
    outside = ("if doctor runs outside the cluster, port-forward the gateway (kubectl -n llm-d port-forward "
               "svc/<gateway> 8080:80) and pass --llm-url http://127.0.0.1:8080/v1")
    try:
        resp = httpx.get(url, headers=headers, auth=credentials, timeout=10.0)
    except httpx.HTTPError as e:
        return Check(name, "fail", f"GET {url}: {_network_reason(e)}", f"check --llm-url; {outside}")
    if resp.status_code in (401, 403):
        return Check(name, "fail", f"GET {url} answered {resp.status_code}: the gateway wants credentials",
                     "set LLM_API_KEY for doctor, and llm_secret in the settings for the workflow")
    if resp.status_code == 404:
        return Check(name, "fail", f"GET {url} answered 404", "check --llm-url: it is the OpenAI base URL ending in /v1")
    if resp.status_code >= 500:
        return Check(name, "fail", f"GET {url} answered {resp.status_code}: the gateway is up but no model server answered",
                     "check the InferencePool and the model server pods")
    if resp.status_code != 200:
        return Check(name, "fail", f"GET {url} answered {resp.status_code}", "check --llm-url")
    try:
        ids = [m.get("id") for m in resp.json().get("data", [])]
    except (ValueError, AttributeError):
        return Check(name, "fail", f"GET {url} did not return an OpenAI model list", "check --llm-url")
    if llm_model and llm_model not in ids:
        return Check(name, "pass", f"GET {url} answered; note: it lists {', '.join(map(str, ids[:5])) or 'no models'}, "
                     f"not {llm_model} (fine if the gateway rewrites model names)")
    return Check(name, "pass", f"GET {url} answered: {', '.join(map(str, ids[:5]))}")


def run_doctor(a: argparse.Namespace) -> list[Check]:
    settings = load_settings(a)
    checks: list[Check] = []
    probe = None
    context_ns = None
    try:
        api, context_ns = _kube_client(a.kubeconfig, a.context)
        probe = _KubeProbe(api)
    except ClusterError as e:
        checks.append(Check("Kubernetes API", "fail", str(e), "pass --kubeconfig PATH (or set KUBECONFIG)"))
    ns, settings = _resolve_namespace(a, settings, fallback=context_ns)
    if probe is not None:
        from kubernetes import client

        try:
            version = client.VersionApi(probe.api).get_code(_request_timeout=HTTP_TIMEOUT_S)
            checks.append(Check("Kubernetes API", "pass", f"{probe.host} answers (Kubernetes {version.git_version}), namespace {ns}"))
        except Exception as e:  # noqa: BLE001
            failed = probe.common_failure(e, "Kubernetes API")
            if failed is None:  # /version answered with an error other than 401: the API server is there
                checks.append(Check("Kubernetes API", "pass", f"{probe.host} answers, namespace {ns}"))
            else:
                checks.append(failed)
                probe = None
    if probe is not None:
        checks.append(check_argo(probe))
        checks.append(check_argo_executor(probe, ns, getattr(a, "argo_configmap", None),
                                          getattr(settings, "run_as_user", None)))
        checks.append(check_rbac(probe, ns, settings))
        kueue_checks, cluster_queue = check_kueue(probe, ns, settings.queue_name)
        checks.extend(kueue_checks)
        nodes, nodes_error = list_nodes(probe) if settings.accelerator != "cpu" else ([], None)
        checks.append(check_accelerator(probe, settings.accelerator, nodes, nodes_error))
        das = das_in_use(nodes)
        das_check, overhead = check_das(probe, settings.accelerator, das)
        checks.append(das_check)
        if settings.queue_name:
            checks.append(check_cluster_queue(probe, cluster_queue, settings.accelerator, das, overhead))
        checks.append(check_secret(probe, ns, settings.s3_secret))
    else:
        for what in ("Argo Workflows CRDs", "Argo executor", "Workflow RBAC", "Kueue LocalQueue", "GPU resource",
                     "DAS RuntimeClass", "MinIO Secret"):
            checks.append(Check(what, "skip", "not checked: the Kubernetes API is not usable"))
    checks.append(check_gateway(settings.llm_url, settings.llm_model))
    return checks


def cmd_doctor(a: argparse.Namespace) -> int:
    checks = run_doctor(a)
    width = max(len(c.name) for c in checks)
    pad = " " * (5 + 1 + width + 2)
    for c in checks:
        print(f"{c.state.upper():<5} {c.name:<{width}}  {c.detail}")
        if c.state in ("fail", "warn") and c.fix:
            first, *more = c.fix.splitlines()
            print(f"{pad}fix: {first}")
            for line in more:  # a snippet to paste: kept as is, under "fix:"
                print(f"{pad}     {line}")
    passed = sum(c.state == "pass" for c in checks)
    warned = sum(c.state == "warn" for c in checks)
    print(f"{passed}/{len(checks)} checks passed" + (f", {warned} warning(s)" if warned else ""))
    return 0 if passed + warned == len(checks) else 2


# --- argparse wiring ------------------------------------------------------------------------------------------------


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(a: argparse.Namespace) -> int:
        try:
            return fn(a)
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _settings_args(p: argparse.ArgumentParser, *, llm: bool = True, images: bool = True,
                   title: str = "pipeline settings (override --settings and the PipelineSettings defaults)") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--settings", metavar="FILE.yaml", help="YAML mapping of PipelineSettings fields")
    g.add_argument("--namespace", "-n", help=f"namespace (default: ${ENV_NAMESPACE}, then the settings, then (doctor) "
                                             f"the kubeconfig context, else '{DEFAULT_NAMESPACE}')")
    g.add_argument("--queue", help="Kueue LocalQueue of the Whisper pods ('' for none)")
    g.add_argument("--accelerator", help="GPU resource per Whisper pod: nvidia.com/mig-<profile>, nvidia.com/gpu or cpu")
    g.add_argument("--s3-secret", help="Secret with the MinIO keys accesskey/secretkey ('' for none)")
    if llm:
        g.add_argument("--llm-url", help="OpenAI-compatible base URL of the llm-d gateway (ends in /v1)")
        g.add_argument("--llm-model", help="model name sent to the gateway")
    if images:
        g.add_argument("--whisper-image", help="image of the transcribe step")
        g.add_argument("--steps-image", help="image of the plan/summarize/report steps")


def _argo_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Argo Server")
    g.add_argument("--argo-server", metavar="URL", help=f"Argo Server URL (default ${ENV_SERVER}), e.g. https://argo.example.com")
    g.add_argument("--token", help=f"bearer token (default ${ENV_TOKEN}, preferable: command lines are visible in ps); "
                                   "'Bearer ' is added to a bare token; never printed")
    g.add_argument("--insecure", action="store_true", help=f"skip TLS verification (self-signed server; ${ENV_INSECURE})")
    g.add_argument("--template", metavar="NAME", help="WorkflowTemplate name (default: settings name, 'kubescribe')")


def add_cluster_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``submit``, ``templates install`` and ``doctor`` on the ``kubescribe`` subparsers."""
    s = subparsers.add_parser("submit", help="submit a run to Argo (the installed WorkflowTemplate, or --inline)",
                              description="Submit the installed WorkflowTemplate (or, with --inline, the pipeline as a "
                                          "standalone Workflow) through the Argo Server; print its name and UI link.")
    _argo_args(s)
    s.add_argument("-p", "--parameter", dest="param", action="append", metavar="KEY=VALUE",
                   help="workflow parameter, repeatable (input, output, whisper-model, llm-url, ...)")
    s.add_argument("--inline", action="store_true", help="create a Workflow from this checkout's pipeline instead of the installed template")
    s.add_argument("--wait", action="store_true", help="follow the run until it finishes; exit 0 if it succeeded, 1 if not")
    s.add_argument("--poll-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    _settings_args(s, title="pipeline settings (--inline renders the Workflow from them; the template name and "
                            "namespace apply to both)")
    s.set_defaults(fn=_guarded(cmd_submit))

    t = subparsers.add_parser("templates", help="manage the WorkflowTemplate in a cluster")
    tsub = t.add_subparsers(dest="templates_command", required=True)
    ti = tsub.add_parser("install", help="create or update the WorkflowTemplate, its ServiceAccount/Role/RoleBinding "
                                         "(and a CronWorkflow with --cron)",
                         description="Create or update the workflow pods' ServiceAccount, Role and RoleBinding (least "
                                     "privilege: create/patch workflowtaskresults) through the Kubernetes API, then the "
                                     "WorkflowTemplate rendered from the settings through the Argo Server; with --cron "
                                     "also a CronWorkflow that runs it with only-new=true.")
    _argo_args(ti)
    ti.add_argument("--cron", action="append", metavar="SCHEDULE",
                    help='also install a CronWorkflow with this schedule, e.g. "0 * * * *" (repeatable)')
    k = ti.add_argument_group("Kubernetes API (the workflow pods' ServiceAccount, Role and RoleBinding)")
    k.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, else in-cluster)")
    k.add_argument("--context", help="kubeconfig context (default: the current one)")
    k.add_argument("--no-rbac", action="store_true",
                   help="do not create them (an admin or the Helm chart did): check they exist, refuse if they do not")
    _settings_args(ti)
    ti.set_defaults(fn=_guarded(cmd_templates_install))

    d = subparsers.add_parser("doctor", help="check that a namespace is ready to run the pipeline",
                              description="Check Argo (CRDs, the executor securityContext), the workflow RBAC, Kueue "
                                          "(CRDs, LocalQueue, ClusterQueue quota), the GPU resource and DAS, the MinIO "
                                          "Secret and the LLM gateway. Exit 0 only if every check passes or warns.")
    d.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, else in-cluster)")
    d.add_argument("--context", help="kubeconfig context (default: the current one)")
    d.add_argument("--argo-configmap", metavar="[NAMESPACE/]NAME",
                   help=f"Argo's controller ConfigMap (default: {ARGO_CONFIGMAP} in {ARGO_NAMESPACE}, then in the namespace)")
    _settings_args(d, images=False)
    d.set_defaults(fn=_guarded(cmd_doctor))

