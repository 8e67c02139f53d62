"""The parts every rendered pod shares: Pod Security "restricted", scratch, env, placement.

Every pod runs as a non-root user with no privilege escalation, all capabilities
dropped, the RuntimeDefault seccomp profile and a read-only root filesystem; what needs
writing (temporary files, Dask spill, Spark scratch, ``$HOME``) goes to an ``emptyDir``
mounted at ``/scratch``. No pod carries credentials: S3 access comes from the service
account (EKS Pod Identity or IRSA) through the standard AWS credential chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import JobConfig
from pipelines.errors import ConfigError
from pipelines.kube.capacity.pools import (DO_NOT_DISRUPT, LABEL_MEMORY_PER_CPU, LABEL_POOL,
                                  stable_toleration, worker_toleration)
from pipelines.kube.capacity.quantity import format_cpu, format_memory
from pipelines.kube.capacity.scheduling import PodShape
from pipelines.kube.capacity.sizing import PodSize
from pipelines.worker_env import WORKER_ENV

#: the user id of the image's ``tokenyard`` user (see the Dockerfile)
RUN_AS_USER = 10001
SCRATCH_PATH = "/scratch"
SCRATCH_LIMIT = "20Gi"
JOB_DIR = "/etc/tokenyard"
JOB_FILE = f"{JOB_DIR}/job.yaml"
#: the 2-minute spot notice minus time for Karpenter to react and the kubelet to act
SPOT_GRACE_SECONDS = 90
SERVICE_NAME_SUFFIX_ROOM = 23

#: environment of every tokenyard container: no secrets, only where to write and how
#: many threads the tokenizer may start
BASE_ENV: tuple[tuple[str, str], ...] = (
    ("HOME", SCRATCH_PATH),
    ("TMPDIR", SCRATCH_PATH),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONUNBUFFERED", "1"),
    *WORKER_ENV.items(),
    ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
)


@dataclass(frozen=True)
class Placement:
    """Where a pod may run: a node selector, tolerations, and whether it may be moved."""

    node_selector: dict[str, str]
    tolerations: tuple
    do_not_disrupt: bool

    def pod_fields(self) -> dict[str, Any]:
        return {"nodeSelector": dict(self.node_selector),
                "tolerations": [t.to_dict() for t in self.tolerations]}

    def annotations(self) -> dict[str, str]:
        return {DO_NOT_DISRUPT: "true"} if self.do_not_disrupt else {}


def worker_placement(size: PodSize) -> Placement:
    assert size.memory_class is not None
    return Placement({LABEL_MEMORY_PER_CPU: size.memory_class.label_value},
                     (worker_toleration(),), do_not_disrupt=False)


def stable_placement() -> Placement:
    return Placement({LABEL_POOL: "stable"}, (stable_toleration(),), do_not_disrupt=True)


def pod_shape(role: str, size: PodSize, placement: Placement) -> PodShape:
    return PodShape(role=role, cpu_m=size.cpu_request_m, memory_bytes=size.memory_bytes,
                    node_selector=dict(placement.node_selector),
                    tolerations=tuple(placement.tolerations))


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def resources(size: PodSize) -> dict[str, Any]:
    memory = format_memory(size.memory_bytes)
    return {"requests": {"cpu": format_cpu(size.cpu_request_m), "memory": memory},
            "limits": {"cpu": format_cpu(size.cpu_limit_m), "memory": memory}}


def env(*extra: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in (*BASE_ENV, *extra)]


def pod_ip_env() -> dict[str, Any]:
    return {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def scratch_volume() -> dict[str, Any]:
    return {"name": "scratch", "emptyDir": {"sizeLimit": SCRATCH_LIMIT}}


def scratch_mount() -> dict[str, Any]:
    return {"name": "scratch", "mountPath": SCRATCH_PATH}


def job_volume(configmap: str) -> dict[str, Any]:
    return {"name": "job", "configMap": {"name": configmap, "items": [
        {"key": "job.yaml", "path": "job.yaml"}]}}


def job_mount() -> dict[str, Any]:
    return {"name": "job", "mountPath": JOB_DIR, "readOnly": True}


def labels(job_name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "tokenyard", "app.kubernetes.io/part-of": "tokenyard",
            "app.kubernetes.io/component": component, "tokenyard.io/job": job_name}


def object_name(job: JobConfig) -> str:
    """The job's name as a DNS-1035 label with room for suffixes like ``-scheduler``."""
    name = job.name.replace("_", "-").replace(".", "-")
    if not name[0].isalpha():
        name = "ty-" + name
    name = name[:63 - SERVICE_NAME_SUFFIX_ROOM].rstrip("-")
    return name


def require_remote_uris(job: JobConfig, source: str | None = None) -> None:
    """Pods cannot read this machine's files: every URI of the job must be remote."""
    named = [("input.uri", uri) for uri in job.input.uris]
    for field, uri in (*named, ("tokenizer.path", job.tokenizer.path),
                       ("output.uri", job.output.uri)):
        if "://" not in uri or uri.startswith("file://"):
            raise ConfigError(
                f"{field} is the local path {uri}, which pods on Kubernetes cannot read.",
                source=source,
                hint="Use an object-store URI such as s3://bucket/prefix/ for jobs that run "
                     "on a cluster.")


def configmap(name: str, namespace: str, job_name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": labels(job_name, "job-config")},
            "data": data}


def job_yaml(job: JobConfig, **changes: Any) -> str:
    """The job file as the pods read it, with dotted-path ``changes`` applied."""
    from pipelines.kube.render import yamlio

    changed = job.with_overrides(**changes) if changes else job
    return yamlio.dump(changed.model_dump(mode="json"))
