"""Dask on Kubernetes: DaskCluster, DaskAutoscaler and DaskJob from a job and a profile.

Workers select their CPU:memory class and may run on spot: a spot notice gives two
minutes, so a worker's grace period fits inside it and its preStop hook retires it
through the scheduler's HTTP API (``python -m pipelines.kube.retire``), which hands its
results to other workers before the pod stops. The scheduler runs on the stable
on-demand pool with ``karpenter.sh/do-not-disrupt``, allows more task failures than the
default (a spot loss counts as one) and serves the ``/api/v1/retire_workers`` route.

Each worker pod is one CPU: one Dask worker process with one thread. The tokenizer holds
the GIL for most of its work (two threads in one process reach 1.21x of one thread), so
the pipeline runs one single-threaded process per core; and the Dask operator needs one
worker per pod (it maps a retired worker's name to the Deployment of that name, which
``--nworkers N`` would break). A profile scales with its number of workers, and a
``worker.cpus`` above 1 is refused (``check_worker_cpus``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import JobConfig
from pipelines.engines.limits import DASK_ALLOWED_FAILURES
from pipelines.errors import ProfileFitError
from pipelines.kube.capacity import fit
from pipelines.kube.capacity.pools import CLASSES, stable_pool
from pipelines.kube.capacity.profiles import DaskProfile
from pipelines.kube.capacity.scheduling import PodShape
from pipelines.kube.capacity.sizing import PodSize, sized, size_core_worker, size_pod
from pipelines.kube.render import podspec

API_VERSION = "kubernetes.dask.org/v1"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
#: the scheduler's default HTTP routes plus the API that the preStop hook calls
SCHEDULER_HTTP_ROUTES = (
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
)
#: CPUs (and threads) of one worker pod: one single-threaded worker process per core
WORKER_CPUS = 1
#: how long the preStop hook waits for the scheduler to move a worker's results
RETIRE_TIMEOUT_SECONDS = 75


@dataclass(frozen=True)
class DaskPlan:
    """Everything the Dask renderers decide, before it becomes objects."""

    name: str
    namespace: str
    profile: DaskProfile
    scheduler: PodSize
    worker: PodSize
    runner: PodSize

    def pods(self, with_runner: bool) -> list[PodShape]:
        shapes = [podspec.pod_shape("scheduler", self.scheduler, podspec.stable_placement()),
                  podspec.pod_shape("worker", self.worker,
                                    podspec.worker_placement(self.worker))]
        if with_runner:
            shapes.append(podspec.pod_shape("job runner", self.runner,
                                            podspec.stable_placement()))
        return shapes


def check_worker_cpus(profile: DaskProfile, source: str | None = None) -> None:
    """Refuse a worker of more than one CPU: workers are one process with one thread.

    More threads in one process would idle cores (the tokenizer holds the GIL), and
    ``--nworkers`` above 1 in a pod breaks the operator's scale-down, so the only way to
    use more cores is more workers.
    """
    cpus = profile.worker.cpus
    if cpus == WORKER_CPUS:
        return
    workers = profile.workers
    scaled = ({"count": workers.count * cpus} if workers.count is not None
              else {"min": (workers.min or 0) * cpus, "max": (workers.max or 0) * cpus})
    more = ", ".join(f"{k}: {v}" for k, v in scaled.items())
    # one CPU's share, at most what the roomiest class gives a core
    per_cpu = min(-(-profile.worker.memory_bytes // cpus), CLASSES[-1].gib_per_cpu * 2**30)
    raise ProfileFitError(
        f"a Dask worker asks for {cpus} CPUs; Dask workers on Kubernetes have 1 CPU each. A "
        "worker is one process with one thread: the tokenizer holds the GIL for most of its "
        "work (two threads in one process reach 1.21x of one), so extra threads leave cores "
        "idle, and the Dask operator needs one worker process per pod to scale down "
        "(--nworkers would break it). Use more workers instead.",
        source=source, cpus=cpus, memory_bytes=profile.worker.memory_bytes, role="worker",
        fits=[f"worker: {{cpus: 1, memory: {_memory_text(per_cpu)}}} with {cpus}x the workers "
              f"(workers: {{{more}}})"],
        changes=[{"worker.cpus": 1, "worker.memory": _memory_text(per_cpu),
                  "workers": scaled}])


def _memory_text(n: int) -> str:
    gib, rest = divmod(n, 2**30)
    return f"{gib}Gi" if not rest else f"{-(-n // 2**20)}Mi"


def _changes(err: ProfileFitError, profile: DaskProfile) -> list[fit.Change]:
    if err.changes:  # check_worker_cpus says its own
        return [fit.Change(text, patch) for text, patch in zip(err.fits, err.changes)]
    return fit.pod_changes(err, err.role or "worker", fit.kubernetes_memory)


def _plan(job: JobConfig, profile: DaskProfile, source: str | None) -> DaskPlan:
    check_worker_cpus(profile, source)
    stable = stable_pool()
    # the scheduler and the job runner get the memory they ask for: no Dask memory
    # limit guards them, so a smaller request would only move the point of an OOM kill
    return DaskPlan(
        name=podspec.object_name(job),
        namespace=profile.namespace,
        profile=profile,
        scheduler=sized("scheduler", lambda: size_pod(
            profile.scheduler.cpus, profile.scheduler.memory_bytes, stable, memory_class=None,
            shrink_memory=False, what="the Dask scheduler", source=source)),
        worker=sized("worker", lambda: size_core_worker(
            profile.worker.memory_bytes, what="a Dask worker", source=source)),
        runner=sized("runner", lambda: size_pod(
            profile.runner.cpus, profile.runner.memory_bytes, stable, memory_class=None,
            shrink_memory=False, what="the job runner", source=source)),
    )


def plan(job: JobConfig, profile: DaskProfile, source: str | None = None) -> DaskPlan:
    """Size every pod of the profile; a pod that does not fit is a ProfileFitError that
    lists only profile changes that would fit (``fit.planned``)."""
    return fit.planned(lambda p: _plan(job, p, source), profile, _changes)


def scheduler_address(name: str, namespace: str) -> str:
    return f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"


def _scheduler(p: DaskPlan) -> dict[str, Any]:
    placement = podspec.stable_placement()
    routes = "[" + ", ".join(f"'{r}'" for r in SCHEDULER_HTTP_ROUTES) + "]"
    container = {
        "name": "scheduler",
        "image": p.profile.image,
        "args": ["dask", "scheduler", "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT),
                 "--dashboard-address", f":{DASHBOARD_PORT}"],
        "env": podspec.env(
            ("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", str(DASK_ALLOWED_FAILURES)),
            ("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", routes),
        ),
        "ports": [{"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
                  {"name": "http-dashboard", "containerPort": DASHBOARD_PORT,
                   "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"port": "http-dashboard", "path": "/health"},
                           "initialDelaySeconds": 0, "periodSeconds": 2, "timeoutSeconds": 5},
        "livenessProbe": {"httpGet": {"port": "http-dashboard", "path": "/health"},
                          "initialDelaySeconds": 15, "periodSeconds": 20, "timeoutSeconds": 5},
        "resources": podspec.resources(p.scheduler),
        "securityContext": podspec.container_security_context(),
        "volumeMounts": [podspec.scratch_mount()],
    }
    return {
        "metadata": {"labels": podspec.labels(p.name, "scheduler"),
                     "annotations": placement.annotations()},
        "spec": {
            "serviceAccountName": p.profile.service_account,
            "automountServiceAccountToken": False,
            "securityContext": podspec.pod_security_context(),
            **placement.pod_fields(),
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            "volumes": [podspec.scratch_volume()],
        },
        "service": {
            "type": "ClusterIP",
            "selector": {"dask.org/cluster-name": p.name, "dask.org/component": "scheduler"},
            "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT,
                       "targetPort": "tcp-comm"},
                      {"name": "http-dashboard", "protocol": "TCP", "port": DASHBOARD_PORT,
                       "targetPort": "http-dashboard"}],
        },
    }


def _worker(p: DaskPlan) -> dict[str, Any]:
    placement = podspec.worker_placement(p.worker)
    container = {
        "name": "worker",
        "image": p.profile.image,
        "args": ["dask", "worker", "--name", "$(DASK_WORKER_NAME)",
                 "--nworkers", "1", "--nthreads", str(WORKER_CPUS),
                 "--memory-limit", str(p.worker.memory_bytes),
                 "--local-directory", f"{podspec.SCRATCH_PATH}/dask",
                 "--dashboard-address", f":{WORKER_DASHBOARD_PORT}"],
        "env": [*podspec.env(), podspec.pod_ip_env()],
        "ports": [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT,
                   "protocol": "TCP"}],
        "lifecycle": {"preStop": {"exec": {"command": [
            "python", "-m", "pipelines.kube.retire",
            "--timeout", str(RETIRE_TIMEOUT_SECONDS)]}}},
        "resources": podspec.resources(p.worker),
        "securityContext": podspec.container_security_context(),
        "volumeMounts": [podspec.scratch_mount()],
    }
    profile = p.profile
    return {
        "replicas": profile.workers.initial,
        "metadata": {"labels": podspec.labels(p.name, "worker")},
        "spec": {
            "serviceAccountName": profile.service_account,
            "automountServiceAccountToken": False,
            "securityContext": podspec.pod_security_context(),
            **placement.pod_fields(),
            "terminationGracePeriodSeconds": podspec.SPOT_GRACE_SECONDS,
            "containers": [container],
            "volumes": [podspec.scratch_volume()],
        },
    }


def cluster_spec(p: DaskPlan) -> dict[str, Any]:
    """The ``spec`` of a DaskCluster (also the ``spec.cluster.spec`` of a DaskJob)."""
    return {"worker": _worker(p), "scheduler": _scheduler(p)}


def _metadata(p: DaskPlan, component: str) -> dict[str, Any]:
    return {"name": p.name, "namespace": p.namespace, "labels": podspec.labels(p.name, component)}


def daskcluster(p: DaskPlan) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "DaskCluster",
            "metadata": _metadata(p, "dask-cluster"), "spec": cluster_spec(p)}


def daskautoscaler(p: DaskPlan) -> dict[str, Any] | None:
    workers = p.profile.workers
    if not workers.adaptive:
        return None
    return {"apiVersion": API_VERSION, "kind": "DaskAutoscaler",
            "metadata": _metadata(p, "autoscaler"),
            "spec": {"cluster": p.name, "minimum": workers.min, "maximum": workers.max}}


def job_configmap_name(p: DaskPlan) -> str:
    return f"{p.name}-job"


def job_configmap(p: DaskPlan, job: JobConfig) -> dict[str, Any]:
    text = podspec.job_yaml(job, **{"engine.kind": "dask",
                                    "engine.scheduler_address": scheduler_address(p.name,
                                                                                  p.namespace)})
    return podspec.configmap(job_configmap_name(p), p.namespace, p.name, {"job.yaml": text})


def daskjob(p: DaskPlan) -> dict[str, Any]:
    placement = podspec.stable_placement()
    runner = {
        "name": "job",
        "image": p.profile.image,
        "args": ["tokenyard", "run", podspec.JOB_FILE, "--engine", "dask"],
        "env": podspec.env(),
        "resources": podspec.resources(p.runner),
        "securityContext": podspec.container_security_context(),
        "volumeMounts": [podspec.job_mount(), podspec.scratch_mount()],
    }
    return {
        "apiVersion": API_VERSION, "kind": "DaskJob",
        "metadata": _metadata(p, "dask-job"),
        "spec": {
            "job": {
                "metadata": {"labels": podspec.labels(p.name, "job-runner"),
                             "annotations": placement.annotations()},
                "spec": {
                    "serviceAccountName": p.profile.service_account,
                    "automountServiceAccountToken": False,
                    "restartPolicy": "Never",
                    "securityContext": podspec.pod_security_context(),
                    **placement.pod_fields(),
                    "containers": [runner],
                    "volumes": [podspec.job_volume(job_configmap_name(p)),
                                podspec.scratch_volume()],
                },
            },
            "cluster": {"metadata": {"labels": podspec.labels(p.name, "dask-cluster")},
                        "spec": cluster_spec(p)},
        },
    }


def render(job: JobConfig, profile: DaskProfile, *, as_job: bool = False,
           source: str | None = None) -> list[dict[str, Any]]:
    """The objects ``tokenyard render dask`` prints, in the order to apply them."""
    p = plan(job, profile, source)
    if as_job:
        podspec.require_remote_uris(job, source)
        objects = [job_configmap(p, job), daskjob(p)]
    else:
        objects = [daskcluster(p)]
    autoscaler = daskautoscaler(p)
    if autoscaler is not None:
        objects.append(autoscaler)
    return objects
