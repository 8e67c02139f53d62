"""Engine ``local``: a pool of worker processes on this machine, one per core.

Worker processes start from a fork server (``spawn`` where the platform has none): a
fresh, single-threaded process that imports the worker code and, given ``preload``
options, loads the job's tokenizer once (:mod:`pipelines.engines.preload`); each worker
forks from it ready to encode. No tokenizer thread pool is ever forked, since the server
never encodes. Workers take the driver's environment as it is when the pool starts.
They are started when the engine is entered, so that their start overlaps the driver's
own work (checking the tokenizer backend). A worker process that dies (killed, out of
memory) breaks the pool; the engine starts a new pool and runs the units that were in
flight again.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from pipelines import storage, worker_env
from pipelines.engines.base import Attempts, RunOutcome
from pipelines.engines.limits import LOCAL_POOL_RESTARTS
from pipelines.engines.preload import PRELOAD_ENV
from pipelines.errors import WorkersLostError
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, WorkUnit
from pipelines.task import run_unit, warm_up

if TYPE_CHECKING:
    from pipelines.config import EngineConfig

log = logging.getLogger(__name__)

#: times the pool may break (a worker killed) before the run gives up
MAX_POOL_RESTARTS = LOCAL_POOL_RESTARTS


def _init_worker(environ: dict[str, str], preload: UnitOptions | None) -> None:
    os.environ.clear()
    os.environ.update(environ)
    worker_env.apply(override=True)
    if preload is not None:
        warm_up(preload)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _start_context(preload: UnitOptions | None):
    """The fork server, started with the job's tokenizer if it is not running yet."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:
        return context  # running already (an earlier job of this process)
    context.set_forkserver_preload(["pipelines.task", "pipelines.engines.preload"])
    path = None
    if preload is not None:
        try:
            data = storage.read_bytes(preload.tokenizer_path, preload.storage)
            with tempfile.NamedTemporaryFile("wb", prefix="tokenyard-preload-",
                                             delete=False) as f:
                pickle.dump((preload, data), f)
            path = f.name
            # the server removes it once read; this covers a server that never reads it
            atexit.register(_remove, path)
        except Exception as err:  # the workers load the tokenizer themselves
            log.debug("no tokenizer preload: %s", err)
    if path is not None:
        os.environ[PRELOAD_ENV] = path
    try:
        forkserver.ensure_running()
    finally:
        os.environ.pop(PRELOAD_ENV, None)
    return context


class LocalEngine:
    name = "local"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "", preload: UnitOptions | None = None) -> None:
        self.workers = config.workers or os.cpu_count() or 1
        self.attempts = Attempts(config.max_attempts)
        self.progress = progress
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.workers, mp_context=_start_context(self.preload),
                                   initializer=_init_worker,
                                   initargs=(dict(os.environ), self.preload))
        for _ in range(self.workers):  # start every process now, not at the first unit
            pool.submit(os.getpid)
        return pool

    def __enter__(self) -> "LocalEngine":
        self._pool = self._new_pool()
        self.progress.note(f"local engine: {self.workers} worker processes")
        return self

    def call(self, fn, *args):
        """``fn(*args)`` in a worker process (which has the job's tokenizer loaded)."""
        return self._pool.submit(fn, *args).result()

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
