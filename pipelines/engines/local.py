"""Engine ``local``: a pool of worker processes on this machine, one per core.

Processes are spawned, not forked, so no tokenizer thread pool is ever forked. A worker
process that dies (killed, out of memory) breaks the pool; the engine starts a new pool
and runs the units that were in flight again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from pipelines.config import EngineConfig
from pipelines.engines.base import Attempts, RunOutcome
from pipelines.engines.limits import LOCAL_POOL_RESTARTS
from pipelines.errors import WorkersLostError
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, WorkUnit
from pipelines.task import run_unit

log = logging.getLogger(__name__)

#: times the pool may break (a worker killed) before the run gives up
MAX_POOL_RESTARTS = LOCAL_POOL_RESTARTS


def _init_worker() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"


class LocalEngine:
    name = "local"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "") -> None:
        self.workers = config.workers or os.cpu_count() or 1
        self.attempts = Attempts(config.max_attempts)
        self.progress = progress
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker)

    def __enter__(self) -> "LocalEngine":
        self._pool = self._new_pool()
        self.progress.note(f"local engine: {self.workers} worker processes")
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._pool = None

    def run(self, options: UnitOptions, units: list[WorkUnit]) -> RunOutcome:
        outcome = RunOutcome()
        queue = list(units)
        running: dict[Future, WorkUnit] = {}
        restarts = 0
        stop = False
        while (queue and not stop) or running:
            while queue and not stop and len(running) < self.workers * 2:
                unit = queue.pop(0)
                self.attempts.started(unit.index)
                running[self._pool.submit(run_unit, options, unit)] = unit
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[WorkUnit] = []
            for fut in done:
                unit = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken.append(unit)
                    continue
                except Exception as err:
                    if self.attempts.should_retry(unit.index, err):
                        outcome.retries += 1
                        self.progress.unit_retry(unit.index, self.attempts.counts[unit.index], err)
                        queue.append(unit)
                    else:
                        outcome.failures[unit.index] = err
                        stop = True
                    continue
                self.attempts.succeeded()
                outcome.results[unit.index] = result
                self.progress.unit_done(result)
            if broken:
                restarts += 1
                log.warning("a worker process died; restarting the pool (%d)", restarts)
                in_flight = broken + list(running.values())
                running.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                if restarts > MAX_POOL_RESTARTS:
                    # the units in flight fail the run, transient like a lost Dask worker:
                    # finished units are kept and a rerun resumes
                    for unit in in_flight:
                        outcome.failures[unit.index] = WorkersLostError(
                            unit.name, f"worker processes died {restarts} times in this run")
                    return outcome
                queue[:0] = in_flight
                self._pool = self._new_pool()
        return outcome
