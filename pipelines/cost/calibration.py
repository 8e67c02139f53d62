"""Measured rates of a job: CPU-seconds and tokens per input byte, and peak memory.

Two sources, and the report says which was used:

* **A sample** (:func:`calibrate`): sample units cut from the job's own inputs
  (``sampling``) run through the real unit path, ``pipelines.task.run_unit``, in this
  process, with the options a run would use (:func:`run_options`: the tokenizer backend
  the driver would choose, ``pipelines.run.choose_job_backend``, then
  ``pipelines.run.unit_options``; so fastokens' per-unit identity check is counted too),
  writing to a temporary local folder that is deleted afterwards. CPU time is the
  process's (every thread, so a tokenizer that runs its own threads is counted), minus
  the memory sampler's own thread, taken unit by unit. Each sample point has a large and
  a small unit cut at the same place (``sampling``): the two separate what a unit costs
  whatever its size (opening, its identity check's first document, writing its marker;
  the median over points) from what each byte costs, so that sample units of a few MiB
  do not inflate the rate of real units of hundreds. Points stand for equal shares of
  the input, so rates are their means, not ratios of sums.
  Loading the tokenizer is timed apart, as a once-per-worker cost. Bad records are
  skipped, not fatal, and counted.
* **An earlier run record** (:func:`from_record`): ``_runs/<run-id>.json`` under the
  output prefix. Its worker time is ``unit_seconds`` (the sum of per-unit wall seconds
  in workers) when the record has it, else the run's seconds times its workers (an
  upper bound that includes start-up). A record is reused automatically only when it
  names the same tokenizer (``tokenizer_sha256``) and backend as this run would use and
  ran every unit itself; ``--from-run`` takes any record, saying what it could not check.
* **An earlier cost report** (:func:`from_report`): the JSON that ``tokenyard cost
  --json`` printed, given to ``--from-run``; its calibration is reused as it was, so that
  what-ifs (another trace, size, worker count) compare like with like. It must name the
  same tokenizer and backend.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage
from pipelines.config import JobConfig
from pipelines.cost.sampling import SamplePoint, sample_points
from pipelines.errors import ConfigError, StorageNotFoundError
from pipelines.records import Plan, UnitOptions

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_BYTES = 16 * 2**20
#: per-unit work besides tokenizing: marker check, shard and marker PUTs on S3 (a few
#: round trips); not measured by a local sample, so added to every unit
UNIT_OVERHEAD_SECONDS = 0.5
#: the memory sampler's period
RSS_SAMPLE_SECONDS = 0.02


@dataclass(frozen=True)
class Rates:
    """What one worker core does with the job's input."""

    #: "sample" or "run record"
    source: str
    description: str
    #: CPU-seconds per byte of plan input, per-unit costs excluded
    cpu_seconds_per_byte: float
    tokens_per_byte: float
    #: per unit, added to its work (S3 round trips of the marker and shards)
    unit_overhead_seconds: float
    #: the calibrating process's peak RSS while units ran; None from a record
    peak_rss_bytes: int | None
    tokenizer_sha256: str
    backend: str | None
    #: what was measured
    measured_bytes: float
    measured_tokens: int
    measured_cpu_seconds: float
    measured_wall_seconds: float
    measured_units: int
    rejected: int
    tokenizer_load_seconds: float | None = None
    run_id: str | None = None
    notes: tuple[str, ...] = ()
    #: why the run would use this backend (the driver's words)
    backend_reason: str | None = None
    #: CPU-seconds a unit costs whatever its size, measured (added to every unit)
    unit_fixed_seconds: float = 0.0

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.tokens_per_byte / self.cpu_seconds_per_byte

    @property
    def bytes_per_token(self) -> float:
        return 1 / self.tokens_per_byte

    def scaled(self, *, cpu: float = 1.0, tokens: float = 1.0,
               overhead: float = 1.0) -> "Rates":
        """A what-if copy: slower or faster CPU, more or fewer tokens per byte."""
        return dataclasses.replace(self, cpu_seconds_per_byte=self.cpu_seconds_per_byte * cpu,
                                   tokens_per_byte=self.tokens_per_byte * tokens,
                                   unit_overhead_seconds=self.unit_overhead_seconds * overhead)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "description": self.description,
            "run_id": self.run_id,
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "tokenizer_sha256": self.tokenizer_sha256,
            "tokens_per_cpu_second": round(self.tokens_per_cpu_second, 1),
            "bytes_per_token": round(self.bytes_per_token, 6),
            "cpu_seconds_per_gb": round(self.cpu_seconds_per_byte * 1e9, 6),
            "unit_overhead_seconds": self.unit_overhead_seconds,
            "unit_fixed_seconds": round(self.unit_fixed_seconds, 6),
            "peak_rss_bytes": self.peak_rss_bytes,
            "tokenizer_load_seconds": None if self.tokenizer_load_seconds is None
            else round(self.tokenizer_load_seconds, 3),
            "measured": {"input_bytes": round(self.measured_bytes),
                         "tokens": self.measured_tokens,
                         "cpu_seconds": round(self.measured_cpu_seconds, 3),
                         "wall_seconds": round(self.measured_wall_seconds, 3),
                         "units": self.measured_units, "rejected": self.rejected},
            "notes": list(self.notes),
        }


def run_options(job: JobConfig, plan: Plan, storage_opts: dict) -> tuple[UnitOptions, str]:
    """The unit options a run of ``job`` would use, and why its backend was chosen."""
    from pipelines.run import choose_job_backend, unit_options

    choice = choose_job_backend(job, plan, storage_opts)
    return unit_options(job, plan, storage_opts, choice.backend), choice.reason


class _PeakRSS:
    """Samples this process's RSS from a thread; keeps the peak and its own CPU time."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process(os.getpid())
        self.peak = self._process.memory_info().rss
        self.own_cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cost-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            self.peak = max(self.peak, self._process.memory_info().rss)
        self.own_cpu_seconds = time.thread_time()

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def calibrate(plan: Plan, options: UnitOptions, *,
              sample_bytes: int = DEFAULT_SAMPLE_BYTES) -> Rates:
    """Run a deterministic sample of the plan's inputs through ``run_unit`` here."""
    from pipelines import worker_env
    from pipelines.task import run_unit, warm_up

    with tempfile.TemporaryDirectory(prefix="tokenyard-cost-") as tmp:
        staging = Path(tmp) / "staging"
        staging.mkdir()
        points = sample_points(plan, sample_bytes, staging, options.storage_options,
                               options.text_field)
        opts = dataclasses.replace(options, output_uri=str(Path(tmp) / "out"), on_error="skip")
        worker_env.apply()  # one thread per tokenizer, as in a worker
        c0 = time.process_time()
        warm_up(opts)  # loaded once per worker, not per unit
        load = time.process_time() - c0
        tokens = rejected = 0
        seconds: dict[int, float] = {}  # unit index -> CPU-seconds
        unit_tokens: dict[int, int] = {}
        with _PeakRSS() as rss:
            w0 = time.perf_counter()
            for sample in (u for p in points for u in p.units()):
                c0 = time.process_time()
                result = run_unit(opts, sample.unit)
                seconds[sample.unit.index] = time.process_time() - c0
                unit_tokens[sample.unit.index] = result.tokens
                tokens += result.tokens
                rejected += result.rejected
            wall = time.perf_counter() - w0
        raw = sum(seconds.values())
        cpu = max(raw - rss.own_cpu_seconds, 1e-9)
        seconds = {k: v * cpu / raw for k, v in seconds.items()} if raw > 0 else seconds
    measured = sum(u.plan_bytes for p in points for u in p.units())
    if tokens == 0 or measured <= 0:
        raise ConfigError(
            f"the calibration sample ({len(seconds)} unit(s), {measured:.0f} input bytes) "
            f"gave no tokens ({rejected} records rejected), so no rate can be measured.",
            hint="Check the job's input (tokenyard plan) and text_field; or give "
                 "--from-run with an earlier run of the same job.")
    fixed = fixed_cost(points, seconds)
    weights = [p.weight for p in points]
    per_byte = _mean([max(seconds[p.unit.unit.index] - fixed, 0.0) / p.unit.plan_bytes
                      for p in points], weights)
    per_token = _mean([unit_tokens[p.unit.unit.index] / p.unit.plan_bytes for p in points],
                      weights)
    return Rates(
        source="sample",
        description=_describe(points, plan, measured),
        cpu_seconds_per_byte=max(per_byte, 1e-15), tokens_per_byte=per_token,
        unit_fixed_seconds=fixed,
        unit_overhead_seconds=UNIT_OVERHEAD_SECONDS, peak_rss_bytes=rss.peak,
        tokenizer_sha256=plan.tokenizer["sha256"], backend=options.backend,
        measured_bytes=measured, measured_tokens=tokens, measured_cpu_seconds=cpu,
        measured_wall_seconds=wall, measured_units=len(seconds), rejected=rejected,
        tokenizer_load_seconds=load)


def _mean(values: list[float], weights: list[float]) -> float:
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


def fixed_cost(points: list[SamplePoint], seconds: dict[int, float]) -> float:
    """What a unit costs whatever its size: for each point with a small unit, the small
    unit's time less its bytes at the point's marginal rate; the median, never below 0."""
    found = []
    for p in points:
        if p.small is None or p.unit.plan_bytes <= p.small.plan_bytes:
            continue
        big, small = seconds[p.unit.unit.index], seconds[p.small.unit.index]
        rate = (big - small) / (p.unit.plan_bytes - p.small.plan_bytes)
        if rate > 0:
            found.append(max(0.0, small - rate * p.small.plan_bytes))
    return float(statistics.median(found)) if found else 0.0


def _describe(points: list[SamplePoint], plan: Plan, measured: float) -> str:
    whole = all(p.small is None for p in points) and plan.input_bytes <= measured + 1
    what = ("every unit of the job" if whole
            else f"{len(points)} sample points spread over the input, each a unit and a "
                 "small one")
    return (f"{what} ({measured / 2**20:.1f} MiB of {plan.input_bytes / 2**20:.1f} MiB) run "
            "through run_unit in this process")


# -- run records ---------------------------------------------------------------------


def run_records(output_uri: str, storage_opts: dict) -> list[tuple[str, dict]]:
    """``(run id, record)`` of every readable run record, newest first."""
    prefix = storage.join(output_uri.rstrip("/"), "_runs")
    try:
        names = [n for n in storage.list_names(prefix, storage_opts) if n.endswith(".json")]
    except StorageNotFoundError:
        return []
    out = []
    for name in names:
        try:
            record = json.loads(storage.read_bytes(storage.join(prefix, name), storage_opts))
        except (StorageNotFoundError, ValueError):
            continue
        if isinstance(record, dict):
            out.append((name.removesuffix(".json"), record))
    return sorted(out, key=lambda r: (str(r[1].get("finished_utc", "")), r[0]), reverse=True)


def _reusable(record: dict, plan: Plan, backend: str) -> str | None:
    """Why ``record`` cannot stand for this run automatically, or None if it can."""
    if record.get("tokenizer_sha256") != plan.tokenizer["sha256"]:
        return "it does not name this run's tokenizer (tokenizer_sha256)"
    if record.get("backend") != backend:
        return f"its backend {record.get('backend')!r} is not this run's ({backend!r})"
    if record.get("units_skipped", 0):
        return "it resumed a run, so its time does not cover all of its tokens"
    if not record.get("unit_seconds"):
        return "it has no unit_seconds"
    return None


def auto_record(output_uri: str, storage_opts: dict, plan: Plan,
                backend: str) -> tuple[str, dict] | None:
    """The newest record that can stand for this run without asking."""
    for run_id, record in run_records(output_uri, storage_opts):
        if _reusable(record, plan, backend) is None:
            return run_id, record
    return None


def find_record(ref: str, output_uri: str, storage_opts: dict) -> tuple[str, dict]:
    """``--from-run REF``: a run id under the output prefix, or a record file's path."""
    records = dict(run_records(output_uri, storage_opts))
    if ref in records:
        return ref, records[ref]
    try:
        raw = storage.read_bytes(ref, storage_opts)
    except StorageNotFoundError:
        known = ", ".join(list(records)[:5]) or "none"
        raise ConfigError(f"--from-run {ref}: no such run record (run ids under "
                          f"{output_uri}/_runs: {known}).",
                          hint="Give a run id from that list, or the path of a run record "
                               "file.") from None
    try:
        record = json.loads(raw)
    except ValueError as err:
        raise ConfigError(f"--from-run {ref} is not a JSON run record ({err}).") from None
    if not isinstance(record, dict):
        raise ConfigError(f"--from-run {ref} is not a JSON object.")
    return str(record.get("run_id") or Path(ref).stem), record


def is_cost_report(data: dict) -> bool:
    return isinstance(data.get("calibration"), dict) and "cpu_seconds" in data


def from_report(ref: str, report: dict, plan: Plan, options: UnitOptions) -> Rates:
    """The calibration of an earlier ``tokenyard cost --json`` report."""
    c = report["calibration"]
    if c.get("tokenizer_sha256") != plan.tokenizer["sha256"]:
        raise ConfigError(f"--from-run {ref} was calibrated with another tokenizer (sha256 "
                          f"{str(c.get('tokenizer_sha256'))[:12]}, this job's is "
                          f"{plan.tokenizer['sha256'][:12]}); its rates do not apply.",
                          hint="Leave out --from-run to calibrate on a sample instead.")
    if c.get("backend") != options.backend:
        raise ConfigError(f"--from-run {ref} was calibrated with the {c.get('backend')!r} "
                          f"tokenizer backend, this run would use {options.backend!r}; its "
                          "rates do not apply.",
                          hint="Leave out --from-run to calibrate on a sample instead.")
    try:
        m = c["measured"]
        return Rates(
            source="cost report",
            description=f"the calibration of {ref} ({c['source']}: {c['description']})",
            cpu_seconds_per_byte=float(c["cpu_seconds_per_gb"]) / 1e9,
            tokens_per_byte=1 / float(c["bytes_per_token"]),
            unit_overhead_seconds=float(c["unit_overhead_seconds"]),
            unit_fixed_seconds=float(c.get("unit_fixed_seconds") or 0.0),
            peak_rss_bytes=c.get("peak_rss_bytes"), tokenizer_sha256=c["tokenizer_sha256"],
            backend=c["backend"], measured_bytes=float(m["input_bytes"]),
            measured_tokens=int(m["tokens"]), measured_cpu_seconds=float(m["cpu_seconds"]),
            measured_wall_seconds=float(m["wall_seconds"]), measured_units=int(m["units"]),
            rejected=int(m["rejected"]), tokenizer_load_seconds=c.get("tokenizer_load_seconds"),
            run_id=c.get("run_id"), notes=tuple(c.get("notes") or ()),
            backend_reason=c.get("backend_reason"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise ConfigError(f"--from-run {ref}: the cost report's calibration is incomplete "
                          f"({err}).") from None


def from_record(run_id: str, record: dict, plan: Plan, options: UnitOptions, *,
                explicit: bool) -> Rates:
    """The rates of an earlier run, from its record."""
    backend = options.backend
    notes = []
    why = _reusable(record, plan, backend)
    if why is not None and not explicit:
        raise ValueError(why)
    if record.get("tokenizer_sha256") is None:
        notes.append("the record does not name its tokenizer; assumed to be this run's")
    elif record["tokenizer_sha256"] != plan.tokenizer["sha256"]:
        raise ConfigError(f"run {run_id} used another tokenizer (sha256 "
                          f"{str(record['tokenizer_sha256'])[:12]}, this job's is "
                          f"{plan.tokenizer['sha256'][:12]}); its rates do not apply.",
                          hint="Leave out --from-run to calibrate on a sample instead.")
    if "backend" not in record:
        notes.append("the record does not name its tokenizer backend; assumed to be this run's")
    elif record["backend"] != backend:
        raise ConfigError(f"run {run_id} used the {record['backend']!r} tokenizer backend, "
                          f"this run would use {backend!r}; its rates do not apply.",
                          hint="Leave out --from-run to calibrate on a sample instead.")
    if record.get("units_skipped", 0):
        raise ConfigError(f"run {run_id} resumed an earlier run ({record['units_skipped']} "
                          "units were done before it), so its time does not cover its "
                          "tokens.", hint="Use a record of a run that ran every unit.")
    try:
        tokens = int(record["tokens"])
        seconds = float(record["seconds"])
        input_bytes = float(record["input_mb_per_s"]) * seconds * 1e6
        units = int(record.get("units_run") or 0)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"run record {run_id} lacks tokens, seconds or input_mb_per_s."
                          ) from None
    unit_seconds = record.get("unit_seconds")
    if unit_seconds:
        worker_seconds = float(unit_seconds)
        how = "unit_seconds (per-unit wall seconds in workers)"
    elif record.get("workers"):
        worker_seconds = seconds * int(record["workers"])
        how = (f"seconds x workers ({seconds:.1f} s x {record['workers']}), an upper bound "
               "that includes start-up and commit")
        notes.append("the record has no unit_seconds: worker time is the run's seconds x "
                     "its workers")
    else:
        raise ConfigError(f"run record {run_id} has neither unit_seconds nor a worker count, "
                          "so the time its units took is unknown.",
                          hint="Leave out --from-run to calibrate on a sample instead.")
    if tokens <= 0 or input_bytes <= 0 or worker_seconds <= 0:
        raise ConfigError(f"run record {run_id} has no tokens, input or time to measure a "
                          "rate from.")
    # the record's unit time includes the per-unit overhead the model adds back
    work = max(worker_seconds - units * UNIT_OVERHEAD_SECONDS, worker_seconds / 2)
    return Rates(
        source="run record",
        description=f"run {run_id} ({record.get('engine', '?')} engine, "
                    f"{record.get('finished_utc', '?')}): worker time from {how}",
        cpu_seconds_per_byte=work / input_bytes, tokens_per_byte=tokens / input_bytes,
        unit_overhead_seconds=UNIT_OVERHEAD_SECONDS, peak_rss_bytes=None,
        tokenizer_sha256=str(record.get("tokenizer_sha256") or plan.tokenizer["sha256"]),
        backend=record.get("backend", backend), measured_bytes=input_bytes,
        measured_tokens=tokens, measured_cpu_seconds=worker_seconds,
        measured_wall_seconds=seconds, measured_units=units, rejected=0, run_id=run_id,
        notes=tuple(notes))
