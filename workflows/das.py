"""What the DAS (Dynamic Accelerator Slicer) mutating webhook does to a pod: the one owner of that rule in Python.

Upstream: github.com/openshift/instaslice-operator, branch ``next`` (its default branch; commit 9f4fc07f, 2026-04-02),
``pkg/webhook/webhook.go`` ``mutatePod``, and its tests in ``pkg/webhook/webhook_test.go``:

* every container limit named ``nvidia.com/mig-<profile>`` becomes ``mig.das.com/<profile>``, in limits *and*
  requests (the webhook writes the new name into both);
* every *other* ``nvidia.com/<x>`` limit becomes ``mig.das.com/<x>`` as well (``case strings.HasPrefix(key,
  "nvidia.com/")``): ``nvidia.com/gpu`` turns into ``mig.das.com/gpu``, which no DAS node advertises, so a whole-GPU
  pod is unschedulable in a namespace the webhook covers (its MutatingWebhookConfiguration,
  ``bindata/assets/instaslice-operator/webhook.yaml``, only skips das-operator, cert-manager, kube-system and two
  openshift-* namespaces);
* a pod with such a resource gets ``schedulerName: das-scheduler`` and ``runtimeClassName: nvidia-legacy``.

Kueue builds a plain pod's Workload from the pod as stored, i.e. after this rename, so the ClusterQueue must count
``mig.das.com/<profile>``; and Kueue adds the RuntimeClass's ``overhead.podFixed`` to the pod's requests
(kubernetes-sigs/kueue v0.19.2, ``pkg/workload/resources.go`` ``handlePodOverhead``).

The chart mirrors :func:`das_resource_name` in ``_helpers.tpl`` (``kubescribe.quotaResource``) and
``tools/chart_values.py`` (``quota_resource_name``); ``tests/test_das_rbac.py`` checks that they agree with it.
"""

from __future__ import annotations

DAS_PREFIX = "mig.das.com/"
MIG_PREFIX = "nvidia.com/mig-"
NVIDIA_PREFIX = "nvidia.com/"
DAS_SCHEDULER = "das-scheduler"  # pkg/webhook/webhook.go: secondaryScheduler
DAS_RUNTIME_CLASS = "nvidia-legacy"  # pkg/webhook/webhook.go: runtimeClass := "nvidia-legacy"


def das_resource_name(limit: str) -> str:
    """The resource name a pod limit has after the DAS webhook (``limit`` itself when DAS leaves it alone)."""
    if limit.startswith(MIG_PREFIX):
        return DAS_PREFIX + limit.removeprefix(MIG_PREFIX)
    if limit.startswith(NVIDIA_PREFIX):
        return DAS_PREFIX + limit.removeprefix(NVIDIA_PREFIX)
    return limit


def request_name(das_name: str) -> str:
    """What to ask for to get ``das_name`` (``mig.das.com/1g.10gb`` → ``nvidia.com/mig-1g.10gb``)."""
    if das_name.startswith(DAS_PREFIX):
        return MIG_PREFIX + das_name.removeprefix(DAS_PREFIX)
    return das_name


def is_das_resource(name: str) -> bool:
    return name.startswith(DAS_PREFIX)
