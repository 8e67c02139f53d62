"""``cost_job``: a job and a worker profile to a :class:`CostReport`. Writes nothing.

It plans the job as ``tokenyard plan`` does (lists inputs, reads the tokenizer), takes
rates from an earlier run record or calibrates on a sample (``calibration``), maps the
profile onto its pool (``capacity``), prices it (``pricing``), and runs the model
(``model``): the estimate for each capacity strategy and, when asked, the simulated
spread, the recommendation and the sensitivity table. Nothing is written under the
job's output prefix; calibration writes to a temporary folder it deletes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pipelines.config import JobConfig
from pipelines.cost import calibration, capacity, model, pricing
from pipelines.cost.calibration import Rates
from pipelines.cost.capacity import Fleet
from pipelines.cost.interruptions import HOURS_PER_MONTH, Trace, load_trace
from pipelines.cost.model import Settings, Summary
from pipelines.cost.pricing import PriceBook
from pipelines.cost.simulation import STRATEGIES, RunResult, Strategy
from pipelines.cost.workload import Workload, from_plan, unit_target
from pipelines.errors import ConfigError
from pipelines.kube.capacity.profiles import Profile, load_profile

if TYPE_CHECKING:
    from pipelines.cost.recommend import Recommendation
    from pipelines.cost.sensitivity import Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostOptions:
    """What the user asked for (the command line's flags)."""

    profile_path: str
    workers: int | None = None
    sample_bytes: int = calibration.DEFAULT_SAMPLE_BYTES
    #: a run id or record path; "auto": the newest matching record, if any; None: sample
    from_run: str | None = "auto"
    assume_input_bytes: int | None = None
    prices: str | None = None
    spot_prices: str | None = None
    simulate: int = 0
    trace: str | None = None
    markets: int = 1
    seed: int = 0
    handling: str = "graceful"
    launch_seconds: float = model.DEFAULT_LAUNCH_SECONDS
    spot_launch_failure: float = model.DEFAULT_SPOT_LAUNCH_FAILURE
    band_hours: float = HOURS_PER_MONTH
    recommend: bool = True
    sensitivity: bool = False


@dataclass(frozen=True)
class CostReport:
    job: JobConfig
    options: CostOptions
    profile: Profile
    rates: Rates
    workload: Workload
    prices: PriceBook
    fleet: Fleet
    settings: Settings
    estimate: dict[Strategy, RunResult]
    trace: Trace | None = None
    simulation: dict[Strategy, Summary] | None = None
    recommendation: Recommendation | None = None
    sensitivity: Table | None = None


def _rates(job: JobConfig, plan, options, storage_opts: dict, opts: CostOptions) -> Rates:
    output = job.output.uri.rstrip("/")
    backend = options.backend
    if opts.from_run not in (None, "auto"):
        run_id, record = calibration.find_record(opts.from_run, output, storage_opts)
        if calibration.is_cost_report(record):
            return calibration.from_report(opts.from_run, record, plan, options)
        return calibration.from_record(run_id, record, plan, options, explicit=True)
    if opts.from_run == "auto":
        found = calibration.auto_record(output, storage_opts, plan, backend)
        if found is not None:
            log.info("reusing the rates of run %s", found[0])
            return calibration.from_record(*found, plan, options, explicit=False)
    return calibration.calibrate(plan, options, sample_bytes=opts.sample_bytes)


def settings_of(opts: CostOptions, trace: Trace | None) -> Settings:
    if opts.handling not in ("graceful", "hard"):
        raise ConfigError(f"--interruption-handling must be graceful or hard, not "
                          f"{opts.handling!r}.")
    if not 0 <= opts.spot_launch_failure <= 1:
        raise ConfigError(f"--spot-launch-failure is a probability between 0 and 1, not "
                          f"{opts.spot_launch_failure}.")
    if opts.launch_seconds < 0:
        raise ConfigError(f"--launch-seconds cannot be negative ({opts.launch_seconds}).")
    if opts.markets < 1:
        raise ConfigError(f"--trace-markets must be at least 1 (got {opts.markets}).")
    if not opts.band_hours > 0:
        raise ConfigError(f"--band-hours must be positive (got {opts.band_hours}).")
    return Settings(launch_seconds=opts.launch_seconds,
                    handling=opts.handling,  # type: ignore[arg-type]
                    spot_launch_failure=opts.spot_launch_failure, trace=trace,
                    markets=opts.markets, seed=opts.seed, band_hours=opts.band_hours)


def _quiet(message: str) -> None:
    pass


def cost_job(job: JobConfig, opts: CostOptions,
             note: Callable[[str], None] = _quiet) -> CostReport:
    """Price ``job``; ``note`` hears what is going on before the slow steps."""
    from pipelines.run import plan_job, storage_of

    profile = load_profile(opts.profile_path)
    book = pricing.price_book(opts.prices, opts.spot_prices)
    # the profile's fit is checked before any input is read
    fleet = capacity.fleet(job, profile, book, workers=opts.workers, source=opts.profile_path)
    trace = load_trace(opts.trace) if opts.trace else None
    settings = settings_of(opts, trace)
    if opts.assume_input_bytes is not None and opts.assume_input_bytes <= 0:
        raise ConfigError(f"--assume-input-bytes must be positive (got {opts.assume_input_bytes}).")
    storage_opts = storage_of(job)
    note(f"tokenyard cost: planning {job.name} and measuring its rates...")
    plan = plan_job(job)
    options, backend_reason = calibration.run_options(job, plan, storage_opts)
    rates = dataclasses.replace(_rates(job, plan, options, storage_opts, opts),
                                backend_reason=backend_reason)
    workload = from_plan(plan, rates, unit_target(job, plan, opts.assume_input_bytes),
                         opts.assume_input_bytes)
    estimate = model.estimate(workload, fleet, settings)
    simulation = None
    recommendation = sensitivity = None
    if opts.simulate:
        note(f"simulating {opts.simulate} runs of {workload.units:,} units per strategy...")
        simulation = {s: model.simulate_runs(workload, fleet, settings, s, opts.simulate)[0]
                      for s in STRATEGIES}
        if opts.recommend:
            from pipelines.cost.recommend import recommend

            recommendation = recommend(job, profile, opts, book, workload, settings)
    if opts.sensitivity:
        from pipelines.cost.sensitivity import sensitivity as table

        sensitivity = table(job, profile, opts, book, workload, fleet, settings)
    return CostReport(job=job, options=opts, profile=profile, rates=rates, workload=workload,
                      prices=book, fleet=fleet, settings=settings, estimate=estimate,
                      trace=trace, simulation=simulation, recommendation=recommendation,
                      sensitivity=sensitivity)
