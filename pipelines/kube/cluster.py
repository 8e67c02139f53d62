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
from pipelines.errors import ClusterError, ConfigError
from pipelines.kube.capacity.profiles import DaskProfile, load_dask_profile
from pipelines.kube.checks.validate import INSTALL_HINT
from pipelines.kube.render import dask, podspec


def kube_cluster_spec(job: JobConfig, profile: DaskProfile, source: str | None = None
                      ) -> dict[str, Any]:
    """The DaskCluster object a run on Kubernetes submits."""
    return dask.daskcluster(dask.plan(job, profile, source))


def dashboard_hint(name: str, namespace: str) -> str:
    return (f"Dask dashboard: kubectl port-forward -n {namespace} service/{name}-scheduler "
            f"{dask.DASHBOARD_PORT}:{dask.DASHBOARD_PORT}, then open "
            f"http://localhost:{dask.DASHBOARD_PORT}/status")


#: packages whose exceptions mean the Kubernetes API or the Dask operator failed us
KUBE_PACKAGES = frozenset({"kr8s", "httpx", "httpcore", "dask_kubernetes", "kubernetes_asyncio",
                           "aiohttp"})
NO_CREDENTIALS_HINT = (
    "Point KUBECONFIG at the cluster's kubeconfig (e.g. aws eks update-kubeconfig --name "
    "tokenyard), or let the cluster run the whole job: tokenyard render dask JOB --profile "
    "PROFILE --job | kubectl apply -f -")


def _is_kube_error(err: BaseException) -> bool:
    return isinstance(err, OSError) or any(
        cls.__module__.split(".", 1)[0] in KUBE_PACKAGES for cls in type(err).__mro__[:-1])


def _require_credentials() -> None:
    """Kubernetes credentials: a kubeconfig (KUBECONFIG, ~/.kube/config) or an in-cluster
    service account. Read from files only; nothing is contacted."""
    import kr8s

    try:
        kr8s.api()
    except (ValueError, KeyError, TypeError, OSError) as err:  # no or unreadable kubeconfig
        raise ClusterError(
            f"--cluster kubernetes found no usable Kubernetes credentials ({err}): no "
            "kubeconfig (KUBECONFIG or ~/.kube/config) and no in-cluster service account.",
            hint=NO_CREDENTIALS_HINT) from None


def check_kube_cluster(job: JobConfig, profile_path: str) -> DaskProfile:
    """Everything that can fail before a DaskCluster is made: remote URIs, the profile and
    its sizing, the dask-kubernetes package, Kubernetes credentials. Writes nothing."""
    podspec.require_remote_uris(job)
    profile = load_dask_profile(profile_path)
    kube_cluster_spec(job, profile, str(profile_path))
    try:
        import dask_kubernetes.operator  # noqa: F401
    except ImportError:
        raise ConfigError(f"--cluster kubernetes needs dask-kubernetes. {INSTALL_HINT}") from None
    _require_credentials()
    return profile


def make_kube_cluster(job: JobConfig, profile_path: str, *, keep_cluster: bool = False
                      ) -> tuple[Any, str]:
    """Start the job's DaskCluster on Kubernetes; the cluster and a dashboard line.

    With ``keep_cluster`` the DaskCluster outlives the run (delete it with
    ``kubectl delete daskcluster -n NAMESPACE NAME``).
    """
    profile = check_kube_cluster(job, profile_path)
    spec = kube_cluster_spec(job, profile, str(profile_path))
    from dask_kubernetes.operator import KubeCluster

    name, namespace = spec["metadata"]["name"], spec["metadata"]["namespace"]
    try:
        cluster = KubeCluster(custom_cluster_spec=spec, namespace=namespace,
                              shutdown_on_close=not keep_cluster, quiet=True)
    except Exception as err:
        if not _is_kube_error(err):
            raise
        raise ClusterError(
            f"the DaskCluster {namespace}/{name} could not be created: "
            f"{type(err).__name__}: {err}.",
            hint="Check that the Kubernetes API is reachable with this kubeconfig and that the "
                 "Dask operator is installed (see 'Kubernetes' in the README).",
            transient=True) from err
    workers = profile.workers
    if workers.adaptive:
        cluster.adapt(minimum=workers.min, maximum=workers.max)
    else:
        cluster.scale(workers.count)
    return cluster, dashboard_hint(name, namespace)
