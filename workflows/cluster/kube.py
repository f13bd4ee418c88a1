"""The Kubernetes API for ``doctor`` and ``templates install``: a client from the kubeconfig (or in-cluster), raw
JSON calls, a failure in words, and the served versions of a CRD."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from workflows.cluster.errors import HTTP_TIMEOUT_S, Check, ClusterError, network_reason

# Accept header that reads an object's metadata only (doctor never asks for a Secret's data).
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def kube_client(kubeconfig: str | None, context: str | None):
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


def kube_reason(exc: Exception) -> tuple[int | None, str]:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = ""
        with contextlib.suppress(ValueError, TypeError):
            message = json.loads(exc.body or "").get("message", "")
        return exc.status, " ".join((message or str(exc.reason or "")).split())[:200]
    return None, network_reason(exc)


class KubeProbe:
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
        status, reason = kube_reason(exc)
        if status == 401:
            return Check(what, "fail", f"the Kubernetes API {self.host} rejected the credentials (401): {reason}",
                         "log in again / refresh the kubeconfig token (it is missing or expired)")
        if status is None or status == 0:
            return Check(what, "fail", f"cannot reach the Kubernetes API at {self.host} ({reason})",
                         "check --kubeconfig / the current context, VPN and the API server address")
        return None


def crd_versions(probe: KubeProbe, plural: str, group: str) -> tuple[list[str] | None, str]:
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


