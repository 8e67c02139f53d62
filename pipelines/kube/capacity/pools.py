"""The NodePools tokenyard ships, defined once as typed values.

Three CPU:memory classes, each a spot-first NodePool that may fall back to on-demand in
the same pool (Karpenter's documented fallback), a stable on-demand pool for Dask
schedulers and Spark drivers, and an on-demand GPU pool for training. Pods never name
instance types: workers select their class label, schedulers and drivers the stable
pool. ``pipelines.kube.render.nodepools`` turns these definitions into the NodePool and
EC2NodeClass objects of ``nodepools/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.kube.capacity.instances import (LABEL_ARCH, LABEL_CATEGORY, LABEL_CPU,
                                               LABEL_FAMILY, LABEL_GENERATION,
                                               LABEL_INSTANCE_TYPE, LABEL_OS, LABEL_SIZE,
                                               InstanceType, instance_types)
from pipelines.kube.capacity.scheduling import Requirement, Taint, Toleration

KARPENTER_VERSION = "1.14.1"
CLUSTER_NAME = "tokenyard"
NODE_ROLE = f"KarpenterNodeRole-{CLUSTER_NAME}"

LABEL_MEMORY_PER_CPU = "tokenyard.io/memory-per-cpu"
LABEL_POOL = "tokenyard.io/pool"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
TAINT_DEDICATED = "tokenyard.io/dedicated"
TAINT_GPU = "nvidia.com/gpu"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"

#: sizes left out of every pool: bare metal boots slowly and is rarely spot
METAL_SIZES = ("metal", "metal-12xl", "metal-16xl", "metal-24xl", "metal-32xl", "metal-48xl",
               "metal-96xl")
#: the largest node of a worker pool: one spot loss takes at most this many vCPUs
MAX_WORKER_NODE_VCPU = 64
#: at least this many instance types must fit a pod, so spot can be found somewhere
MIN_INSTANCE_TYPES = 5
ARCHITECTURES = ("amd64",)


@dataclass(frozen=True)
class MemoryClass:
    """A CPU:memory class: nodes with ``gib_per_cpu`` GiB of memory per vCPU."""

    gib_per_cpu: int
    category: str
    pool: str
    description: str

    @property
    def label_value(self) -> str:
        return str(self.gib_per_cpu)


CLASSES: tuple[MemoryClass, ...] = (
    MemoryClass(2, "c", "compute", "compute-optimized families (c5, c6i, c7a, ...)"),
    MemoryClass(4, "m", "general", "general-purpose families (m5, m6i, m7a, ...)"),
    MemoryClass(8, "r", "memory", "memory-optimized families (r5, r6i, r7a, ...)"),
)


@dataclass(frozen=True)
class Budget:
    nodes: str
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": self.nodes}
        if self.reasons:
            out["reasons"] = list(self.reasons)
        return out


@dataclass(frozen=True)
class NodePoolDef:
    name: str
    purpose: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    requirements: tuple[Requirement, ...]
    consolidation_policy: str
    consolidate_after: str
    budgets: tuple[Budget, ...]
    limits: dict[str, str]
    expire_after: str = "720h"
    termination_grace_period: str | None = None
    node_class: str = CLUSTER_NAME
    #: on-demand only pools say so here; the others try spot first
    capacity_types: tuple[str, ...] = ("spot", "on-demand")
    extra: dict[str, Any] = field(default_factory=dict)

    def allows(self, instance: InstanceType) -> bool:
        labels = instance.labels()
        return all(r.allows(labels) for r in self.requirements if r.key != LABEL_CAPACITY_TYPE)

    def instance_types(self) -> list[InstanceType]:
        return [i for i in instance_types() if self.allows(i)]

    def tolerated_by(self, tolerations: tuple[Toleration, ...]) -> bool:
        return all(any(t.tolerates(taint) for t in tolerations) for taint in self.taints)


def _common(categories: tuple[str, ...], capacity: tuple[str, ...], max_vcpu: int) -> list[Requirement]:
    return [
        Requirement(LABEL_CATEGORY, "In", categories),
        Requirement(LABEL_GENERATION, "Gt", ("4",)),
        Requirement(LABEL_SIZE, "NotIn", METAL_SIZES),
        Requirement(LABEL_CPU, "Lt", (str(max_vcpu + 1),)),
        Requirement(LABEL_ARCH, "In", ARCHITECTURES),
        Requirement(LABEL_OS, "In", ("linux",)),
        Requirement(LABEL_CAPACITY_TYPE, "In", capacity),
        Requirement(LABEL_INSTANCE_TYPE, "Exists", min_values=MIN_INSTANCE_TYPES),
    ]


def worker_toleration() -> Toleration:
    return Toleration(TAINT_DEDICATED, "Equal", "batch", "NoSchedule")


def stable_toleration() -> Toleration:
    return Toleration(TAINT_DEDICATED, "Equal", "stable", "NoSchedule")


def class_pool(cls: MemoryClass) -> NodePoolDef:
    requirements = _common((cls.category,), ("spot", "on-demand"), MAX_WORKER_NODE_VCPU)
    if cls.category == "c":
        # c5n gives 2.625 GiB per vCPU (10.5 GiB per 4 vCPUs): not a 2 GiB/vCPU node
        requirements.insert(2, Requirement(LABEL_FAMILY, "NotIn", ("c5n",)))
    return NodePoolDef(
        name=cls.pool,
        purpose=f"Workers and executors needing up to {cls.gib_per_cpu} GiB per vCPU: "
                f"{cls.description}; spot first, on-demand when spot has no capacity.",
        labels={LABEL_MEMORY_PER_CPU: cls.label_value, LABEL_POOL: cls.pool},
        taints=(Taint(TAINT_DEDICATED, "batch", "NoSchedule"),),
        requirements=tuple(requirements),
        consolidation_policy="WhenEmptyOrUnderutilized",
        consolidate_after="5m",
        budgets=(Budget("20%", ("Empty",)), Budget("5%", ("Underutilized", "Drifted"))),
        limits={"cpu": "2000", "memory": f"{2000 * cls.gib_per_cpu}Gi"},
        expire_after="168h",
        termination_grace_period="15m",
    )


def stable_pool() -> NodePoolDef:
    return NodePoolDef(
        name="stable",
        purpose="Dask schedulers, Spark drivers and job runners: on-demand only, never "
                "consolidated while busy (their pods carry karpenter.sh/do-not-disrupt).",
        labels={LABEL_POOL: "stable"},
        taints=(Taint(TAINT_DEDICATED, "stable", "NoSchedule"),),
        requirements=tuple(_common(("m",), ("on-demand",), 16)),
        consolidation_policy="WhenEmpty",
        consolidate_after="10m",
        budgets=(Budget("1"),),
        limits={"cpu": "64", "memory": "256Gi"},
        capacity_types=("on-demand",),
    )


def gpu_pool() -> NodePoolDef:
    requirements = _common(("g", "p"), ("on-demand",), 192)
    requirements.insert(-1, Requirement("karpenter.k8s.aws/instance-gpu-count", "Gt", ("0",)))
    return NodePoolDef(
        name="gpu",
        purpose="Training nodes (g and p families), on-demand: a multi-node training run "
                "loses every rank when one node goes, so it is not placed on spot.",
        labels={LABEL_POOL: "gpu"},
        taints=(Taint(TAINT_GPU, "true", "NoSchedule"),),
        requirements=tuple(requirements),
        consolidation_policy="WhenEmpty",
        consolidate_after="10m",
        budgets=(Budget("10%"),),
        limits={"cpu": "1536", "memory": "16000Gi", "nvidia.com/gpu": "128"},
        node_class=f"{CLUSTER_NAME}-gpu",
        capacity_types=("on-demand",),
    )


def all_pools() -> tuple[NodePoolDef, ...]:
    return (*(class_pool(c) for c in CLASSES), stable_pool(), gpu_pool())
