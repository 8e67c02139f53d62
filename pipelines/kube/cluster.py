"""A Dask ``KubeCluster`` for ``tokenyard run JOB --engine dask --cluster kubernetes``.

``kube_cluster_spec`` is pure: the DaskCluster that ``tokenyard render dask`` prints.
``make_kube_cluster`` submits it through the Dask operator (dask-kubernetes), turns on
adaptive scaling between the profile's bounds (or scales to its fixed count) and says
how to reach the dashboard. It needs cluster credentials (a kubeconfig) and the
operator installed; nothing here runs without them.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import JobConfig
from pipelines.errors import ConfigError
from pipelines.kube import dask, podspec
from pipelines.kube.profiles import DaskProfile, load_dask_profile
from pipelines.kube.validate import INSTALL_HINT


def kube_cluster_spec(job: JobConfig, profile: DaskProfile, source: str | None = None
                      ) -> dict[str, Any]:
    """The DaskCluster object a run on Kubernetes submits."""
    return dask.daskcluster(dask.plan(job, profile, source))


def dashboard_hint(name: str, namespace: str) -> str:
    return (f"Dask dashboard: kubectl port-forward -n {namespace} service/{name}-scheduler "
            f"{dask.DASHBOARD_PORT}:{dask.DASHBOARD_PORT}, then open "
            f"http://localhost:{dask.DASHBOARD_PORT}/status")


def make_kube_cluster(job: JobConfig, profile_path: str, *, keep_cluster: bool = False
                      ) -> tuple[Any, str]:
    """Start the job's DaskCluster on Kubernetes; the cluster and a dashboard line.

    With ``keep_cluster`` the DaskCluster outlives the run (delete it with
    ``kubectl delete daskcluster -n NAMESPACE NAME``).
    """
    podspec.require_remote_uris(job)
    profile = load_dask_profile(profile_path)
    spec = kube_cluster_spec(job, profile, str(profile_path))
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError:
        raise ConfigError(f"--cluster kubernetes needs dask-kubernetes. {INSTALL_HINT}") from None
    name, namespace = spec["metadata"]["name"], spec["metadata"]["namespace"]
    cluster = KubeCluster(custom_cluster_spec=spec, namespace=namespace,
                          shutdown_on_close=not keep_cluster, quiet=True)
    workers = profile.workers
    if workers.adaptive:
        cluster.adapt(minimum=workers.min, maximum=workers.max)
    else:
        cluster.scale(workers.count)
    return cluster, dashboard_hint(name, namespace)
