"""Which unit size and which pool suit a job, judged by simulated runs.

Unit size trades per-unit overhead (smaller units pay more S3 round trips) against the
tail of the run (the last units finish one by one) and against rework (a lost unit
loses its work so far; a graceful retire finishes a unit only if it fits in the grace
period). Each candidate ``plan.target_unit_bytes`` is simulated with spot first and
on-demand fallback; the recommendation is the cheapest at p90, and of those within
``TIE_FRACTION`` of it, the fastest at p90.

The pool: each CPU:memory class whose one-core worker memory holds the calibrated peak
memory with ``MEMORY_HEADROOM`` (or, without a measurement, what the profile asks for)
is priced the same way; the cheapest is recommended, with the profile to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.config import JobConfig
from pipelines.cost import capacity
from pipelines.cost.model import Settings, budgeted_runs, simulate_runs
from pipelines.cost.pricing import PriceBook
from pipelines.cost.workload import Workload
from pipelines.errors import ConfigError
from pipelines.kube.capacity.pools import CLASSES
from pipelines.kube.capacity.profiles import DaskProfile, PodResources, Profile

if TYPE_CHECKING:
    from pipelines.cost.job import CostOptions

UNIT_SIZES_BYTES = tuple(m * 2**20 for m in (16, 32, 64, 128, 256, 512, 1024))
#: a worker must hold the measured peak memory times this
MEMORY_HEADROOM = 1.25
#: simulated runs per candidate, at most
MAX_RUNS = 50
TIE_FRACTION = 0.01


@dataclass(frozen=True)
class UnitSizeOption:
    target_unit_bytes: int
    units: int
    p50_wall_seconds: float
    p90_wall_seconds: float
    p50_usd: float
    p90_usd: float
    rework_cpu_seconds: float

    def to_dict(self) -> dict:
        return {"target_unit_bytes": self.target_unit_bytes, "units": self.units,
                "p50_wall_seconds": round(self.p50_wall_seconds, 1),
                "p90_wall_seconds": round(self.p90_wall_seconds, 1),
                "p50_usd": round(self.p50_usd, 4), "p90_usd": round(self.p90_usd, 4),
                "rework_cpu_seconds": round(self.rework_cpu_seconds, 1)}


@dataclass(frozen=True)
class PoolOption:
    pool: str
    gib_per_cpu: int
    worker_memory_bytes: int
    fits: bool
    p50_usd: float | None
    p90_usd: float | None
    p50_wall_seconds: float | None

    def to_dict(self) -> dict:
        return {"pool": self.pool, "gib_per_cpu": self.gib_per_cpu,
                "worker_memory_bytes": self.worker_memory_bytes, "fits": self.fits,
                "p50_usd": None if self.p50_usd is None else round(self.p50_usd, 4),
                "p90_usd": None if self.p90_usd is None else round(self.p90_usd, 4),
                "p50_wall_seconds": None if self.p50_wall_seconds is None
                else round(self.p50_wall_seconds, 1)}


@dataclass(frozen=True)
class Recommendation:
    runs: int
    unit_sizes: tuple[UnitSizeOption, ...]
    unit_size: UnitSizeOption
    pools: tuple[PoolOption, ...]
    pool: PoolOption | None
    memory_needed_bytes: int | None

    def to_dict(self) -> dict:
        return {"runs": self.runs,
                "target_unit_bytes": self.unit_size.target_unit_bytes,
                "pool": self.pool.pool if self.pool else None,
                "profile": (f"cluster_specs/dask/{self.pool.pool}-1cpu.yaml"
                            if self.pool else None),
                "memory_needed_bytes": self.memory_needed_bytes,
                "unit_sizes": [u.to_dict() for u in self.unit_sizes],
                "pools": [p.to_dict() for p in self.pools]}


def _best_unit_size(options: list[UnitSizeOption]) -> UnitSizeOption:
    cheapest = min(o.p90_usd for o in options)
    close = [o for o in options if o.p90_usd <= cheapest * (1 + TIE_FRACTION)]
    return min(close, key=lambda o: (o.p90_wall_seconds, o.target_unit_bytes))


def recommend(job: JobConfig, profile: Profile, opts: CostOptions, book: PriceBook,
              workload: Workload, settings: Settings) -> Recommendation:
    fleet = capacity.fleet(job, profile, book, workers=opts.workers, source=opts.profile_path)
    sizes = sorted(set(UNIT_SIZES_BYTES) | {workload.target_unit_bytes})
    candidates = {t: workload if t == workload.target_unit_bytes else workload.recut(t)
                  for t in sizes}
    runs = budgeted_runs(opts.simulate or MAX_RUNS,
                         max(wl.units for wl in candidates.values()), MAX_RUNS)
    unit_options = []
    seen: dict[tuple[float, ...], object] = {}  # sizes that cut the input alike
    for target, wl in candidates.items():
        summary = seen.get(wl.unit_bytes)
        if summary is None:
            summary = seen[wl.unit_bytes] = simulate_runs(wl, fleet, settings, "spot-first",
                                                          runs)[0]
        unit_options.append(UnitSizeOption(target, wl.units, summary.p50_wall_seconds,
                                           summary.p90_wall_seconds, summary.p50_usd,
                                           summary.p90_usd, summary.mean_rework_cpu_seconds))
    best_size = _best_unit_size(unit_options)
    pools: list[PoolOption] = []
    needed = None
    if isinstance(profile, DaskProfile):
        peak = workload.rates.peak_rss_bytes
        needed = int(peak * MEMORY_HEADROOM) if peak else profile.worker.memory_bytes
        wl = workload if best_size.target_unit_bytes == workload.target_unit_bytes \
            else workload.recut(best_size.target_unit_bytes)
        for cls in CLASSES:
            variant = profile.model_copy(update={
                "worker": PodResources(cpus=1, memory=f"{cls.gib_per_cpu}Gi")})
            try:
                f = capacity.fleet(job, variant, book, workers=fleet.pods)
            except ConfigError:
                continue
            fits = f.worker.memory_bytes >= needed
            if not fits:
                pools.append(PoolOption(cls.pool, cls.gib_per_cpu, f.worker.memory_bytes,
                                        False, None, None, None))
                continue
            summary, _ = simulate_runs(wl, f, settings, "spot-first", runs)
            pools.append(PoolOption(cls.pool, cls.gib_per_cpu, f.worker.memory_bytes, True,
                                    summary.p50_usd, summary.p90_usd,
                                    summary.p50_wall_seconds))
    fitting = [p for p in pools if p.fits and p.p90_usd is not None]
    best_pool = min(fitting, key=lambda p: (p.p90_usd, p.gib_per_cpu)) if fitting else None
    return Recommendation(runs, tuple(unit_options), best_size, tuple(pools), best_pool, needed)
