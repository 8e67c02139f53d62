"""Measured preemption traces: loading, replay as markets, and the slowdown they cause."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.config import parse_job
from pipelines.cost import capacity, model
from pipelines.cost.interruptions import Market, Trace, band_rate_per_hour, load_trace
from pipelines.cost.pricing import price_book
from pipelines.errors import ConfigError
from pipelines.kube.capacity.profiles import load_profile
from tests.cost.helpers import COMPUTE
from tests.cost.test_simulation import rates, workload

HARSH = "us-east-1c_intel_64.json"


def test_trace_files_load_with_the_readme_figures(traces):
    harsh = load_trace(traces / HARSH)
    assert harsh.gap_seconds == 34 and harsh.preemptions == 128
    assert harsh.preemptions / harsh.days == pytest.approx(20.2, abs=0.1)
    calm = load_trace(traces / "us-central1-a_c3-88.json")
    assert calm.preemptions == 0 and calm.uptime == 1.0


@pytest.mark.parametrize("content", [
    "[]", '{"metadata": {}, "data": [1, 0]}', '{"metadata": {"gap_seconds": 30}, "data": [1]}',
    '{"metadata": {"gap_seconds": 30}, "data": [1, -1]}', "{oops",
])
def test_a_file_that_is_not_a_trace_is_one_clear_error(tmp_path, content):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="t.json") as err:
        load_trace(path)
    assert err.value.exit_code == 2


def test_a_trace_never_up_is_refused(tmp_path):
    path = tmp_path / "down.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": 30}, "data": [0, 0, 0]}))
    with pytest.raises(ConfigError, match="never has a spot instance up"):
        load_trace(path)


def test_markets_replay_a_trace_from_an_offset_and_wrap():
    trace = Trace("t", 10.0, (True, True, True, False, False, True))
    market = Market(trace, 0.0)
    assert market.is_up(0) and not market.is_up(35) and market.is_up(55)
    assert market.next_down(0) == 30 and market.next_up(31) == 50
    assert market.next_down(31) == 90  # after the wrap, the next period's drop
    shifted = Market(trace, 25.0)
    assert shifted.next_down(0) == 5 and shifted.is_up(30)


def test_band_rates_read_the_band_as_a_monthly_probability():
    rate = band_rate_per_hour(0)  # "<5%": 2.5% of instances a month
    assert math.exp(-rate * 730) == pytest.approx(1 - 0.025)
    assert band_rate_per_hour(4) > band_rate_per_hour(0)


def _fleet(corpus, workers=80):
    return capacity.fleet(parse_job(corpus.job_dict()), load_profile(COMPUTE), price_book(),
                          workers=workers)


def test_a_harsh_trace_is_slower_than_the_estimate_and_shows_rework(traces, corpus):
    # 6,000 units of 128 MiB at 1 MB per CPU-second: about 2.9 hours on 80 workers
    wl = workload(6000, 128 * 2**20, rates(1e-6))
    fleet = _fleet(corpus)
    trace = load_trace(traces / HARSH)
    settings = model.Settings(trace=trace)
    ideal = model.estimate(wl, fleet, settings)["spot-first"]
    summary, results = model.simulate_runs(wl, fleet, settings, "spot-first", 12)
    assert summary.p50_wall_seconds > ideal.wall_seconds
    assert summary.mean_interruptions > 1
    assert summary.mean_rework_cpu_seconds > 0 and summary.mean_units_redone > 0
    assert summary.on_demand_share > 0  # launches during the trace's downtime fell back
    hard, _ = model.simulate_runs(wl, fleet, model.Settings(trace=trace, handling="hard"),
                                  "spot-first", 12)
    assert hard.mean_rework_cpu_seconds > summary.mean_rework_cpu_seconds


def test_more_markets_find_spot_more_often(traces, corpus):
    wl = workload(3000, 128 * 2**20, rates(1e-6))
    fleet = _fleet(corpus)
    trace = load_trace(traces / HARSH)
    one, _ = model.simulate_runs(wl, fleet, model.Settings(trace=trace), "spot-first", 16)
    five, _ = model.simulate_runs(wl, fleet, model.Settings(trace=trace, markets=5),
                                  "spot-first", 16)
    # a launch fails only when every market is down: five rarely are at once
    assert five.mean_spot_launch_failures < one.mean_spot_launch_failures
    assert five.on_demand_share < one.on_demand_share


def test_replaying_the_shipped_traces_bounds_the_slowdown(traces, corpus):
    # about 2.9 hours of work on 80 workers, replayed from 24 random starts per trace
    wl = workload(6000, 128 * 2**20, rates(1e-6))
    fleet = _fleet(corpus)
    ideal = model.estimate(wl, fleet, model.Settings())["spot-first"].wall_seconds
    rows = {}
    for path in sorted(traces.glob("*.json")):
        trace = load_trace(path)
        settings = model.Settings(trace=trace)
        first, a = model.simulate_runs(wl, fleet, settings, "spot-first", 24)
        only, b = model.simulate_runs(wl, fleet, settings, "spot", 24)
        rows[trace.name] = (trace, [r.wall_seconds / ideal for r in a],
                            [r.wall_seconds / ideal for r in b], first)
    print("\ntrace                        /day  uptime  spot first: mean   max  on-demand"
          "   spot only: mean   max")
    for name, (trace, first, only, summary) in rows.items():
        print(f"{name:28} {trace.preemptions / trace.days:5.1f} {trace.uptime:6.1%} "
              f"{sum(first) / len(first):17.3f} {max(first):5.3f} {summary.on_demand_share:10.1%}"
              f"{sum(only) / len(only):17.3f} {max(only):5.3f}")
        # a replacement node can start its pods while the noticed node finishes the units
        # in flight: for a moment there are more workers than asked, so a run can beat
        # the estimate slightly
        assert min(first) >= 0.97 and min(only) >= 0.97
        if trace.preemptions == 0:
            assert max(first) == max(only) == 1.0  # nothing to replay: the estimate exactly
        # the on-demand fallback bounds spot first: a notice brings a replacement node
        # before the old one goes, so only rework and relaunches are lost
        assert max(first) <= 1.1
        assert sum(first) <= sum(only)
        # waiting for spot cannot beat the trace's availability
        assert sum(only) / len(only) >= 0.95 / trace.uptime
    mean_only = {name: sum(only) / len(only) for name, (_, _, only, _) in rows.items()}
    assert mean_only[HARSH] > mean_only["us-east-1b_intel_64.json"] > \
        mean_only["us-east-1d_intel_64.json"]
