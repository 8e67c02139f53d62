"""Which inputs of the estimate matter most: a one-at-a-time sensitivity table.

Each input is set to a low and a high value with the others at their base, and the
same seeded runs are simulated (spot first with on-demand fallback; common random
numbers, so differences come from the input, not from the draw). Rows are ranked by
how far the dollars per billion tokens move between low and high, relative to the base.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pipelines.config import JobConfig
from pipelines.cost import capacity
from pipelines.cost.capacity import Fleet
from pipelines.cost.model import Settings, budgeted_runs, simulate_runs
from pipelines.cost.pricing import PriceBook
from pipelines.cost.workload import Workload
from pipelines.kube.capacity.profiles import Profile

if TYPE_CHECKING:
    from pipelines.cost.job import CostOptions

#: simulated runs per setting when --simulate does not say
DEFAULT_RUNS = 20
MAX_RUNS = 50

Case = tuple[Workload, Fleet, Settings]


@dataclass(frozen=True)
class Outcome:
    mean_usd: float
    p50_wall_seconds: float
    usd_per_billion_tokens: float

    def to_dict(self) -> dict:
        return {"mean_usd": round(self.mean_usd, 4),
                "p50_wall_seconds": round(self.p50_wall_seconds, 1),
                "usd_per_billion_tokens": round(self.usd_per_billion_tokens, 4)}


@dataclass(frozen=True)
class Row:
    name: str
    low_label: str
    high_label: str
    low: Outcome
    high: Outcome
    #: (max - min) of $ per billion tokens over low, base, high, relative to the base
    swing: float

    def to_dict(self) -> dict:
        return {"input": self.name, "low": self.low_label, "high": self.high_label,
                "low_outcome": self.low.to_dict(), "high_outcome": self.high.to_dict(),
                "swing": round(self.swing, 4)}


@dataclass(frozen=True)
class Table:
    runs: int
    base: Outcome
    rows: tuple[Row, ...]

    def to_dict(self) -> dict:
        return {"runs": self.runs, "strategy": "spot-first", "base": self.base.to_dict(),
                "rows": [r.to_dict() for r in self.rows]}


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 1024:g} KiB"


def _outcome(case: Case, runs: int) -> Outcome:
    workload, fleet, settings = case
    summary, _ = simulate_runs(workload, fleet, settings, "spot-first", runs)
    per_b = summary.mean_usd / workload.tokens * 1e9 if workload.tokens else 0.0
    return Outcome(summary.mean_usd, summary.p50_wall_seconds, per_b)


def _spot_prices(fleet: Fleet, factor: float) -> Fleet:
    claims = tuple(dataclasses.replace(c, spot_mix=tuple(
        dataclasses.replace(o, spot_usd_per_hour=(o.spot_usd_per_hour or 0) * factor)
        for o in c.spot_mix)) for c in fleet.claims)
    return dataclasses.replace(fleet, claims=claims)


def sensitivity(job: JobConfig, profile: Profile, opts: CostOptions, book: PriceBook,
                workload: Workload, fleet: Fleet, settings: Settings) -> Table:
    runs = budgeted_runs(opts.simulate or DEFAULT_RUNS, workload.units, MAX_RUNS)
    base: Case = (workload, fleet, settings)
    rates = workload.rates

    def workers(factor: float) -> Case:
        n = max(1, round(fleet.pods * factor))
        return workload, capacity.fleet(job, profile, book, workers=n), settings

    variations: list[tuple[str, str, str, Callable[[], Case], Callable[[], Case]]] = [
        ("tokenizer CPU per byte", "x0.75", "x1.25",
         lambda: (workload.with_rates(rates.scaled(cpu=0.75)), fleet, settings),
         lambda: (workload.with_rates(rates.scaled(cpu=1.25)), fleet, settings)),
        ("tokens per byte", "x0.9", "x1.1",
         lambda: (workload.with_rates(rates.scaled(tokens=0.9)), fleet, settings),
         lambda: (workload.with_rates(rates.scaled(tokens=1.1)), fleet, settings)),
        ("spot price", "x0.8", "x1.2",
         lambda: (workload, _spot_prices(fleet, 0.8), settings),
         lambda: (workload, _spot_prices(fleet, 1.2), settings)),
        ("workers", f"{max(1, round(fleet.pods / 2))}", f"{fleet.pods * 2}",
         lambda: workers(0.5), lambda: workers(2.0)),
        ("unit size", _size(workload.target_unit_bytes // 2),
         _size(workload.target_unit_bytes * 2),
         lambda: (workload.recut(max(1, workload.target_unit_bytes // 2)), fleet, settings),
         lambda: (workload.recut(workload.target_unit_bytes * 2), fleet, settings)),
        ("per-unit overhead", "0 s", f"{rates.unit_overhead_seconds * 4:g} s",
         lambda: (workload.with_rates(rates.scaled(overhead=0.0)), fleet, settings),
         lambda: (workload.with_rates(rates.scaled(overhead=4.0)), fleet, settings)),
        ("node launch", f"{settings.launch_seconds / 2:g} s", f"{settings.launch_seconds * 2:g} s",
         lambda: (workload, fleet, dataclasses.replace(
             settings, launch_seconds=settings.launch_seconds / 2)),
         lambda: (workload, fleet, dataclasses.replace(
             settings, launch_seconds=settings.launch_seconds * 2))),
        ("consolidateAfter", "0 s", f"{fleet.consolidate_after_seconds * 2:g} s",
         lambda: (workload, dataclasses.replace(fleet, consolidate_after_seconds=0.0), settings),
         lambda: (workload, dataclasses.replace(
             fleet, consolidate_after_seconds=fleet.consolidate_after_seconds * 2), settings)),
        ("interruption handling", "graceful", "hard",
         lambda: (workload, fleet, dataclasses.replace(settings, handling="graceful")),
         lambda: (workload, fleet, dataclasses.replace(settings, handling="hard"))),
    ]
    if settings.trace is None:
        variations += [
            # x30: the Advisor's band read per day instead of per month
            ("interruption rate", "x0.5", "x30",
             lambda: (workload, fleet, dataclasses.replace(settings, rate_factor=0.5)),
             lambda: (workload, fleet, dataclasses.replace(settings, rate_factor=30.0))),
            ("spot launch failure", "0", "0.25",
             lambda: (workload, fleet, dataclasses.replace(settings, spot_launch_failure=0.0)),
             lambda: (workload, fleet, dataclasses.replace(settings, spot_launch_failure=0.25))),
        ]
    else:
        variations.append(
            ("trace markets", f"{settings.markets}", f"{settings.markets * 5}",
             lambda: (workload, fleet, settings),
             lambda: (workload, fleet, dataclasses.replace(settings,
                                                           markets=settings.markets * 5))))
    base_outcome = _outcome(base, runs)
    rows = []
    for name, low_label, high_label, low, high in variations:
        lo, hi = _outcome(low(), runs), _outcome(high(), runs)
        values = [lo.usd_per_billion_tokens, hi.usd_per_billion_tokens,
                  base_outcome.usd_per_billion_tokens]
        swing = (max(values) - min(values)) / base_outcome.usd_per_billion_tokens \
            if base_outcome.usd_per_billion_tokens else 0.0
        rows.append(Row(name, low_label, high_label, lo, hi, swing))
    rows.sort(key=lambda r: (-r.swing, r.name))
    return Table(runs, base_outcome, tuple(rows))
