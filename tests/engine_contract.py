"""The contract every engine keeps: one class of tests, run for each engine.

In the style of fsspec's ``tests/abstract``: :class:`EngineContract` holds the tests and
a test module subclasses it once per engine, providing the ``new_engine`` fixture (a
function ``new_engine(progress, **config) -> engine`` for an engine with two workers).
The tests call the engine as the driver does (``with engine: engine.run(options,
units)``) over a plan of :data:`UNITS` units, one per input file.

Faults are real. The inputs are on S3 (moto's server on loopback) and the workers reach
it through :class:`~tests.faults.kit.FaultProxy`, whose rule (a :class:`Traffic`)
picks requests by path: it denies one unit its input (403 AccessDenied, a permanent
error), truncates responses (a transient error once s3fs's own retries are spent), or
holds units' requests (until the run stopped, or until the test lets them go). The
proxy also sees which units started: the first thing ``run_unit`` does is look for its
marker. When a failure stops a run the loop logs
:data:`~pipelines.engines.base.STOP_LOG`; :class:`StopWatch` turns that record into an
event for the rule.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading

import pytest

from pipelines.config import parse_job
from pipelines.engines import base
from pipelines.engines.limits import MAX_CONSECUTIVE_TRANSIENT
from pipelines.errors import StorageAccessError, TransientStorageError
from pipelines.plan import make_plan
from pipelines.records import Plan, UnitOptions, UnitResult
from pipelines.run import read_tokenizer, storage_of, unit_options
from pipelines.task import run_unit
from pipelines.testing.corpus import write_jsonl
from tests.faults.kit import FaultProxy
from tests.helpers import make_job

#: units of a plan: one input file of about ``FILE_BYTES`` each (``TARGET`` keeps two
#: files from sharing a unit and one file from being split)
UNITS = 12
FILE_BYTES = 40_000
TARGET = "48KiB"
#: every engine under contract runs two workers
WORKERS = 2
OUTPUT = "s3://out/ds"
#: the longest a rule holds a request (a bound for an engine that never stops; the
#: tests' own holds end in well under a second)
HOLD_S = 60.0

_MARKER = re.compile(r"/_units/(\d{6})\.json$")


class Recorder:
    """A Progress that records what an engine reports; ``retried`` is set at the first
    retry reported."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.retries: list[tuple[int, int, BaseException]] = []
        self.retried = threading.Event()

    def start(self, plan, pending, done) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def unit_done(self, result: UnitResult) -> None:
        self.done.append(result.index)

    def unit_retry(self, index: int, attempt: int, error: BaseException) -> None:
        self.retries.append((index, attempt, error))
        self.retried.set()

    def close(self) -> None:
        pass


class StopWatch(logging.Handler):
    """Sets ``stopped`` when the scheduling loop logs that a run stops."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stopped = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == base.STOP_LOG:
            self.stopped.set()


class Traffic:
    """A fault proxy rule: records the units that started, and leaves what a unit's
    input requests get to :meth:`input_request` (None: they go through)."""

    def __init__(self, inputs: dict[str, int]) -> None:
        #: proxy path of each input file -> its unit
        self.inputs = inputs
        self.lock = threading.Condition()
        self.started: set[int] = set()

    def __call__(self, method: str, path: str) -> str | None:
        marker = _MARKER.search(path)
        if marker and method in ("GET", "HEAD"):
            with self.lock:
                self.started.add(int(marker.group(1)))
        unit = self.inputs.get(path)
        return None if unit is None else self.input_request(method, unit)

    def input_request(self, method: str, unit: int) -> str | None:
        return None


class FlakyFirst(Traffic):
    """The first unit to read its input gets truncated responses until a retry is
    reported: its first attempt fails with a transient error."""

    def __init__(self, inputs: dict[str, int], retried: threading.Event) -> None:
        super().__init__(inputs)
        self.retried = retried
        self.unit: int | None = None

    def input_request(self, method: str, unit: int) -> str | None:
        with self.lock:
            if self.unit is None:
                self.unit = unit
        if unit == self.unit and method == "GET" and not self.retried.is_set():
            return "truncate"
        return None


class AllFlaky(Traffic):
    """Every input read is truncated: every attempt fails with a transient error."""

    def input_request(self, method: str, unit: int) -> str | None:
        return "truncate" if method == "GET" else None


class Held(Traffic):
    """Every input request waits until ``release`` is set; :meth:`wait_held` waits until
    that many units wait at their input."""

    def __init__(self, inputs: dict[str, int]) -> None:
        super().__init__(inputs)
        self.release = threading.Event()
        self.held: set[int] = set()

    def input_request(self, method: str, unit: int) -> str | None:
        with self.lock:
            self.held.add(unit)
            self.lock.notify_all()
        self.release.wait(HOLD_S)
        return None

    def wait_held(self, units: int) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.held) >= units, timeout=HOLD_S)


class DeniedFirst(Traffic):
    """The first unit to read its input is denied it (403, a permanent error), once
    another unit waits at its input, so that the stop finds units running. Every other
    unit's input requests wait until the run stopped, then go through, or with
    ``after_stop="truncate"`` fail transiently."""

    def __init__(self, inputs: dict[str, int], stopped: threading.Event,
                 after_stop: str | None = None) -> None:
        super().__init__(inputs)
        self.stopped = stopped
        self.after_stop = after_stop
        self.denied: int | None = None
        self.waiting: set[int] = set()

    def input_request(self, method: str, unit: int) -> str | None:
        with self.lock:
            if self.denied is None:
                self.denied = unit
            elif unit != self.denied:
                self.waiting.add(unit)
                self.lock.notify_all()
            if unit == self.denied:
                self.lock.wait_for(lambda: self.waiting, timeout=HOLD_S)
                return "denied"
        self.stopped.wait(HOLD_S)
        return self.after_stop if method == "GET" else None


@dataclasses.dataclass
class Staged:
    """A plan over inputs on the loopback S3, and unit options whose storage goes
    through ``proxy``."""

    plan: Plan
    options: UnitOptions
    proxy: FaultProxy
    #: proxy path of each input file -> its unit
    inputs: dict[str, int]

    @property
    def indexes(self) -> list[int]:
        return [u.index for u in self.plan.units]


def stage(s3, tokenizer_bytes: bytes, tmp_path) -> tuple[Plan, UnitOptions, dict]:
    """Upload the inputs and the tokenizer; plan. Returns the plan, unit options with
    direct storage, and each input's proxy path -> unit."""
    s3.bucket("raw")
    s3.bucket("out")
    for i in range(UNITS):
        path = tmp_path / "raw" / f"part-{i:02d}.jsonl"
        write_jsonl(path, FILE_BYTES, seed=i, id_prefix=f"p{i}")
        s3.put(f"s3://raw/in/{path.name}", path.read_bytes())
    s3.put("s3://raw/tokenizer.json", tokenizer_bytes)
    job = parse_job(make_job("s3://raw/in/", "s3://raw/tokenizer.json", OUTPUT,
                             **{"plan.target_unit_bytes": TARGET,
                                "storage.endpoint_url": s3.endpoint}))
    opts = storage_of(job)
    plan = make_plan(job, read_tokenizer(job, opts)[1], opts)
    assert len(plan.units) == UNITS
    inputs = {}
    for unit in plan.units:
        for part in unit.slices:
            inputs["/" + part.file.uri.removeprefix("s3://")] = unit.index
    return plan, unit_options(job, plan, opts, "hf"), inputs


def written(s3, prefix: str = OUTPUT) -> dict[str, bytes]:
    """The units' own output under a prefix: markers, shards, rejects."""
    return {k: v for k, v in s3.listing(prefix).items()
            if k.split("/", 1)[0] in ("_units", "shards", "rejects")}


class EngineContract:
    """Tests every engine passes. Subclasses provide the ``new_engine`` fixture."""

    @pytest.fixture
    def new_engine(self):
        raise NotImplementedError("a subclass provides new_engine(progress, **config)")

    @pytest.fixture(scope="class")
    @classmethod
    def references(cls) -> dict:
        """The units' output written in this process by plain ``run_unit`` calls, by
        plan fingerprint: what every engine must write, byte for byte."""
        return {}

    @pytest.fixture
    def staged(self, s3, tokenizer_bytes, tmp_path, references):
        plan, direct, inputs = stage(s3, tokenizer_bytes, tmp_path)
        if plan.fingerprint not in references:
            plain = dataclasses.replace(direct, output_uri="s3://out/plain")
            for unit in plan.units:
                run_unit(plain, unit)
            references[plan.fingerprint] = written(s3, "s3://out/plain")
        with FaultProxy(s3.endpoint, rate=0.0) as proxy:
            options = dataclasses.replace(
                direct, storage_options=dataclasses.replace(direct.storage_options,
                                                            endpoint_url=proxy.endpoint))
            yield Staged(plan, options, proxy, inputs)

    @pytest.fixture
    def stop_watch(self):
        watch = StopWatch()
        logger = logging.getLogger(base.__name__)
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(watch)
        yield watch
        logger.removeHandler(watch)
        logger.setLevel(level)

    @staticmethod
    def run(new_engine, staged: Staged, progress: Recorder, traffic: Traffic, **config):
        staged.proxy.rule = traffic
        with new_engine(progress, **config) as engine:
            return engine.run(staged.options, list(staged.plan.units))

    # -- the contract ------------------------------------------------------------------

    def test_every_unit_gives_the_bytes_of_a_plain_run_reported_once(
            self, new_engine, staged, s3, references):
        progress = Recorder()
        traffic = Traffic(staged.inputs)
        outcome = self.run(new_engine, staged, progress, traffic)

        assert sorted(outcome.results) == staged.indexes
        assert outcome.failures == {} and outcome.retries == 0
        assert sorted(progress.done) == staged.indexes  # each unit reported once
        assert progress.retries == []
        assert written(s3) == references[staged.plan.fingerprint]

    def test_a_transient_failure_is_retried(self, new_engine, staged, s3, references):
        progress = Recorder()
        traffic = FlakyFirst(staged.inputs, progress.retried)
        outcome = self.run(new_engine, staged, progress, traffic)

        assert sorted(outcome.results) == staged.indexes and outcome.failures == {}
        assert outcome.retries == 1
        [(index, attempt, error)] = progress.retries
        assert index == traffic.unit and attempt == 1
        assert isinstance(error, TransientStorageError)
        assert sorted(progress.done) == staged.indexes  # the retried unit once too
        assert written(s3) == references[staged.plan.fingerprint]

    def test_a_permanent_failure_stops_the_run_and_cancels_what_has_not_started(
            self, new_engine, staged, s3, stop_watch):
        progress = Recorder()
        traffic = DeniedFirst(staged.inputs, stop_watch.stopped)
        outcome = self.run(new_engine, staged, progress, traffic)

        assert stop_watch.stopped.is_set()
        assert list(outcome.failures) == [traffic.denied]
        assert isinstance(outcome.failures[traffic.denied], StorageAccessError)
        assert outcome.retries == 0 and progress.retries == []
        # the units running at the stop finished, one per worker at most ...
        assert 1 <= len(outcome.results) <= WORKERS
        assert sorted(progress.done) == sorted(outcome.results)
        # ... and no other unit ever started: nothing ran that the run did not report
        assert traffic.started == set(outcome.results) | {traffic.denied}
        assert {k.split("/")[1] for k in written(s3) if k.startswith("_units/")} == \
            {f"{i:06d}.json" for i in outcome.results}

    def test_retries_are_counted_only_while_the_run_goes_on(self, new_engine, staged,
                                                           stop_watch):
        progress = Recorder()
        traffic = DeniedFirst(staged.inputs, stop_watch.stopped, after_stop="truncate")
        outcome = self.run(new_engine, staged, progress, traffic)

        assert stop_watch.stopped.is_set()
        assert isinstance(outcome.failures.pop(traffic.denied), StorageAccessError)
        # the units running at the stop failed transiently after it: failures, no retries
        assert 1 <= len(outcome.failures) <= WORKERS
        assert all(isinstance(e, TransientStorageError) for e in outcome.failures.values())
        assert outcome.retries == 0 and progress.retries == []
        assert outcome.results == {} and progress.done == []
        assert traffic.started == set(outcome.failures) | {traffic.denied}

    def test_a_run_of_transient_failures_stops_the_run(self, new_engine, staged):
        progress = Recorder()
        traffic = AllFlaky(staged.inputs)
        outcome = self.run(new_engine, staged, progress, traffic,
                           max_attempts=MAX_CONSECUTIVE_TRANSIENT + 4)

        assert outcome.results == {} and progress.done == []
        assert outcome.retries == len(progress.retries) == MAX_CONSECUTIVE_TRANSIENT - 1
        assert outcome.failures
        assert all(isinstance(e, TransientStorageError) for e in outcome.failures.values())
        retried = {index for index, _, _ in progress.retries}
        # every unit that started failed, or was retried before the stop
        assert traffic.started <= set(outcome.failures) | retried
        assert len(traffic.started) < len(staged.indexes)
