"""A run's scenario from its workload and fleet; the estimate and the simulated spread.

:func:`estimate` is the run with nothing interrupted and capacity always found, for
each capacity strategy (spot first with on-demand fallback, on-demand only, spot only):
exact for that case. :func:`simulate_runs` runs the discrete-event model ``runs`` times
with interruptions from the Spot Advisor bands or a trace, seeded, and summarizes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.cost.capacity import Fleet
from pipelines.cost.interruptions import HOURS_PER_MONTH, Trace
from pipelines.cost.simulation import (
    STRATEGIES,
    BandCapacity,
    Capacity,
    Handling,
    RunResult,
    Scenario,
    Strategy,
    Timing,
    TraceCapacity,
    run_seed,
    simulate,
)
from pipelines.cost.workload import Workload

#: a NodeClaim's node is Ready this long after Karpenter creates it: Karpenter's
#: maintainers report new nodes Ready in about 30-40 s (aws/karpenter-provider-aws#6165)
NODE_READY_SECONDS = 40.0
#: pulling the worker image (Python, Java and the project, about 1.5 GB) on a new node
IMAGE_PULL_SECONDS = 30.0
DEFAULT_LAUNCH_SECONDS = NODE_READY_SECONDS + IMAGE_PULL_SECONDS
#: no public figure: the chance that a spot launch finds none of its offerings
DEFAULT_SPOT_LAUNCH_FAILURE = 0.05
#: units simulated (summed over runs) that a secondary analysis (recommendation,
#: sensitivity, chart) may spend per setting it compares: about 5 s of simulation
UNIT_BUDGET_PER_SETTING = 5_000_000


def budgeted_runs(wanted: int, units: int, ceiling: int) -> int:
    """Runs for a secondary analysis: what was asked, within its ceiling and the budget."""
    return max(1, min(wanted, ceiling, UNIT_BUDGET_PER_SETTING // max(units, 1)))


@dataclass(frozen=True)
class Settings:
    """The model's knobs that are not measured: timing, interruptions, the seed."""

    launch_seconds: float = DEFAULT_LAUNCH_SECONDS
    handling: Handling = "graceful"
    spot_launch_failure: float = DEFAULT_SPOT_LAUNCH_FAILURE
    trace: Trace | None = None
    markets: int = 1
    seed: int = 0
    #: a Spot Advisor band is the chance of an interruption within this many hours
    band_hours: float = HOURS_PER_MONTH
    #: multiplies the band interruption rates (what-ifs)
    rate_factor: float = 1.0

    def capacity(self) -> Capacity:
        if self.trace is not None:
            return TraceCapacity(self.trace, self.markets)
        # the fleet's claims carry monthly band rates: rescale them to the window
        return BandCapacity(self.spot_launch_failure,
                            self.rate_factor * HOURS_PER_MONTH / self.band_hours)


def scenario(workload: Workload, fleet: Fleet, settings: Settings,
             strategy: Strategy) -> Scenario:
    return Scenario(
        unit_seconds=workload.unit_seconds(),
        slots_per_pod=fleet.slots_per_pod,
        claims=fleet.simulation_claims(),
        stable_usd_per_hour=fleet.stable_usd_per_hour,
        stable_nodes=len(fleet.stable),
        timing=Timing(launch_seconds=settings.launch_seconds,
                      consolidate_after_seconds=fleet.consolidate_after_seconds,
                      stable_consolidate_after_seconds=fleet.stable_consolidate_after_seconds,
                      grace_seconds=fleet.grace_seconds),
        root_volume=fleet.root_volume,
        strategy=strategy,
        handling=settings.handling,
        allowed_failures=fleet.allowed_failures,
    )


def estimate(workload: Workload, fleet: Fleet, settings: Settings) -> dict[Strategy, RunResult]:
    """Each strategy with no interruptions and capacity always found."""
    return {s: simulate(scenario(workload, fleet, settings, s)) for s in STRATEGIES}


@dataclass(frozen=True)
class Summary:
    """Seeded simulated runs of one strategy: percentiles and means."""

    strategy: Strategy
    runs: int
    p50_wall_seconds: float
    p90_wall_seconds: float
    p50_usd: float
    p90_usd: float
    mean_usd: float
    mean_rework_cpu_seconds: float
    p90_rework_cpu_seconds: float
    mean_units_redone: float
    mean_interruptions: float
    mean_spot_launch_failures: float
    on_demand_share: float
    failed_runs: int
    unfinished_runs: int
    tokens: float

    @property
    def p50_usd_per_billion_tokens(self) -> float:
        return self.p50_usd / self.tokens * 1e9 if self.tokens else 0.0

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "runs": self.runs,
            "p50_wall_seconds": round(self.p50_wall_seconds, 1),
            "p90_wall_seconds": round(self.p90_wall_seconds, 1),
            "p50_usd": round(self.p50_usd, 4),
            "p90_usd": round(self.p90_usd, 4),
            "mean_usd": round(self.mean_usd, 4),
            "p50_usd_per_billion_tokens": round(self.p50_usd_per_billion_tokens, 4),
            "rework_cpu_seconds": round(self.mean_rework_cpu_seconds, 1),
            "p90_rework_cpu_seconds": round(self.p90_rework_cpu_seconds, 1),
            "units_redone": round(self.mean_units_redone, 2),
            "interruptions": round(self.mean_interruptions, 2),
            "spot_launch_failures": round(self.mean_spot_launch_failures, 2),
            "on_demand_share": round(self.on_demand_share, 4),
            "failed_runs": self.failed_runs,
            "unfinished_runs": self.unfinished_runs,
        }


def summarize(strategy: Strategy, results: list[RunResult], tokens: float) -> Summary:
    wall = np.array([r.wall_seconds for r in results])
    usd = np.array([r.usd for r in results])
    rework = np.array([r.rework_cpu_seconds for r in results])
    spot_s = sum(r.spot_node_seconds for r in results)
    od_s = sum(r.on_demand_node_seconds for r in results)
    return Summary(
        strategy=strategy, runs=len(results),
        p50_wall_seconds=float(np.percentile(wall, 50)),
        p90_wall_seconds=float(np.percentile(wall, 90)),
        p50_usd=float(np.percentile(usd, 50)), p90_usd=float(np.percentile(usd, 90)),
        mean_usd=float(usd.mean()),
        mean_rework_cpu_seconds=float(rework.mean()),
        p90_rework_cpu_seconds=float(np.percentile(rework, 90)),
        mean_units_redone=float(np.mean([r.units_redone for r in results])),
        mean_interruptions=float(np.mean([r.interruptions for r in results])),
        mean_spot_launch_failures=float(np.mean([r.spot_launch_failures for r in results])),
        on_demand_share=od_s / (spot_s + od_s) if spot_s + od_s else 0.0,
        failed_runs=sum(r.failed for r in results),
        unfinished_runs=sum(not r.finished for r in results),
        tokens=tokens)


def simulate_runs(workload: Workload, fleet: Fleet, settings: Settings, strategy: Strategy,
                  runs: int) -> tuple[Summary, list[RunResult]]:
    """``runs`` seeded runs of one strategy: run ``i`` draws from ``run_seed(seed, i)``."""
    sc = scenario(workload, fleet, settings, strategy)
    results = [simulate(sc, settings.capacity(), run_seed(settings.seed, i))
               for i in range(runs)]
    return summarize(strategy, results, workload.tokens), results
