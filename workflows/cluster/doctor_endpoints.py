"""``doctor``'s checks of what the steps reach: the S3 Secret (existence only, never its data) and the LLM gateway,
asked through the summarize step's own client (``steps.llm.LLMClient.check``: the same URL rule, credentials and
error handling as the step)."""

from __future__ import annotations

import json
import os
import re

from workflows.cluster.errors import HTTP_TIMEOUT_S, Check, network_reason
from workflows.cluster.kube import PARTIAL_METADATA, KubeProbe, kube_reason
from workflows.settings import SECRET_KEY_S3_ACCESS, SECRET_KEY_S3_SECRET

GATEWAY_TIMEOUT_S = 10.0


def check_secret(probe: KubeProbe, namespace: str, secret: str | None) -> Check:
    """Existence only, through a PartialObjectMetadata read: the Secret's data is never requested or printed."""
    name = "MinIO Secret"
    if not secret:
        return Check(name, "pass", "s3_secret unset: no S3 credentials are mounted")
    try:
        resp = probe.core.read_namespaced_secret(secret, namespace, _headers={"Accept": PARTIAL_METADATA},
                                                 _preload_content=False, _request_timeout=HTTP_TIMEOUT_S)
        meta = (json.loads(resp.data) or {}).get("metadata") or {}
    except Exception as e:  # noqa: BLE001
        status, reason = kube_reason(e)
        if status == 404:
            return Check(name, "fail", f"Secret {namespace}/{secret} not found",
                         f"kubectl -n {namespace} create secret generic {secret} "
                         f"--from-literal={SECRET_KEY_S3_ACCESS}=... --from-literal={SECRET_KEY_S3_SECRET}=...")
        if status == 403:
            return Check(name, "fail", f"no permission to get Secret {namespace}/{secret} (403), so it cannot be checked",
                         f"ask your admin, or check `kubectl -n {namespace} auth can-i get secret/{secret}`")
        return probe.common_failure(e, name) or Check(name, "fail", f"cannot read Secret metadata: {reason}")
    return Check(name, "pass", f"Secret {namespace}/{meta.get('name', secret)} exists "
                 f"(keys {SECRET_KEY_S3_ACCESS}/{SECRET_KEY_S3_SECRET} not inspected)")


def check_gateway(llm_url: str, llm_model: str) -> Check:
    """``GET <base>/v1/models`` once (no retries, no waiting out a busy gateway), with ``LLM_API_KEY`` as the bearer
    token or the URL's ``user:password`` as basic auth, as the summarize step sends them; never prints a password."""
    from steps.llm import LLMClient, LLMError, LLMSettings

    name = "LLM gateway"
    outside = ("if doctor runs outside the cluster, port-forward the gateway (kubectl -n llm-d port-forward "
               "svc/<gateway> 8080:80) and pass --llm-url http://127.0.0.1:8080/v1")
    try:
        settings = LLMSettings.probe(llm_url, llm_model or "-", timeout_s=GATEWAY_TIMEOUT_S,
                                     api_key=os.environ.get("LLM_API_KEY") or None)
    except ValueError as e:
        return Check(name, "fail", f"no usable gateway URL: {e}", "pass --llm-url http://<gateway>/v1")
    with LLMClient(settings) as client:
        url = f"{client.base_url}/models"  # credential-free: LLMSettings moved them to basic auth
        try:
            ids = client.check()
        except LLMError as e:
            return _gateway_failure(name, url, e, outside)
    if llm_model and llm_model not in ids:
        return Check(name, "pass", f"GET {url} answered; note: it lists {', '.join(map(str, ids[:5])) or 'no models'}, "
                     f"not {llm_model} (fine if the gateway rewrites model names)")
    return Check(name, "pass", f"GET {url} answered: {', '.join(map(str, ids[:5]))}")


def _gateway_failure(name: str, url: str, e: Exception, outside: str) -> Check:
    """What an LLMError of the models request means for the workflow, and what to do."""
    status = getattr(e, "status", None)
    if status is None:
        if "/models response" in str(e):  # it answered, but not with a model list
            return Check(name, "fail", f"GET {url} did not return an OpenAI model list", "check --llm-url")
        # connected, then silence: steps.llm words its read deadline as "no answer within ..."
        reason = "the connection timed out" if re.search(r"no answer within|deadline", str(e)) else network_reason(e)
        return Check(name, "fail", f"GET {url}: {reason}", f"check --llm-url; {outside}")
    if status in (401, 403):
        return Check(name, "fail", f"GET {url} answered {status}: the gateway wants credentials",
                     "set LLM_API_KEY for doctor, and llm_secret in the settings for the workflow")
    if status == 404:
        return Check(name, "fail", f"GET {url} answered 404", "check --llm-url: it is the OpenAI base URL ending in /v1")
    if status >= 500:
        return Check(name, "fail", f"GET {url} answered {status}: the gateway is up but no model server answered",
                     "check the InferencePool and the model server pods")
    return Check(name, "fail", f"GET {url} answered {status}", "check --llm-url")
