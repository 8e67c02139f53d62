"""Offline answer to "where would each pod of this job run?" (``tokenyard check-scheduling``).

For every pod the job would create, each NodePool is judged the way Karpenter would:
the pod's node selector against the labels the pool gives its nodes and the values its
requirements allow, the pool's taints against the pod's tolerations, and the pod's
requests against the allocatable of every instance type the pool's requirements allow
(after DaemonSets), including each ``minValues``. A pod no pool can take would stay
Pending forever; the report names every mismatch. For pools that can take it: which
capacity type Karpenter tries first, what it falls back to, and the Spot Advisor
savings and interruption bands of the instance types it would choose from.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.kube.capacity.instances import REGION, InstanceType, instance_types
from pipelines.kube.capacity.pools import LABEL_CAPACITY_TYPE
from pipelines.kube.capacity.quantity import format_cpu, gib
from pipelines.kube.capacity.scheduling import PodShape, Requirement, Taint, untolerated
from pipelines.kube.capacity.sizing import DAEMONSET_CPU_M, DAEMONSET_MEMORY_BYTES
from pipelines.kube.render import yamlio


@dataclass(frozen=True)
class PoolView:
    """A NodePool as read from a manifest."""

    name: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    requirements: tuple[Requirement, ...]

    @property
    def capacity_types(self) -> tuple[str, ...]:
        for r in self.requirements:
            if r.key == LABEL_CAPACITY_TYPE and r.operator == "In":
                return tuple(c for c in ("spot", "on-demand", "reserved") if c in r.values)
        return ("on-demand",)  # Karpenter's default when a pool does not say

    def allowed_types(self) -> list[InstanceType]:
        return [i for i in instance_types()
                if all(r.allows(i.labels()) for r in self.requirements
                       if r.key != LABEL_CAPACITY_TYPE)]


def pool_from_object(obj: dict[str, Any]) -> PoolView:
    template = (obj.get("spec") or {}).get("template") or {}
    tspec = template.get("spec") or {}
    return PoolView(
        name=(obj.get("metadata") or {}).get("name", "?"),
        labels=dict((template.get("metadata") or {}).get("labels") or {}),
        taints=tuple(Taint.from_dict(t) for t in tspec.get("taints") or []),
        requirements=tuple(Requirement.from_dict(r) for r in tspec.get("requirements") or []),
    )


def load_pools(directory: str | Path) -> list[PoolView]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"NodePool folder {directory} does not exist.",
                          hint="Pass --nodepools DIR (the shipped ones are in nodepools/).")
    pools = [pool_from_object(doc) for path in sorted(directory.glob("*.yaml"))
             for doc in yamlio.load_all(path)
             if isinstance(doc, dict) and doc.get("kind") == "NodePool"]
    if not pools:
        raise ConfigError(f"no NodePool in {directory}.")
    return pools


def load_prices(path: str | Path) -> dict[str, float]:
    """A JSON object of on-demand prices, instance type -> USD per hour."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"price file {path} cannot be read: {err}.",
                          hint='Give a JSON object such as {"m6i.xlarge": 0.192}.') from None
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ConfigError(f"price file {path} must map instance types to hourly prices.")
    return {str(k): float(v) for k, v in data.items()}


@dataclass(frozen=True)
class PoolFit:
    pool: PoolView
    instance_types: tuple[InstanceType, ...]

    @property
    def first_choice(self) -> str:
        return self.pool.capacity_types[0]

    @property
    def fallback(self) -> str | None:
        rest = self.pool.capacity_types[1:]
        return rest[0] if rest else None

    def spot_summary(self) -> str:
        listed = [i for i in self.instance_types if i.spot_savings_pct is not None]
        if "spot" not in self.pool.capacity_types or not listed:
            return "on-demand only"
        savings = [i.spot_savings_pct for i in listed]
        bands: dict[str, int] = {}
        for i in listed:
            bands[i.interruption] = bands.get(i.interruption, 0) + 1
        band_text = ", ".join(f"{n} at {b}" for b, n in sorted(bands.items()))
        return (f"spot saves {min(savings)}-{max(savings)}% (median "
                f"{statistics.median(savings):.0f}%) against on-demand in {REGION}; "
                f"interruption frequency: {band_text}")

    def best(self, n: int = 5) -> list[InstanceType]:
        """Instance types spot is most likely to be found cheap and stable on."""
        return sorted(self.instance_types,
                      key=lambda i: (i.spot_band if i.spot_band is not None else 9,
                                     -(i.spot_savings_pct or 0), i.vcpu, i.name))[:n]


@dataclass(frozen=True)
class PodVerdict:
    pod: PodShape
    fits: tuple[PoolFit, ...]
    #: pool name -> why it cannot take the pod
    rejected: dict[str, list[str]] = field(default_factory=dict)

    @property
    def schedulable(self) -> bool:
        return bool(self.fits)

    def request_text(self) -> str:
        return f"{format_cpu(self.pod.cpu_m)} CPU, {gib(self.pod.memory_bytes)}"


def _selector_problems(pod: PodShape, pool: PoolView) -> list[str]:
    problems = []
    instance_keys = set(instance_types()[0].labels()) if instance_types() else set()
    for key, value in pod.node_selector.items():
        if key in pool.labels:
            if pool.labels[key] != value:
                problems.append(f"node selector {key}={value}, but the pool's nodes have "
                                f"{key}={pool.labels[key]}")
            continue
        reqs = [r for r in pool.requirements if r.key == key]
        if reqs:
            if not all(r.allows({key: value}) for r in reqs):
                problems.append(f"node selector {key}={value} is outside the pool's "
                                f"requirements on {key}")
            continue
        if key not in instance_keys:
            problems.append(f"node selector {key}={value}, but the pool's nodes have no "
                            f"label {key}")
    return problems


def _fitting(pod: PodShape, pool: PoolView) -> tuple[list[InstanceType], list[str]]:
    allowed = pool.allowed_types()
    allowed = [i for i in allowed
               if all(i.labels().get(k, v) == v for k, v in pod.node_selector.items())]
    if not allowed:
        return [], ["its requirements allow no instance type in tokenyard's table"]
    fits = [i for i in allowed
            if i.alloc_cpu_m - DAEMONSET_CPU_M >= pod.cpu_m
            and i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES >= pod.memory_bytes
            and i.gpus >= pod.gpus]
    if not fits:
        big = max(allowed, key=lambda i: (i.alloc_memory_bytes, i.alloc_cpu_m))
        return [], [f"no instance type it allows can allocate {format_cpu(pod.cpu_m)} CPU and "
                     f"{gib(pod.memory_bytes)} (the largest, {big.name}, gives pods "
                     f"{format_cpu(big.alloc_cpu_m - DAEMONSET_CPU_M)} CPU and "
                     f"{gib(big.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES)})"]
    problems = []
    for r in pool.requirements:
        if r.min_values:
            distinct = {i.labels().get(r.key) for i in fits} - {None}
            if len(distinct) < r.min_values:
                problems.append(f"only {len(distinct)} value(s) of {r.key} fit the pod, and "
                                f"the pool's minValues is {r.min_values}")
    return fits, problems


def judge(pod: PodShape, pools: list[PoolView]) -> PodVerdict:
    fits: list[PoolFit] = []
    rejected: dict[str, list[str]] = {}
    for pool in pools:
        problems = _selector_problems(pod, pool)
        problems += [f"does not tolerate the taint {t}" for t in untolerated(pool.taints,
                                                                              pod.tolerations)]
        types: list[InstanceType] = []
        if not problems:
            types, more = _fitting(pod, pool)
            problems += more
        if problems:
            rejected[pool.name] = problems
        else:
            fits.append(PoolFit(pool, tuple(types)))
    return PodVerdict(pod, tuple(fits), rejected)


def check(pods: list[PodShape], pools: list[PoolView]) -> list[PodVerdict]:
    return [judge(pod, pools) for pod in pods]
