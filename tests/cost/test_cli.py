"""``tokenyard cost`` from the command line: its JSON interface, text, flags and errors."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET

import pytest

from tests.cost.helpers import COMPUTE, SPARK, TRACES, cost_json, run_cli

FAST = ("--sample-bytes", "300KB")


def _plain(corpus):
    """The corpus's uncompressed JSONL only, in 64 MiB units (few units at any size),
    tokenized by HF: slow enough that terabytes take hours."""
    return corpus.job_file(corpus.root / "plain.yaml",
                           **{"plan.target_unit_bytes": "64MiB",
                              "input.uri": str(corpus.raw / "*.jsonl"),
                              "tokenizer.backend": "hf"})


def test_json_has_the_fixed_fields(corpus):
    data = cost_json(corpus.job_file(), "--profile", COMPUTE, "--workers", "16", *FAST)
    for key in ("tokens", "cpu_seconds", "wall_seconds", "on_demand_usd", "spot_usd",
                "usd_per_billion_tokens", "assumptions"):
        assert key in data, key
    assert data["workers"] == 16 and data["tokens"] > 0
    assert data["spot_usd"] < data["on_demand_usd"]
    first = data["strategies"]["spot-first"]
    assert data["usd_per_billion_tokens"] == pytest.approx(
        first["usd"] / data["tokens"] * 1e9, rel=1e-3)
    assert "simulation" not in data
    for key in ("on_demand_prices", "spot_prices", "billing", "launch", "packing", "stable",
                "rates"):
        assert key in data["assumptions"], key
    assert "ESTIMATED" in data["assumptions"]["spot_prices"]
    assert "per second" in data["assumptions"]["billing"]


def test_simulate_adds_the_spread(corpus):
    data = cost_json(corpus.job_file(), "--profile", COMPUTE, "--workers", "16",
                     "--simulate", "5", *FAST)
    sim = data["simulation"]
    for key in ("p50_wall_seconds", "p90_wall_seconds", "p50_usd", "rework_cpu_seconds"):
        assert key in sim, key
    assert sim["runs"] == 5 and set(sim["strategies"]) == {"spot-first", "on-demand", "spot"}
    assert sim["strategies"]["on-demand"]["on_demand_share"] == 1.0
    assert "interruptions" in data["assumptions"]
    rec = sim["recommendation"]
    assert rec["pool"] in ("compute", "general", "memory")
    assert rec["target_unit_bytes"] in [u["target_unit_bytes"] for u in rec["unit_sizes"]]


def test_text_output_lists_strategies_and_assumptions(corpus):
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE, *FAST)
    assert code == 0, err
    for line in ("spot first, on-demand fallback", "on-demand only", "spot only",
                 "assumptions:", "NodeClaim", "stable:"):
        assert line in out


def test_more_workers_finish_sooner_at_about_the_same_cost(corpus, tmp_path):
    # one calibration priced at several worker counts (the chart's sweep); hours of
    # work, so that start-up and the nodes' tail are small beside it
    data = cost_json(_plain(corpus), "--profile", COMPUTE, "--workers", "126",
                     "--assume-input-bytes", "2TB", "--chart", tmp_path / "c.svg", *FAST)
    points = {p["workers"]: p for p in data["chart"]["points"]}
    assert {63, 126, 252} <= set(points)
    assert points[126]["wall_seconds"] == pytest.approx(data["wall_seconds"], abs=0.1)
    for fewer, more in ((63, 126), (126, 252)):
        assert points[more]["wall_seconds"] < 0.55 * points[fewer]["wall_seconds"]
        assert points[more]["spot_first_usd"] == pytest.approx(points[fewer]["spot_first_usd"],
                                                               rel=0.1)


def test_assume_input_bytes_prices_a_larger_input(corpus):
    data = cost_json(corpus.job_file(), "--profile", COMPUTE, "--assume-input-bytes", "2GB",
                     *FAST)
    assert data["input_bytes"] == 2_000_000_000
    per_byte = 1 / data["calibration"]["bytes_per_token"]
    assert data["tokens"] == pytest.approx(2e9 * per_byte, rel=1e-3)
    assert "as if the input were" in data["assumptions"]["input"]


def test_spark_profile_counts_task_slots(corpus):
    data = cost_json(corpus.job_file(), "--profile", SPARK, "--workers", "4", *FAST)
    assert data["capacity"]["engine"] == "spark" and data["capacity"]["slots_per_worker"] == 8
    assert "Spark driver" in data["assumptions"]["stable"]
    code, out, err = run_cli("cost", _plain(corpus), "--profile", SPARK, "--workers", "4",
                             "--assume-input-bytes", "50GB", "--simulate", "3", *FAST)
    assert code == 0, err
    assert "unit size" in out and "spark.task.maxFailures" in out


def test_band_hours_reads_the_advisor_band_over_a_shorter_life(corpus):
    args = (_plain(corpus), "--profile", COMPUTE, "--assume-input-bytes", "300GB",
            "--simulate", "10", *FAST)
    month = cost_json(*args)
    hour = cost_json(*args, "--band-hours", "1")
    assert "within 730 hours" in month["assumptions"]["interruptions"]
    assert "within 1 hours" in hour["assumptions"]["interruptions"]
    assert hour["simulation"]["interruptions"] > 5 * month["simulation"]["interruptions"]


def test_trace_replay_from_the_command_line(corpus):
    harsh = TRACES / "us-east-1c_intel_64.json"
    if not harsh.exists():
        pytest.skip(f"{harsh} is absent")
    data = cost_json(_plain(corpus), "--profile", COMPUTE, "--assume-input-bytes", "200GB",
                     "--simulate", "6", "--trace", harsh, *FAST)
    sim = data["simulation"]
    assert sim["source"] == "trace"
    assert sim["strategies"]["spot"]["p90_wall_seconds"] >= data["wall_seconds"]
    assert "us-east-1c" in data["assumptions"]["interruptions"]


def test_sensitivity_ranks_the_inputs(corpus):
    data = cost_json(_plain(corpus), "--profile", COMPUTE, "--assume-input-bytes", "20GB",
                     "--sensitivity", *FAST)
    rows = data["sensitivity"]["rows"]
    swings = [r["swing"] for r in rows]
    assert swings == sorted(swings, reverse=True)
    names = {r["input"] for r in rows}
    assert {"tokenizer CPU per byte", "spot price", "workers", "unit size",
            "interruption rate"} <= names
    by_name = {r["input"]: r for r in rows}
    cpu = by_name["tokenizer CPU per byte"]
    assert cpu["low_outcome"]["p50_wall_seconds"] < cpu["high_outcome"]["p50_wall_seconds"]
    code, out, _ = run_cli("cost", _plain(corpus), "--profile", COMPUTE, "--sensitivity",
                           *FAST)
    assert code == 0 and "sensitivity (" in out and "swing" in out


def test_chart_as_self_contained_svg(corpus, tmp_path):
    path = tmp_path / "chart.svg"
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE, "--workers",
                             "32", "--chart", path, *FAST)
    assert code == 0, err
    root = ET.fromstring(path.read_text())
    assert root.tag.endswith("svg")
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) >= 3  # spot first and on-demand cost, and wall time
    assert "chart:" in out


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None,
                    reason="matplotlib is installed: a PNG chart would be drawn")
def test_png_chart_without_matplotlib_says_what_to_install(corpus, tmp_path):
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE,
                             "--chart", tmp_path / "c.png", *FAST)
    assert code == 2 and "matplotlib" in err and ".svg" in err


@pytest.mark.parametrize("flags, message", [
    (("--spot-launch-failure", "1.5"), "probability"),
    (("--from-run", "x", "--calibrate"), "contradict"),
    (("--trace-markets", "0"), "at least 1"),
    (("--workers", "0"), "at least 1"),
])
def test_bad_flags_are_one_clear_error(corpus, flags, message):
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE, *flags, *FAST)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_help_lists_cost(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "cost" in capsys.readouterr().out
