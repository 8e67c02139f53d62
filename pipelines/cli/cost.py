"""``tokenyard cost``: what a run will cost and how long it takes, before it starts."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pipelines.cli.display import duration, human, human_bytes


def _size(text: str) -> int:
    from dask.utils import parse_bytes

    try:
        value = parse_bytes(text)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (write 5TB, 512GiB or "
                                         "1000000)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return int(value)


def register(sub) -> None:
    p = sub.add_parser(
        "cost", help="price a run before it starts: time, instance-hours, $ on spot and "
                     "on-demand; simulate spot interruptions",
        description="Price a run of JOB on Kubernetes with a worker profile: calibrate on "
                    "a sample of the job's own inputs (or an earlier run's record), map "
                    "the workers onto the profile's NodePool, and print wall time, "
                    "instance-hours, $ per run and $ per billion tokens for spot first "
                    "with on-demand fallback, on-demand only and spot only. Writes nothing "
                    "under the job's output.")
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--profile", required=True,
                   help="a worker profile under cluster_specs/dask/ or cluster_specs/spark/")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker pods (Dask workers or Spark executors); default: the "
                        "profile's count, or its maximum")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    calib = p.add_argument_group("calibration")
    calib.add_argument("--from-run", metavar="RUN",
                       help="use the rates of an earlier run: a run id under the output's "
                            "_runs/, a run record file, or the --json output of an earlier "
                            "tokenyard cost (default: the newest record of the same "
                            "tokenizer and backend, else a sample)")
    calib.add_argument("--calibrate", action="store_true",
                       help="always calibrate on a sample, even when a run record exists")
    calib.add_argument("--sample-bytes", type=_size, default=None, metavar="SIZE",
                       help="input to calibrate on (default 16MiB)")
    calib.add_argument("--assume-input-bytes", type=_size, metavar="SIZE",
                       help="price the job as if its input were this large, e.g. 5TB")
    prices = p.add_argument_group("prices")
    prices.add_argument("--prices", metavar="FILE",
                        help="on-demand prices: a JSON object {\"m6i.xlarge\": 0.192}, or "
                             "an AWS Price List offer file or get-products output for one "
                             "region (default: built-in us-east-1 table)")
    prices.add_argument("--spot-prices", metavar="FILE",
                        help="spot prices: a JSON object, or 'aws ec2 "
                             "describe-spot-price-history' output (default: estimated "
                             "from the Spot Instance Advisor)")
    sim = p.add_argument_group("simulation")
    sim.add_argument("--simulate", type=int, default=0, metavar="RUNS",
                     help="simulate RUNS runs with spot interruptions: p50/p90 time and "
                          "cost, rework, on-demand share, a recommended unit size and pool")
    sim.add_argument("--trace", metavar="FILE",
                     help="replay a measured preemption trace (format of "
                          "../shared/data/spot-traces) instead of Spot Advisor bands")
    sim.add_argument("--trace-markets", type=int, default=1, metavar="K",
                     help="replay the trace as K independent markets (default 1: every "
                          "spot node goes at once, the worst case)")
    sim.add_argument("--seed", type=int, default=0,
                     help="seed of the simulated runs (default 0): same seed, same runs")
    sim.add_argument("--interruption-handling", choices=("graceful", "hard"),
                     default="graceful",
                     help="graceful: workers retire on the 2-minute notice (the rendered "
                          "pods do); hard: units in flight are lost when the node goes")
    sim.add_argument("--launch-seconds", type=float, default=None, metavar="S",
                     help="NodeClaim created to pods running (default 70)")
    sim.add_argument("--spot-launch-failure", type=float, default=None, metavar="P",
                     help="chance a spot launch finds no capacity (default 0.05)")
    sim.add_argument("--band-hours", type=float, default=None, metavar="H",
                     help="read a Spot Advisor band as the chance of an interruption within "
                          "H hours of a node's life (default 730, a month)")
    sim.add_argument("--sensitivity", action="store_true",
                     help="rank the inputs by how much they move $ per billion tokens")
    sim.add_argument("--chart", metavar="PATH",
                     help="cost and time against worker count: .svg or .html (no "
                          "dependency) or .png (matplotlib)")
    p.set_defaults(handler=handle)


def options_from(args: argparse.Namespace):
    from pipelines.cost import calibration, model
    from pipelines.cost.interruptions import HOURS_PER_MONTH
    from pipelines.cost.job import CostOptions

    if args.from_run and args.calibrate:
        from pipelines.errors import ConfigError

        raise ConfigError("--from-run and --calibrate contradict each other; give one.")
    return CostOptions(
        profile_path=args.profile, workers=args.workers,
        sample_bytes=args.sample_bytes or calibration.DEFAULT_SAMPLE_BYTES,
        from_run=None if args.calibrate else (args.from_run or "auto"),
        assume_input_bytes=args.assume_input_bytes, prices=args.prices,
        spot_prices=args.spot_prices, simulate=max(0, args.simulate), trace=args.trace,
        markets=args.trace_markets, seed=args.seed, handling=args.interruption_handling,
        launch_seconds=(model.DEFAULT_LAUNCH_SECONDS if args.launch_seconds is None
                        else args.launch_seconds),
        spot_launch_failure=(model.DEFAULT_SPOT_LAUNCH_FAILURE
                             if args.spot_launch_failure is None else args.spot_launch_failure),
        band_hours=HOURS_PER_MONTH if args.band_hours is None else args.band_hours,
        sensitivity=args.sensitivity)


def handle(args: argparse.Namespace) -> int:
    from pipelines.config import load_job
    from pipelines.cost import report as report_mod
    from pipelines.cost.job import cost_job

    job = load_job(args.job)
    opts = options_from(args)
    report = cost_job(job, opts, note=lambda m: print(m, file=sys.stderr, flush=True))
    if args.chart:
        from pipelines.cost import chart

        points = chart.sweep(job, report.profile, report.prices, report.workload,
                             report.settings, report.fleet.pods, opts.simulate,
                             source=opts.profile_path)
        chart.write(points, args.chart, f"tokenyard cost: {job.name} on {opts.profile_path}")
    if args.json:
        data = report_mod.to_dict(report)
        if args.chart:
            data["chart"] = {"path": args.chart, "points": [
                {k: round(v, 4) if isinstance(v, float) else v
                 for k, v in dataclasses.asdict(p).items()} for p in points]}
        json.dump(data, sys.stdout, indent=1, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(text(report, report_mod.to_dict(report)))
    if args.chart:
        print(f"chart: {args.chart}")
    return 0


def _decimal(n: float) -> str:
    """Bytes as storage bills them (1 TB = 10^12 bytes), with the binary size."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({human_bytes(n)})"
    return human_bytes(n)


def _money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"


def text(report, data: dict) -> str:
    wl, f, rates = report.workload, report.fleet, report.rates
    lines = [f"tokenyard cost: job {report.job.name}, profile {report.options.profile_path}, "
             f"{f.pods} workers", ""]
    if wl.actual_input_bytes is not None:
        lines.append(f"input      {_decimal(wl.input_bytes)} assumed (the job has "
                     f"{_decimal(wl.actual_input_bytes)}): {wl.units:,} units")
    else:
        lines.append(f"input      {_decimal(wl.input_bytes)} in {wl.units:,} units")
    peak = f", peak RSS {human_bytes(rates.peak_rss_bytes)}" if rates.peak_rss_bytes else ""
    backend = f", backend {rates.backend}" if rates.backend else ""
    lines.append(f"rates      {human(rates.tokens_per_cpu_second)} tokens per CPU-second, "
                 f"{rates.bytes_per_token:.2f} input bytes per token{peak}{backend}")
    lines.append(f"           from {rates.source}: {rates.description}")
    lines.append(f"work       ~{human(wl.tokens)} tokens, {wl.cpu_seconds / 3600:,.1f} "
                 f"CPU-hours ({wl.units:,} units of "
                 f"~{human_bytes(wl.input_bytes / max(wl.units, 1))})")
    lines.append(f"capacity   {f.pool.name} pool: {len(f.offers)} instance types hold a worker "
                 f"({f.worker.cpu_request_m / 1000:g} CPU, {human_bytes(f.worker.memory_bytes)}"
                 + (f", {f.slots_per_pod} task slots" if f.slots_per_pod > 1 else "") + ")")
    sizes = " + ".join(str(c.pods) for c in f.claims[:6]) + (" + ..." if len(f.claims) > 6 else "")
    lines.append(f"           {f.pods} workers in {len(f.claims)} NodeClaim(s): {sizes}")
    for c in data["capacity"]["node_claims"]:
        mix = ", ".join(c["spot_mix"][:5])
        lines.append(f"           {c['workers']}-worker node: on-demand {c['on_demand']} "
                     f"(${c['on_demand_usd_per_hour']:.3f}/h); "
                     f"spot ~${c['spot_usd_per_hour']:.3f}/h "
                     f"({mix})")
    lines.append(f"           stable: {', '.join(data['capacity']['stable_nodes'])} on-demand for "
                 f"the {' and '.join(f.stable_pods)}")
    lines += ["", f"{'strategy':<32}{'wall':>11}{'instance-h':>12}{'$ per run':>12}"
                  f"{'$ per 1B tokens':>17}"]
    for key, name in (("spot-first", "spot first, on-demand fallback"),
                      ("on-demand", "on-demand only"), ("spot", "spot only")):
        s = data["strategies"][key]
        lines.append(f"{name:<32}{duration(s['wall_seconds']):>11}{s['instance_hours']:>12.2f}"
                     f"{_money(s['usd']):>12}{_money(s['usd_per_billion_tokens']):>17}")
    lines.append("(no interruptions, spot capacity always found; --simulate RUNS for the spread)"
                 if report.simulation is None else "(above: no interruptions)")
    if report.simulation is not None:
        sim = data["simulation"]
        src = (f"trace {report.trace.name}" if report.trace else "Spot Advisor bands")
        lines += ["", f"simulation: {sim['strategies']['spot-first']['runs']} runs, seed "
                      f"{sim['seed']}, {src}, {sim['handling']} interruption handling",
                  f"{'strategy':<32}{'p50 wall':>10}{'p90 wall':>10}{'p50 $':>10}{'p90 $':>10}"
                  f"{'interrupts':>11}{'rework CPU-h':>14}{'on-demand':>11}{'failed':>8}"]
        for key, name in (("spot-first", "spot first, on-demand fallback"),
                          ("on-demand", "on-demand only"), ("spot", "spot only")):
            s = sim["strategies"][key]
            lines.append(f"{name:<32}{duration(s['p50_wall_seconds']):>10}"
                         f"{duration(s['p90_wall_seconds']):>10}{_money(s['p50_usd']):>10}"
                         f"{_money(s['p90_usd']):>10}{s['interruptions']:>11.2f}"
                         f"{s['rework_cpu_seconds'] / 3600:>14.2f}"
                         f"{s['on_demand_share']:>11.1%}{s['failed_runs']:>8}")
        rec = report.recommendation
        if rec is not None:
            lines += ["", "recommended (spot first, cheapest at p90):"]
            lines.append(f"  unit size   plan.target_unit_bytes: "
                         f"{human_bytes(rec.unit_size.target_unit_bytes)} "
                         f"({rec.unit_size.units:,} units, p90 {_money(rec.unit_size.p90_usd)}, "
                         f"p90 wall {duration(rec.unit_size.p90_wall_seconds)})")
            for u in rec.unit_sizes:
                mark = "*" if u is rec.unit_size else " "
                lines.append(f"   {mark} {human_bytes(u.target_unit_bytes):>10}: "
                             f"{u.units:>8,} units, p90 {_money(u.p90_usd):>9}, "
                             f"p90 wall {duration(u.p90_wall_seconds):>9}, "
                             f"rework {u.rework_cpu_seconds / 3600:.2f} CPU-h")
            if rec.pool is not None:
                need = (f"needs {human_bytes(rec.memory_needed_bytes)} per worker"
                        if rec.memory_needed_bytes else "")
                lines.append(f"  pool        {rec.pool.pool} (cluster_specs/dask/"
                             f"{rec.pool.pool}-1cpu.yaml), p90 "
                             f"{_money(rec.pool.p90_usd or 0)}; {need}")
                for p in rec.pools:
                    what = (f"p90 {_money(p.p90_usd or 0)}" if p.fits else
                            f"too little memory ({human_bytes(p.worker_memory_bytes)} per worker)")
                    lines.append(f"    {p.pool:>8}: {what}")
    if report.sensitivity is not None:
        t = report.sensitivity
        lines += ["", f"sensitivity ({t.runs} runs each, spot first; base "
                      f"{_money(t.base.usd_per_billion_tokens)} per 1B tokens, "
                      f"{_money(t.base.mean_usd)} per run)",
                  f"{'input':<26}{'low':>12}{'high':>12}{'$/1B low':>11}{'$/1B high':>11}"
                  f"{'wall low':>11}{'wall high':>11}{'swing':>8}"]
        for r in t.rows:
            lines.append(f"{r.name:<26}{r.low_label:>12}{r.high_label:>12}"
                         f"{_money(r.low.usd_per_billion_tokens):>11}"
                         f"{_money(r.high.usd_per_billion_tokens):>11}"
                         f"{duration(r.low.p50_wall_seconds):>11}"
                         f"{duration(r.high.p50_wall_seconds):>11}{r.swing:>8.1%}")
    lines += ["", "assumptions:"]
    for key, value in data["assumptions"].items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"
