"""The simulator against closed forms, and its behaviour under interruptions."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.config import parse_job
from pipelines.cost import capacity, model
from pipelines.cost.calibration import Rates
from pipelines.cost.interruptions import load_trace
from pipelines.cost.pricing import RootVolume, instance_usd, price_book
from pipelines.cost.simulation import (
    BandCapacity,
    Claim,
    Scenario,
    Timing,
    TraceCapacity,
    run_seed,
    simulate,
)
from pipelines.cost.workload import Scaled, Workload
from pipelines.kube.capacity.profiles import load_profile
from tests.cost.helpers import COMPUTE

VOLUME = RootVolume(80, 3000, 250)


def scenario(units: int, unit_s: float, claims: tuple[Claim, ...], *, launch: float = 70.0,
             strategy="spot-first", handling="graceful", allowed=20) -> Scenario:
    return Scenario(unit_seconds=(unit_s,) * units, slots_per_pod=1, claims=claims,
                    stable_usd_per_hour=0.1, stable_nodes=1,
                    timing=Timing(launch_seconds=launch, consolidate_after_seconds=300,
                                  stable_consolidate_after_seconds=600, grace_seconds=90),
                    root_volume=VOLUME, strategy=strategy, handling=handling,
                    allowed_failures=allowed)


def rates(cpu_per_byte: float = 1e-6) -> Rates:
    return Rates(source="sample", description="test", cpu_seconds_per_byte=cpu_per_byte,
                 tokens_per_byte=0.25, unit_overhead_seconds=0.0, peak_rss_bytes=None,
                 tokenizer_sha256="x", backend=None, measured_bytes=1, measured_tokens=1,
                 measured_cpu_seconds=1, measured_wall_seconds=1, measured_units=1,
                 rejected=0)


def workload(units: int, unit_bytes: int, r: Rates | None = None) -> Workload:
    return Workload((float(unit_bytes),) * units, Scaled(()), unit_bytes, r or rates())


# -- closed forms --------------------------------------------------------------------


@pytest.mark.parametrize("strategy, price", [("spot-first", 0.4), ("on-demand", 1.0),
                                             ("spot", 0.4)])
def test_no_interruptions_time_and_cost_are_exact(strategy, price):
    claims = (Claim(3, 1.0, 0.4, 0.01), Claim(3, 1.0, 0.4, 0.01))
    result = simulate(scenario(100, 30.0, claims, strategy=strategy))
    wall = 70 + math.ceil(100 / 6) * 30
    node_s = wall + 300  # the nodes stay until consolidateAfter
    stable_s = wall + 600
    expected = (2 * price * node_s / 3600 + 0.1 * stable_s / 3600
                + VOLUME.usd_per_hour * (2 * node_s + stable_s) / 3600)
    assert result.wall_seconds == wall
    assert result.usd == pytest.approx(expected, rel=1e-12)
    assert result.instance_hours == pytest.approx((2 * node_s + stable_s) / 3600)
    assert result.rework_cpu_seconds == 0 and result.interruptions == 0


def test_the_estimate_on_a_real_fleet_is_the_closed_form(corpus):
    fleet = capacity.fleet(parse_job(corpus.job_dict()), load_profile(COMPUTE), price_book(),
                           workers=80)
    wl = workload(1000, 60_000_000)  # 60 s per unit
    est = model.estimate(wl, fleet, model.Settings())
    wall = model.DEFAULT_LAUNCH_SECONDS + math.ceil(1000 / 80) * 60
    assert est["on-demand"].wall_seconds == pytest.approx(wall, abs=1e-6)
    node_s = wall + fleet.consolidate_after_seconds
    stable_s = wall + fleet.stable_consolidate_after_seconds
    for strategy, price in (("on-demand", "on_demand_usd_per_hour"),
                            ("spot", "spot_usd_per_hour")):
        nodes = sum(instance_usd(getattr(c, price), node_s) for c in fleet.simulation_claims())
        expected = (nodes + instance_usd(fleet.stable_usd_per_hour, stable_s)
                    + fleet.root_volume.usd(node_s) * len(fleet.claims)
                    + fleet.root_volume.usd(stable_s))
        assert est[strategy].usd == pytest.approx(expected, rel=1e-9)


def _periodic_trace(tmp_path, up_ticks: int, down_ticks: int, cycles: int):
    path = tmp_path / "periodic.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": 30},
                                "data": ([1] * up_ticks + [0] * down_ticks) * cycles}))
    return load_trace(path)


@pytest.mark.parametrize("up_ticks, down_ticks", [(18, 6), (12, 12)])
def test_availability_a_with_tiny_units_stretches_time_by_one_over_a(tmp_path, up_ticks,
                                                                      down_ticks):
    # down periods are a whole number of Karpenter's 3-minute retries, so spot only
    # relaunches the moment capacity is back; tiny units lose next to nothing
    trace = _periodic_trace(tmp_path, up_ticks, down_ticks, 300)
    availability = up_ticks / (up_ticks + down_ticks)
    claims = tuple(Claim(1, 1.0, 0.3) for _ in range(8))
    work_s = 30_000.0
    sc = scenario(int(work_s), 1.0, claims, launch=0.0, strategy="spot", handling="hard")
    ideal = simulate(sc).wall_seconds
    assert ideal == pytest.approx(work_s / 8)
    result = simulate(sc, TraceCapacity(trace), run_seed(0, 0))
    assert result.finished and result.interruptions > 5
    assert result.wall_seconds / ideal == pytest.approx(1 / availability, rel=0.03)


# -- behaviour -----------------------------------------------------------------------


def test_more_workers_finish_sooner_at_about_the_same_cost(corpus):
    job = parse_job(corpus.job_dict())
    wl = workload(12_600, 60_000_000)
    out = {}
    for n in (63, 126, 252):
        fleet = capacity.fleet(job, load_profile(COMPUTE), price_book(), workers=n)
        out[n] = model.estimate(wl, fleet, model.Settings())["spot-first"]
    assert out[126].wall_seconds < 0.55 * out[63].wall_seconds
    assert out[252].wall_seconds < 0.55 * out[126].wall_seconds
    for n in (126, 252):
        assert out[n].usd == pytest.approx(out[63].usd, rel=0.12)


def test_runs_are_seeded_and_deterministic():
    sc = scenario(400, 120.0, (Claim(4, 1.0, 0.4, 2.0),) * 3)
    a = [simulate(sc, BandCapacity(0.2), run_seed(7, i)) for i in range(5)]
    b = [simulate(sc, BandCapacity(0.2), run_seed(7, i)) for i in range(5)]
    c = [simulate(sc, BandCapacity(0.2), run_seed(8, i)) for i in range(5)]
    assert a == b
    assert a != c
    assert any(r.interruptions for r in a)


def test_graceful_retire_finishes_short_units_a_hard_loss_redoes_them():
    claims = (Claim(4, 1.0, 0.4, 3.0),) * 4  # three interruptions per node-hour
    graceful = [simulate(scenario(600, 60.0, claims), BandCapacity(), run_seed(1, i))
                for i in range(10)]
    hard = [simulate(scenario(600, 60.0, claims, handling="hard"), BandCapacity(),
                     run_seed(1, i)) for i in range(10)]
    assert sum(r.interruptions for r in graceful) > 5
    assert all(r.rework_cpu_seconds == 0 for r in graceful)  # 60 s fits in the 90 s grace
    assert sum(r.units_redone for r in hard) > 5
    assert sum(r.rework_cpu_seconds for r in hard) > 0


def test_units_longer_than_the_grace_period_are_lost_even_gracefully():
    claims = (Claim(4, 1.0, 0.4, 3.0),) * 4
    runs = [simulate(scenario(100, 600.0, claims), BandCapacity(), run_seed(2, i))
            for i in range(10)]
    assert sum(r.units_redone for r in runs) > 0
    for r in runs:  # each lost unit lost at most its length
        assert all(loss.lost_seconds <= 600.0 * len(loss.units) for loss in r.losses)


def test_spot_first_falls_back_to_on_demand_when_spot_is_scarce():
    claims = (Claim(4, 1.0, 0.4, 0.0),) * 8
    first = [simulate(scenario(800, 60.0, claims), BandCapacity(0.5), run_seed(3, i))
             for i in range(20)]
    assert sum(r.spot_launch_failures for r in first) > 0
    assert 0 < sum(r.on_demand_share for r in first) / 20 < 1
    # spot only waits out Karpenter's 3-minute cache instead, and is slower
    only = [simulate(scenario(800, 60.0, claims, strategy="spot"), BandCapacity(0.5),
                     run_seed(3, i)) for i in range(20)]
    assert all(r.on_demand_share == 0 for r in only)
    assert sum(r.wall_seconds for r in only) > sum(r.wall_seconds for r in first)
    never = simulate(scenario(800, 60.0, claims), BandCapacity(1.0))
    always = simulate(scenario(800, 60.0, claims, strategy="on-demand"))
    assert never.on_demand_share == 1 and never.usd == pytest.approx(always.usd)


def test_a_unit_lost_too_often_would_fail_the_run():
    sc = scenario(2, 3000.0, (Claim(1, 1.0, 0.4, 2.0),), handling="hard", allowed=1)
    results = [simulate(sc, BandCapacity(), run_seed(0, i)) for i in range(5)]
    # the model goes on (a rerun resumes), but says the run would have failed
    assert all(r.finished for r in results)
    assert any(r.failed for r in results)
    assert all(r.failed == any(n > 1 for n in _losses_per_unit(r).values()) for r in results)


def _losses_per_unit(result) -> dict[int, int]:
    counts: dict[int, int] = {}
    for loss in result.losses:
        for unit in loss.units:
            counts[unit] = counts.get(unit, 0) + 1
    return counts


def test_an_interrupted_spot_node_in_its_first_hour_costs_nothing(tmp_path):
    # up for 20 minutes, then down for an hour: every spot node EC2 takes is free
    trace = _periodic_trace(tmp_path, 40, 120, 50)
    sc = scenario(200, 60.0, (Claim(1, 1.0, 0.5),), launch=0.0, strategy="spot",
                  handling="hard")
    result = simulate(sc, TraceCapacity(trace), run_seed(0, 1))
    assert result.interruptions >= 2
    # only the last node (never interrupted) is billed, for its life plus the tail
    spot_hours = result.spot_node_seconds / 3600
    assert result.worker_usd < 0.5 * spot_hours
