"""A job's worker profile mapped onto its NodePool: node types, pods per node, NodeClaims.

The renderers' own sizing decides the pods (``pipelines.kube.render.dask.plan`` /
``pipelines.kube.render.spark.plan``): which pool a worker or executor lands in, its requests,
and the instance types of that pool that can hold one (``PodSize.fits_on``, the pool's
requirements matched once in ``pipelines.kube``). Here each such type becomes an
:class:`Offer`: how many pods a node of it holds after kubelet/system reserves and the
DaemonSets (allocatable, not raw capacity), and what it costs.

Karpenter packs pending pods into NodeClaims: a claim takes pods while at least
``minValues`` (5) instance types can still hold them all, so a large batch fills the
pool's biggest nodes and the last claim holds the rest. It launches on-demand on the
cheapest type a claim allows (EC2 Fleet "lowest-price"), and spot through EC2 Fleet's
"price-capacity-optimized" strategy, which weighs capacity that is not public: the spot
side of a claim is modelled as an even mix of its ``MIN_INSTANCE_TYPES`` cheapest spot
types (price and interruption band averaged over them). Schedulers, job runners and
Spark drivers go to the stable on-demand pool, packed the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipelines.config import JobConfig
from pipelines.cost.interruptions import band_rate_per_hour
from pipelines.cost.pricing import PriceBook, RootVolume, worker_root_volume
from pipelines.cost.simulation import Claim
from pipelines.engines.limits import DASK_ALLOWED_FAILURES, SPARK_TASK_MAX_FAILURES
from pipelines.errors import ConfigError, ProfileFitError
from pipelines.kube.capacity.instances import InstanceType
from pipelines.kube.capacity.pools import MIN_INSTANCE_TYPES, NodePoolDef, stable_pool
from pipelines.kube.capacity.profiles import DaskProfile, Profile, SparkProfile
from pipelines.kube.capacity.sizing import DAEMONSET_CPU_M, DAEMONSET_MEMORY_BYTES, PodSize
from pipelines.kube.render import podspec


@dataclass(frozen=True)
class Offer:
    """One instance type that can hold the pods, with its prices and risk."""

    instance: InstanceType
    pods: int
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float | None
    spot_estimated: bool
    interruption_per_hour: float | None

    @property
    def name(self) -> str:
        return self.instance.name


@dataclass(frozen=True)
class ClaimChoice:
    """What Karpenter launches for a NodeClaim of ``pods`` pods."""

    pods: int
    on_demand: Offer
    spot_mix: tuple[Offer, ...]

    def claim(self) -> Claim:
        mix = self.spot_mix
        if not mix:  # no spot price known: spot costs what on-demand does, never interrupted
            return Claim(self.pods, self.on_demand.on_demand_usd_per_hour,
                         self.on_demand.on_demand_usd_per_hour, 0.0)
        spot = sum(o.spot_usd_per_hour or 0.0 for o in mix) / len(mix)
        rate = sum(o.interruption_per_hour or 0.0 for o in mix) / len(mix)
        return Claim(self.pods, self.on_demand.on_demand_usd_per_hour, spot, rate)


@dataclass(frozen=True)
class Fleet:
    """The worker pods of a run, the NodeClaims that hold them, and the stable nodes."""

    engine: str
    profile: str
    pool: NodePoolDef
    worker: PodSize
    slots_per_pod: int
    pods: int
    #: workers asked for, when the pool's CPU limit allows fewer
    pods_asked: int
    offers: tuple[Offer, ...]
    claims: tuple[ClaimChoice, ...]
    stable: tuple[Offer, ...]
    stable_pods: tuple[str, ...]
    consolidate_after_seconds: float
    stable_consolidate_after_seconds: float
    grace_seconds: float
    allowed_failures: int
    root_volume: RootVolume
    #: instance types that could hold a pod but have no on-demand price
    unpriced: tuple[str, ...]

    @property
    def slots(self) -> int:
        return self.pods * self.slots_per_pod

    @property
    def max_pods_per_node(self) -> int:
        return self.claims[0].pods if self.claims else 0

    @property
    def stable_usd_per_hour(self) -> float:
        return sum(o.on_demand_usd_per_hour for o in self.stable)

    def simulation_claims(self) -> tuple[Claim, ...]:
        return tuple(c.claim() for c in self.claims)


# -- durations -----------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


def duration_seconds(text: str) -> float:
    """A Kubernetes/Go duration such as ``5m`` or ``1h30m`` in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


# -- offers and claims ---------------------------------------------------------------


def pods_per_node(instance: InstanceType, cpu_m: int, memory_bytes: int) -> int:
    """How many such pods a node of ``instance`` holds after reserves and DaemonSets."""
    return max(0, min((instance.alloc_cpu_m - DAEMONSET_CPU_M) // cpu_m,
                      (instance.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES) // memory_bytes))


def offers_for(size: PodSize, prices: PriceBook) -> tuple[list[Offer], list[str]]:
    offers, unpriced = [], []
    for instance in size.fits_on:
        pods = pods_per_node(instance, size.cpu_request_m, size.memory_bytes)
        od = prices.on_demand_price(instance)
        if pods < 1:
            continue
        if od is None:
            unpriced.append(instance.name)
            continue
        spot, estimated = prices.spot_price(instance)
        rate = band_rate_per_hour(instance.spot_band) if instance.spot_band is not None else None
        offers.append(Offer(instance, pods, od, spot, estimated, rate))
    return offers, unpriced


def choose(offers: list[Offer], pods: int, *, spot: bool = True) -> ClaimChoice:
    fit = [o for o in offers if o.pods >= pods]
    on_demand = min(fit, key=lambda o: (o.on_demand_usd_per_hour, o.name))
    priced = sorted((o for o in fit if o.spot_usd_per_hour is not None),
                    key=lambda o: (o.spot_usd_per_hour, o.name))
    return ClaimChoice(pods, on_demand, tuple(priced[:MIN_INSTANCE_TYPES]) if spot else ())


def largest_claim(offers: list[Offer]) -> int:
    """Pods a NodeClaim takes before fewer than ``MIN_INSTANCE_TYPES`` types hold them."""
    sizes = sorted((o.pods for o in offers), reverse=True)
    return sizes[min(MIN_INSTANCE_TYPES, len(sizes)) - 1]


def pack(offers: list[Offer], pods: int, *, spot: bool = True) -> list[ClaimChoice]:
    """The NodeClaims for ``pods`` pending pods: full claims, then one for the rest."""
    biggest = largest_claim(offers)
    full, rest = divmod(pods, biggest)
    claims = [choose(offers, biggest, spot=spot)] * full
    if rest:
        claims.append(choose(offers, rest, spot=spot))
    return claims


def _pool_cpu_limit(pool: NodePoolDef) -> float:
    text = pool.limits.get("cpu")
    return float(text) if text else math.inf


def _stable_offers(pods: list[PodSize], prices: PriceBook) -> list[Offer]:
    """The cheapest on-demand stable node(s) holding the scheduler/driver pods."""
    pool = stable_pool()
    priced = [(prices.on_demand_price(i), i) for i in pool.instance_types()]
    priced = sorted(((p, i) for p, i in priced if p is not None), key=lambda x: (x[0], x[1].name))

    def holds(i: InstanceType, group: list[PodSize]) -> bool:
        return (i.alloc_cpu_m - DAEMONSET_CPU_M >= sum(p.cpu_request_m for p in group)
                and i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES
                >= sum(p.memory_bytes for p in group))

    for groups in ([pods], [[p] for p in pods]):
        chosen = []
        for group in groups:
            hit = next(((p, i) for p, i in priced if holds(i, group)), None)
            if hit is None:
                break
            chosen.append(Offer(hit[1], len(group), hit[0], None, False, None))
        else:
            return chosen
    raise ConfigError("no priced instance type of the stable pool holds the scheduler or "
                      "driver pods.", hint="Check the on-demand price file (--prices).")


def fleet(job: JobConfig, profile: Profile, prices: PriceBook, *, workers: int | None,
          source: str | None = None) -> Fleet:
    """Map ``profile`` onto its pool for ``workers`` pods (default: the profile's)."""
    from pipelines.kube.render import dask, spark

    if isinstance(profile, DaskProfile):
        plan = dask.plan(job, profile, source)
        size, stable_pods = plan.worker, [plan.scheduler, plan.runner]
        stable_names = ("Dask scheduler", "job runner")
        slots, grace, allowed = 1, float(podspec.SPOT_GRACE_SECONDS), DASK_ALLOWED_FAILURES
        default = profile.workers.count or profile.workers.max or 1
        engine = "dask"
    else:
        assert isinstance(profile, SparkProfile)
        plan = spark.plan(job, profile, source)
        size, stable_pods = plan.executor, [plan.driver]
        stable_names = ("Spark driver",)
        slots = profile.executor.cores
        grace = duration_seconds(spark.DECOMMISSION_FORCE_KILL)
        allowed = SPARK_TASK_MAX_FAILURES
        default = profile.executors.max
        engine = "spark"
    pods_asked = workers if workers is not None else default
    if pods_asked < 1:
        raise ConfigError(f"--workers must be at least 1 (got {pods_asked}).")
    offers, unpriced = offers_for(size, prices)
    pool = size.pool
    if len(offers) < 1:
        raise ProfileFitError(
            f"none of the {len(size.fits_on)} instance types of the {pool.name} pool that "
            f"can hold a worker of this profile has an on-demand price "
            f"({prices.on_demand_source}).", source=source, cpus=size.cpus,
            memory_bytes=size.memory_bytes)
    spot_allowed = "spot" in pool.capacity_types
    # the pool's CPU limit caps the vCPUs of its nodes: pods beyond it stay Pending
    limit = _pool_cpu_limit(pool)
    pods = pods_asked
    while pods > 1 and sum(c.on_demand.instance.vcpu
                           for c in pack(offers, pods, spot=False)) > limit:
        pods -= max(1, pods // 50)
    return Fleet(
        engine=engine, profile=profile.name, pool=pool, worker=size, slots_per_pod=slots,
        pods=pods, pods_asked=pods_asked, offers=tuple(offers),
        claims=tuple(pack(offers, pods, spot=spot_allowed)),
        stable=tuple(_stable_offers(stable_pods, prices)), stable_pods=stable_names,
        consolidate_after_seconds=duration_seconds(pool.consolidate_after),
        stable_consolidate_after_seconds=duration_seconds(stable_pool().consolidate_after),
        grace_seconds=grace, allowed_failures=allowed, root_volume=worker_root_volume(),
        unpriced=tuple(unpriced))
