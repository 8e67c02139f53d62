"""A :class:`~pipelines.cost.job.CostReport` as one JSON object, or as text to read.

The JSON object has at least ``tokens``, ``cpu_seconds``, ``wall_seconds``,
``on_demand_usd``, ``spot_usd``, ``usd_per_billion_tokens`` (spot first with on-demand
fallback) and ``assumptions``; ``strategies`` has every strategy's figures, and with
``--simulate`` ``simulation`` has at least ``p50_wall_seconds``, ``p90_wall_seconds``,
``p50_usd`` and ``rework_cpu_seconds`` (spot first; every strategy under
``strategies``). Every figure says where it came from in ``assumptions``.
"""

from __future__ import annotations

from pipelines.cost.interruptions import band_assumptions
from pipelines.cost.job import CostReport
from pipelines.cost.pricing import FREE_INTERRUPTED_SECONDS, MIN_BILLED_SECONDS
from pipelines.cost.simulation import STRATEGIES, RunResult
from pipelines.kube.capacity.pools import MIN_INSTANCE_TYPES
from pipelines.kube.capacity.sizing import DAEMONSET_CPU_M, DAEMONSET_MEMORY_BYTES

def _per_billion(usd: float, tokens: float) -> float:
    return usd / tokens * 1e9 if tokens else 0.0


def _strategy(r: RunResult, tokens: float) -> dict:
    return {"wall_seconds": round(r.wall_seconds, 1),
            "instance_hours": round(r.instance_hours, 3),
            "usd": round(r.usd, 4),
            "usd_per_billion_tokens": round(_per_billion(r.usd, tokens), 4),
            "worker_nodes_usd": round(r.worker_usd, 4),
            "stable_nodes_usd": round(r.stable_usd, 4),
            "root_volumes_usd": round(r.volume_usd, 4)}


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def assumptions(report: CostReport) -> dict[str, str]:
    f, s, rates, wl = report.fleet, report.settings, report.rates, report.workload
    spot = f.claims[0].spot_mix if f.claims else ()
    out = {
        "region": "us-east-1, the region of the built-in tables, unless price files say "
                  "otherwise",
        "on_demand_prices": report.prices.on_demand_source,
        "spot_prices": report.prices.spot_source,
        "rates": f"{rates.source}: {rates.description}"
                 + (f" ({'; '.join(rates.notes)})" if rates.notes else ""),
        "backend": f"{rates.backend}: {rates.backend_reason}" if rates.backend_reason
                   else str(rates.backend),
        "work": "a unit is CPU-bound on one vCPU per worker slot (tokenizing is most of a "
                "unit's time); every unit adds what a unit costs whatever its size "
                f"({rates.unit_fixed_seconds:.3f} s, measured) and "
                f"{rates.unit_overhead_seconds:g} s of S3 round trips (marker check, shard "
                "and marker writes), not measured locally",
        "packing": f"Karpenter fills a NodeClaim while at least {MIN_INSTANCE_TYPES} instance "
                   f"types can hold its pods: {f.max_pods_per_node} workers per node on the "
                   f"{f.pool.name} pool's largest nodes; pods per node count what a node "
                   "allocates after kubelet, system and eviction reserves, less "
                   f"{DAEMONSET_CPU_M}m CPU and {DAEMONSET_MEMORY_BYTES // 2**20} MiB for "
                   "DaemonSets",
        "instance_choice": "on-demand: the cheapest type a NodeClaim allows (EC2 Fleet "
                           f"lowest-price); spot: an even mix of its {MIN_INSTANCE_TYPES} "
                           "cheapest spot types (EC2 Fleet price-capacity-optimized also "
                           "weighs spare capacity, which is not public)"
                           + (f", e.g. {', '.join(o.name for o in spot)}" if spot else ""),
        "billing": f"EC2 bills Linux per second with a {MIN_BILLED_SECONDS} s minimum per "
                   "instance; a spot instance EC2 interrupts within its first "
                   f"{FREE_INTERRUPTED_SECONDS // 60} minutes is not charged, one Karpenter "
                   "terminates is charged for the seconds used",
        "launch": f"a NodeClaim's pods start {s.launch_seconds:g} s after it is created "
                  "(node Ready in about 40 s, as Karpenter's maintainers report, plus about "
                  "30 s to pull the worker image); nodes are billed from the launch",
        "tail": f"after the last unit, empty nodes stay until the pool's consolidateAfter "
                f"({f.consolidate_after_seconds / 60:g} min for {f.pool.name}, "
                f"{f.stable_consolidate_after_seconds / 60:g} min for stable)",
        "stable": f"{' and '.join(f.stable_pods)} on {len(f.stable)} on-demand stable node(s) "
                  f"({', '.join(o.name for o in f.stable)}, ${f.stable_usd_per_hour:.4f}/h), "
                  "charged to this run from its start to the end of the tail",
        "root_volumes": f"every node's gp3 root volume ({f.root_volume.size_gib} GiB, "
                        f"{f.root_volume.iops} IOPS, {f.root_volume.throughput_mibs} MiB/s) at "
                        f"${f.root_volume.usd_per_hour:.4f}/h (us-east-1 gp3 prices, "
                        "730-hour month)",
        "not_included": "the EKS control plane ($0.10/h per cluster, shared), S3 storage and "
                        "requests, data transfer (S3 to EC2 in one region is free), the "
                        "driver's planning and commit",
        "estimate": "the strategies' figures above the simulation assume no interruption and "
                    "spot capacity always found; spot first and spot only differ only in the "
                    "simulation",
    }
    out["workers"] = (f"{f.pods} {'Dask workers' if f.engine == 'dask' else 'Spark executors'}"
                      f" ({f.slots} task slots) for the whole run: --workers, else the "
                      "profile's count or its adaptive maximum; no scale-down is modelled")
    if wl.units < f.slots:
        out["idle"] = (f"only {wl.units} unit(s) for {f.slots} slots: at most {wl.units} "
                       "are ever busy, and the rest are billed idle")
    if wl.actual_input_bytes is not None:
        out["input"] = (f"priced as if the input were {wl.input_bytes / 1e12:.3f} TB: the "
                        f"job's own {wl.actual_input_bytes / 1e6:.1f} MB of inputs repeated, "
                        "cut into units as the planner would; rates from what exists")
    if f.pods != f.pods_asked:
        out["pool_limit"] = (f"{f.pods_asked} workers asked; the {f.pool.name} pool's CPU "
                             f"limit ({f.pool.limits.get('cpu')} vCPUs of nodes) holds "
                             f"{f.pods}; the rest would stay Pending")
    if f.unpriced:
        out["unpriced"] = (f"{len(f.unpriced)} instance type(s) that could hold a worker have "
                           f"no on-demand price and are left out ({', '.join(f.unpriced[:5])})")
    if report.simulation is not None:
        if report.trace is not None:
            out["interruptions"] = (f"replayed trace {report.trace.describe()}, as "
                                    f"{s.markets} independent market(s) from random starts; "
                                    "spot launches fail while every market is down")
        else:
            bands = "; ".join(f"{k}: {v}" for k, v in band_assumptions(s.band_hours).items())
            out["interruptions"] = ("Spot Advisor interruption bands of the spot mix, each "
                                    "read as the chance that a node is interrupted within "
                                    f"{s.band_hours:g} hours (--band-hours): {bands}")
            out["spot_launch_failure"] = (
                f"{s.spot_launch_failure:.0%} of spot launches find no capacity (no public "
                "figure; --spot-launch-failure), after which Karpenter skips spot for 3 "
                "minutes (its unavailable-offerings cache)")
        out["handling"] = (
            f"graceful: on the 2-minute notice workers take no new unit, a unit in flight "
            f"finishes if it can within {f.grace_seconds:g} s, a replacement node is launched "
            "at once" if s.handling == "graceful" else
            "hard: workers run until EC2 takes the node; units in flight are lost and the "
            "replacement is launched then")
        limit = ("Dask's allowed-failures" if f.engine == "dask"
                 else "spark.task.maxFailures")
        out["retries"] = (f"a unit lost more than {f.allowed_failures} times would fail the "
                          f"run ({limit})")
    return out


def to_dict(report: CostReport) -> dict:
    wl, f = report.workload, report.fleet
    tokens = wl.tokens
    est = report.estimate
    first = est["spot-first"]
    out = {
        "job": report.job.name,
        "profile": report.options.profile_path,
        "workers": f.pods,
        "input_bytes": round(wl.input_bytes),
        "units": wl.units,
        "target_unit_bytes": wl.target_unit_bytes,
        "tokens": round(tokens),
        "cpu_seconds": round(wl.cpu_seconds, 1),
        "wall_seconds": round(first.wall_seconds, 1),
        "on_demand_usd": round(est["on-demand"].usd, 4),
        "spot_usd": round(est["spot"].usd, 4),
        "usd": round(first.usd, 4),
        "usd_per_billion_tokens": round(_per_billion(first.usd, tokens), 4),
        "strategies": {s: _strategy(est[s], tokens) for s in STRATEGIES},
        "calibration": report.rates.to_dict(),
        "capacity": {
            "engine": f.engine, "pool": f.pool.name, "slots_per_worker": f.slots_per_pod,
            "worker_cpu_m": f.worker.cpu_request_m, "worker_memory_bytes": f.worker.memory_bytes,
            "instance_types": len(f.offers),
            "node_claims": [{"workers": c.pods, "on_demand": c.on_demand.name,
                             "on_demand_usd_per_hour": c.on_demand.on_demand_usd_per_hour,
                             "spot_mix": [o.name for o in c.spot_mix],
                             "spot_usd_per_hour": round(c.claim().spot_usd_per_hour, 5),
                             "spot_bands": [o.instance.interruption for o in c.spot_mix]}
                            for c in _distinct(f.claims)],
            "node_claim_count": len(f.claims),
            "stable_nodes": [o.name for o in f.stable],
        },
        "assumptions": assumptions(report),
    }
    if report.simulation is not None:
        sim = {s: v.to_dict() for s, v in report.simulation.items()}
        out["simulation"] = {**sim["spot-first"], "strategies": sim,
                             "source": "trace" if report.trace else "spot advisor bands",
                             "handling": report.settings.handling,
                             "seed": report.settings.seed}
        if report.recommendation is not None:
            out["simulation"]["recommendation"] = report.recommendation.to_dict()
    if report.sensitivity is not None:
        out["sensitivity"] = report.sensitivity.to_dict()
    return out


def _distinct(claims):
    seen, out = set(), []
    for c in claims:
        if c.pods not in seen:
            seen.add(c.pods)
            out.append(c)
    return out
