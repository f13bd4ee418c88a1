"""Cluster commands: ``kubescribe submit``, ``kubescribe templates install`` and ``kubescribe doctor``.

``submit`` and ``templates install`` talk to the Argo Server REST API through hera's ``WorkflowsService``;
``doctor`` checks a namespace with the ``kubernetes`` client (and the LLM gateway with httpx).

Where values come from, first wins: the command-line flag, then the environment (``ARGO_SERVER``, ``ARGO_TOKEN``,
``ARGO_NAMESPACE``, ``ARGO_INSECURE_SKIP_VERIFY``, as the argo CLI uses them), then ``--settings FILE.yaml``
(``PipelineSettings`` fields), then the ``PipelineSettings`` defaults.

Exit status: 0 success; 1 ``submit --wait`` saw the workflow fail; 2 any error (one line on stderr, no
traceback) or, for ``doctor``, any failed check. The Argo token is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
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
    state: str  # "pass" | "fail" | "skip"
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
        raise ClusterError(f"no usable Kubernetes credentials: {e}. Pass --kubeconfig or set KUBECONFIG") from None
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

    def raw_get(self, path: str, accept: str = "application/json") -> dict:
        from kubernetes.client.exceptions import ApiException

        method, url, headers, _, _ = self.api.param_serialize("GET", path, header_params={"Accept": accept},
                                                              auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, _request_timeout=HTTP_TIMEOUT_S)
        resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data)

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


def check_kueue(probe: _KubeProbe, namespace: str, queue: str | None) -> list[Check]:
    crd_name, lq_name = "Kueue CRDs", "Kueue LocalQueue"
    if not queue:
        return [Check(lq_name, "pass", "Whisper pods are not queued (queue_name unset): Kueue not needed")]
    try:
        versions, via = _crd_versions(probe, "localqueues", "kueue.x-k8s.io")
    except Exception as e:  # noqa: BLE001
        return [probe.common_failure(e, crd_name) or Check(crd_name, "fail", f"cannot read CRDs: {_kube_reason(e)[1]}"),
                Check(lq_name, "skip", "not checked (Kueue CRDs unknown)")]
    if not versions:
        return [Check(crd_name, "fail", "localqueues.kueue.x-k8s.io is not installed",
                      "install Kueue (https://kueue.sigs.k8s.io/docs/installation/), or the Red Hat build of Kueue on OpenShift"),
                Check(lq_name, "skip", "not checked (Kueue missing)")]
    if "v1beta2" not in versions:
        return [Check(crd_name, "fail", f"Kueue serves {', '.join(versions)} but not v1beta2 (Kueue < 0.15)",
                      "upgrade Kueue to v0.15 or later"),
                Check(lq_name, "skip", "not checked (Kueue too old)")]
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
        return checks
    cq = (lq.get("spec") or {}).get("clusterQueue", "?")
    active = next((c for c in (lq.get("status") or {}).get("conditions", []) if c.get("type") == "Active"), None)
    if active is not None and active.get("status") != "True":
        checks.append(Check(lq_name, "fail", f"LocalQueue {namespace}/{queue} is not active: {active.get('message') or active.get('reason')}",
                            f"check the ClusterQueue: kubectl get clusterqueue {cq} -o yaml"))
    else:
        checks.append(Check(lq_name, "pass", f"LocalQueue {namespace}/{queue} exists (ClusterQueue {cq})"))
    return checks


def accelerator_names(accelerator: str) -> list[str]:
    """Node resource names that satisfy a pod asking for ``accelerator``: DAS rewrites ``nvidia.com/mig-<p>`` to
    ``mig.das.com/<p>``, which is what its nodes advertise."""
    m = re.fullmatch(r"nvidia\.com/mig-(.+)", accelerator)
    return [accelerator, f"mig.das.com/{m.group(1)}"] if m else [accelerator]


def _positive(quantity: Any) -> bool:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(str(quantity)) > 0
    except (ValueError, TypeError):
        return False


def check_accelerator(probe: _KubeProbe, accelerator: str) -> Check:
    name = "GPU resource"
    if accelerator == "cpu":
        return Check(name, "pass", "accelerator is cpu: no GPU resource needed")
    wanted = accelerator_names(accelerator)
    try:
        nodes = probe.core.list_node(_request_timeout=HTTP_TIMEOUT_S).items
    except Exception as e:  # noqa: BLE001
        status, reason = _kube_reason(e)
        if status == 403:
            return Check(name, "fail", f"no permission to list nodes (403), so {accelerator} cannot be checked",
                         "ask an admin to run `kubescribe doctor`, or for get/list on nodes (cluster-scoped)")
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot list nodes: {reason}")
    hits, others = [], set()
    for node in nodes:
        alloc = (node.status.allocatable or {}) if node.status else {}
        for res, qty in alloc.items():
            if res in wanted and _positive(qty):
                hits.append(f"{node.metadata.name} ({res}: {qty})")
            elif res.startswith(("nvidia.com/", "mig.das.com/", "amd.com/")) and _positive(qty):
                others.add(res)
    if hits:
        shown = ", ".join(hits[:3]) + (f" and {len(hits) - 3} more" if len(hits) > 3 else "")
        return Check(name, "pass", f"{' or '.join(wanted)} allocatable on {len(hits)} node(s): {shown}")
    if others:
        suggestions = sorted("nvidia.com/mig-" + r.split("/", 1)[1] if r.startswith("mig.das.com/") else r for r in others)
        fix = f"pass one that the nodes have with --accelerator: {', '.join(suggestions)}"
    else:
        fix = "install the GPU stack (NVIDIA GPU operator + DAS for MIG slices), or use --accelerator cpu"
    return Check(name, "fail", f"no node has {' or '.join(wanted)} allocatable ({len(nodes)} node(s) seen)", fix)


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
        checks.extend(check_kueue(probe, ns, settings.queue_name))
        checks.append(check_accelerator(probe, settings.accelerator))
        checks.append(check_secret(probe, ns, settings.s3_secret))
    else:
        for what in ("Argo Workflows CRDs", "Kueue LocalQueue", "GPU resource", "MinIO Secret"):
            checks.append(Check(what, "skip", "not checked: the Kubernetes API is not usable"))
    checks.append(check_gateway(settings.llm_url, settings.llm_model))
    return checks


def cmd_doctor(a: argparse.Namespace) -> int:
    checks = run_doctor(a)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.state.upper():<5} {c.name:<{width}}  {c.detail}")
        if c.state == "fail" and c.fix:
            print(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    passed = sum(c.state == "pass" for c in checks)
    print(f"{passed}/{len(checks)} checks passed")
    return 0 if passed == len(checks) else 2


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
    ti = tsub.add_parser("install", help="create or update the WorkflowTemplate (and a CronWorkflow with --cron)",
                         description="Create or update the WorkflowTemplate rendered from the settings through the Argo "
                                     "Server; with --cron also a CronWorkflow that runs it with only-new=true.")
    _argo_args(ti)
    ti.add_argument("--cron", action="append", metavar="SCHEDULE",
                    help='also install a CronWorkflow with this schedule, e.g. "0 * * * *" (repeatable)')
    _settings_args(ti)
    ti.set_defaults(fn=_guarded(cmd_templates_install))

    d = subparsers.add_parser("doctor", help="check that a namespace is ready to run the pipeline",
                              description="Check Argo and Kueue CRDs, the LocalQueue, the GPU resource, the MinIO Secret "
                                          "and the LLM gateway. Exit 0 only if every check passes.")
    d.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, else in-cluster)")
    d.add_argument("--context", help="kubeconfig context (default: the current one)")
    _settings_args(d, images=False)
    d.set_defaults(fn=_guarded(cmd_doctor))

