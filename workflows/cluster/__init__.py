"""Cluster commands: ``kubescribe submit``, ``kubescribe templates install`` and ``kubescribe doctor``.

``submit`` and ``templates install`` talk to the Argo Server REST API through hera's ``WorkflowsService``;
``templates install`` also creates or updates the workflow pods' ServiceAccount, Role and RoleBinding
(``workflows/rbac.py``) through the Kubernetes API (kubeconfig), or with ``--no-rbac`` refuses when they are missing.
``doctor`` checks a namespace with the ``kubernetes`` client (and the LLM gateway with the summarize step's client):
Argo (CRDs, the controller's executor securityContext), the workflow RBAC, Kueue (LocalQueue, ClusterQueue quota),
the GPU resource and DAS (``workflows/das.py``), the S3 Secret and the gateway. It only reads.

Where values come from, first wins: the command-line flag, then the environment (``ARGO_SERVER``, ``ARGO_TOKEN``,
``ARGO_NAMESPACE``, ``ARGO_INSECURE_SKIP_VERIFY``, as the argo CLI uses them), then ``--settings FILE.yaml``
(``PipelineSettings`` fields), then the ``PipelineSettings`` defaults.

Exit status: 0 success; 1 ``submit --wait`` saw the workflow fail; 2 any error (one line on stderr, no
traceback) or, for ``doctor``, any failed or skipped check (warnings do not fail). The Argo token is never printed.

Modules, one job each:

* ``cli`` - the command line (argparse) and the guard that turns errors into one line;
* ``settings_file`` - settings from flags, environment, ``--settings FILE.yaml`` and defaults;
* ``argo`` - the Argo Server: target, hera client, error mapping, create-or-update;
* ``kube`` - the Kubernetes API: kubeconfig, raw calls, CRD versions;
* ``rbac_api`` - the workflow pods' ServiceAccount/Role/RoleBinding: create, update, inspect;
* ``install`` / ``submit`` / ``doctor`` - the commands;
* ``doctor_argo``, ``doctor_gpu``, ``doctor_endpoints`` - doctor's checks;
* ``errors`` - ClusterError, doctor's Check, transport failures in words.
"""

from workflows.cluster.cli import add_cluster_commands
from workflows.cluster.errors import Check, ClusterError

__all__ = ["add_cluster_commands", "ClusterError", "Check"]
