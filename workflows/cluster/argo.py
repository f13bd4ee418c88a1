"""The Argo Server: where it is (``--argo-server``/``ARGO_SERVER``, ``--token``/``ARGO_TOKEN``,
``ARGO_INSECURE_SKIP_VERIFY``, as the argo CLI uses them), hera's ``WorkflowsService`` for it, and every failure of
a call to it turned into one actionable line (:class:`~workflows.cluster.errors.ClusterError`; the token is never
printed)."""

from __future__ import annotations

import argparse
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from workflows.cluster.errors import HTTP_TIMEOUT_S, ClusterError, network_reason

T = TypeVar("T")

ENV_SERVER, ENV_TOKEN = "ARGO_SERVER", "ARGO_TOKEN"
ENV_INSECURE = "ARGO_INSECURE_SKIP_VERIFY"
PORT_FORWARD_HINT = "e.g. `kubectl -n argo port-forward svc/argo-server 2746:2746` and --argo-server https://localhost:2746"


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
        msg = (f"cannot reach the Argo Server at {s} ({network_reason(exc)}) while trying to {action}. "
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


def argo_call(t: ArgoTarget, action: str, fn: Callable[..., T], *args: Any, resource: str, not_found: str,
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



def create_or_update(t: ArgoTarget, kind: str, name: str, create: Callable[[], Any], get: Callable[[], Any],
                     update: Callable[[str], Any], resource: str) -> str:
    """Create; on 409 AlreadyExists fetch the resourceVersion and update. Returns "created" or "updated"."""
    from hera.exceptions import AlreadyExists

    ns_hint = (f"namespace {t.namespace} does not exist, or {t.server} is not an Argo Server API URL; "
               f"check --namespace and --argo-server")
    try:
        argo_call(t, f"create {kind} {name}", create, resource=resource, not_found=ns_hint, passthrough=(AlreadyExists,))
        return "created"
    except AlreadyExists:
        pass
    current = argo_call(t, f"read {kind} {name}", get, resource=resource,
                        not_found=f"{kind} {name} was reported to exist in {t.namespace} but cannot be read; retry")
    version = current.metadata.resource_version if current.metadata else None
    if not version:
        raise ClusterError(f"the Argo Server {t.server} returned {kind} {name} without a resourceVersion; cannot update it")
    argo_call(t, f"update {kind} {name}", update, version, resource=resource, not_found=ns_hint)
    return "updated"

