"""What every engine shares: one scheduling loop, the retry rule, the outcome of a run.

An engine is constructed as ``Engine(config, progress, job_name=..., **extra)``, used as
a context manager (which starts and stops its workers), and its ``run(options, units)``
returns a :class:`RunOutcome`. ``run`` is the loop below, the same for every engine; an
engine supplies only how to reach its workers:

==========================  =============================================================
``_in_flight_limit()``      how many units may be submitted and not yet finished
``_submit(options, unit,    hand ``task.run_unit(options, unit)`` to the workers; returns
attempt)``                  a handle (a future)
``_wait(handles)``          block until at least one handle has finished; return those
``_result(handle, unit)``   the unit's result, or raise the unit's error
``_cancel(handles)``        take back every unit that has not started; return their
                            handles (those units will never run)
``_recover()``              only for engines whose ``_submit`` or ``_result`` raise
                            :class:`InFlightLost`: make the workers usable again
``_abort(handles)``         the loop itself was interrupted (Ctrl-C): stop what runs
==========================  =============================================================

The loop, in words:

* Units are submitted in plan order, never more than ``_in_flight_limit()`` at a time.
* Each finished unit is reported as it finishes: its result to ``progress.unit_done``,
  once per unit.
* A unit that failed with a transient error runs again, up to ``max_attempts``, each
  retry reported to ``progress.unit_retry`` and counted in ``RunOutcome.retries``; but
  :data:`~pipelines.engines.limits.MAX_CONSECUTIVE_TRANSIENT` transient failures in a
  row with no unit finishing in between mean storage is down, not flaky: the run stops.
* Any other failure (bad input, a missing tokenizer, a transient one out of attempts)
  is the unit's failure and stops the run: nothing is submitted any more, the engine
  cancels every unit it has not started, and the loop waits for the units running,
  recording their results and failures. Nothing is retried or counted after the stop.
* An engine that loses every unit in flight at once (a process pool whose worker died)
  says so by raising :class:`InFlightLost` from ``_result`` (or from ``_submit``, when
  it finds out there): those units run again once ``_recover`` made the workers usable,
  without counting an attempt (losing a worker is not the unit's failure, as with
  Dask's and Spark's own reruns), or fail with a transient
  :class:`~pipelines.errors.WorkersLostError` when the engine gives up.

Engines hold no pipeline logic: ``task.run_unit`` is all their workers run.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.engines.limits import MAX_CONSECUTIVE_TRANSIENT
from pipelines.errors import WorkersLostError
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, UnitResult, WorkUnit

if TYPE_CHECKING:
    from pipelines.config import EngineConfig

log = logging.getLogger(__name__)

#: logged (INFO) once, when a failure stops a run: unit, error, units cancelled, running
STOP_LOG = ("unit %s failed for good (%s): the run stops; %d unit(s) not started were "
            "cancelled, waiting for the %d running")

#: an engine's handle on a submitted unit (a future of its backend)
Handle = Any


def retryable(error: BaseException) -> bool:
    """Transient errors are worth another attempt; everything else is final."""
    return bool(getattr(error, "transient", False))


@dataclass
class RunOutcome:
    results: dict[int, UnitResult] = field(default_factory=dict)
    failures: dict[int, BaseException] = field(default_factory=dict)
    retries: int = 0


@dataclass
class Attempts:
    """Counts attempts per unit and decides what to do with a failure.

    Counts last as long as the engine (a second run of the same engine numbers its
    attempts on, so that Dask task keys stay unique); the run of consecutive transient
    failures is the current run's.
    """

    max_attempts: int
    counts: dict[int, int] = field(default_factory=dict)
    consecutive_transient: int = 0
    max_consecutive_transient: int = MAX_CONSECUTIVE_TRANSIENT

    def new_run(self) -> None:
        self.consecutive_transient = 0

    def started(self, index: int) -> int:
        self.counts[index] = self.counts.get(index, 0) + 1
        return self.counts[index]

    def succeeded(self) -> None:
        self.consecutive_transient = 0

    def should_retry(self, index: int, error: BaseException) -> bool:
        if not retryable(error):
            return False
        self.consecutive_transient += 1
        return (self.counts.get(index, 0) < self.max_attempts
                and self.consecutive_transient < self.max_consecutive_transient)


class InFlightLost(Exception):
    """Raised by an engine's ``_result`` or ``_submit``: this unit was lost with every
    unit in flight (the workers running them are gone), through no fault of its own."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class _Pending:
    """A unit waiting to be submitted; ``attempt`` is set when it runs again after a
    recovery (the same attempt, not a new one)."""

    unit: WorkUnit
    attempt: int | None = None


@dataclass(frozen=True)
class _Running:
    unit: WorkUnit
    attempt: int


@dataclass
class _Run:
    """The state of one ``run``."""

    options: UnitOptions
    queue: deque[_Pending]
    running: dict[Handle, _Running] = field(default_factory=dict)
    outcome: RunOutcome = field(default_factory=RunOutcome)
    #: a failure stopped the run: nothing is submitted or retried any more
    stopping: bool = False


class Engine:
    """The scheduling loop over an engine's workers; see the module docstring."""

    name = "engine"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "") -> None:
        self.config = config
        self.progress = progress
        self.job_name = job_name
        self.attempts = Attempts(config.max_attempts)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- what an engine supplies -------------------------------------------------------

    def _in_flight_limit(self) -> int:
        raise NotImplementedError

    def _submit(self, options: UnitOptions, unit: WorkUnit, attempt: int) -> Handle:
        raise NotImplementedError

    def _wait(self, handles: Collection[Handle]) -> Iterable[Handle]:
        raise NotImplementedError

    def _result(self, handle: Handle, unit: WorkUnit) -> UnitResult:
        raise NotImplementedError

    def _cancel(self, handles: Collection[Handle]) -> Collection[Handle]:
        raise NotImplementedError

    def _recover(self) -> str | None:
        """Make the workers usable after :class:`InFlightLost`; None once done, else why
        the engine gives up."""
        return "this engine cannot recover lost workers"

    def _abort(self, handles: Collection[Handle]) -> None:
        """The loop was interrupted: stop what runs, as far as the engine can."""

    # -- the loop ----------------------------------------------------------------------

    def run(self, options: UnitOptions, units: list[WorkUnit]) -> RunOutcome:
        """Run every unit once (retrying transient failures); see the module docstring."""
        run = _Run(options, queue=deque(_Pending(u) for u in units))
        self.attempts.new_run()
        try:
            while run.running or (run.queue and not run.stopping):
                lost = self._fill(run)
                if lost is None:
                    lost = self._collect(run)
                if lost:
                    self._lost(run, lost)
        except BaseException:
            self._abort(list(run.running))
            raise
        return run.outcome

    def _fill(self, run: _Run) -> list[_Running] | None:
        """Submit units up to the engine's bound; the unit being submitted when the
        engine lost its workers, if it did."""
        if run.stopping:
            return None
        limit = self._in_flight_limit()
        while run.queue and len(run.running) < limit:
            item = run.queue.popleft()
            attempt = item.attempt or self.attempts.started(item.unit.index)
            try:
                handle = self._submit(run.options, item.unit, attempt)
            except InFlightLost:
                return [_Running(item.unit, attempt)]
            run.running[handle] = _Running(item.unit, attempt)
        return None

    def _collect(self, run: _Run) -> list[_Running]:
        """Wait for units to finish and report each, a result or a failure under the retry
        rule; the units lost with their workers."""
        lost: list[_Running] = []
        finished = [(h, run.running.pop(h)) for h in self._wait(list(run.running))]
        for handle, job in finished:
            unit = job.unit
            try:
                result = self._result(handle, unit)
            except InFlightLost:
                lost.append(job)
                continue
            except Exception as err:
                if not run.stopping and self.attempts.should_retry(unit.index, err):
                    run.outcome.retries += 1
                    self.progress.unit_retry(unit.index, self.attempts.counts[unit.index], err)
                    run.queue.append(_Pending(unit))
                    continue
                run.outcome.failures[unit.index] = err
                if not run.stopping:
                    self._stop(run, unit, err)
                continue
            self.attempts.succeeded()
            run.outcome.results[unit.index] = result
            self.progress.unit_done(result)
        return lost

    def _stop(self, run: _Run, unit: WorkUnit, error: BaseException) -> None:
        """A failure stops the run: take back the units not started, keep the rest."""
        run.stopping = True
        cancelled = list(self._cancel(list(run.running))) if run.running else []
        for handle in cancelled:
            run.running.pop(handle, None)
        log.info(STOP_LOG, unit.name, type(error).__name__, len(cancelled), len(run.running))

    def _lost(self, run: _Run, lost: list[_Running]) -> None:
        """Units lost with their workers (and so every unit in flight): run them again
        once the engine recovered, or fail them and stop."""
        in_flight = lost + list(run.running.values())
        run.running.clear()
        reason = self._recover()
        if reason is not None:
            # transient, like a lost Dask worker: finished units are kept, a rerun resumes
            for job in in_flight:
                run.outcome.failures[job.unit.index] = WorkersLostError(job.unit.name, reason)
            run.stopping = True
            return
        run.queue.extendleft(_Pending(job.unit, job.attempt) for job in reversed(in_flight))
