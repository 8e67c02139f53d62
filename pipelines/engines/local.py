"""Engine ``local``: a pool of worker processes on this machine, one per core.

Worker processes start from a fork server (``spawn`` where the platform has none): a
fresh, single-threaded process that imports the worker code and, given ``preload``
options, loads the job's tokenizer once (:mod:`pipelines.engines.preload`); each worker
forks from it ready to encode. No tokenizer thread pool is ever forked, since the server
never encodes. Workers take the driver's environment as it is when the pool starts.
They are started when the engine is entered, so that their start overlaps the driver's
own work (checking the tokenizer backend).

The scheduling loop is :class:`pipelines.engines.base.Engine`'s; this engine keeps one
unit per worker in flight plus one queued (:data:`QUEUED_UNITS`). A worker process that
dies (killed, out of memory) breaks the pool, and every unit in flight with it: the
engine starts a new pool and the loop runs those units again, up to
:data:`MAX_POOL_RESTARTS` times a run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from pipelines import storage, worker_env
from pipelines.engines.base import Engine, InFlightLost, RunOutcome
from pipelines.engines.limits import LOCAL_POOL_RESTARTS
from pipelines.engines.preload import PRELOAD_ENV
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, UnitResult, WorkUnit
from pipelines.task import run_unit, warm_up

if TYPE_CHECKING:
    from pipelines.config import EngineConfig

log = logging.getLogger(__name__)

#: times the pool may break (a worker killed) before the run gives up
MAX_POOL_RESTARTS = LOCAL_POOL_RESTARTS
#: units in flight beyond one per worker: the pool hands it to the first worker that
#: frees, so no worker waits for the driver. A unit in the pool's queue can no longer be
#: cancelled, so no more wait there: a run that stops finishes one unit per worker at most
QUEUED_UNITS = 1


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
            data = storage.read_bytes(preload.tokenizer_path, preload.storage_options)
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


class LocalEngine(Engine):
    name = "local"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "", preload: UnitOptions | None = None) -> None:
        super().__init__(config, progress, job_name=job_name)
        self.workers = config.workers or os.cpu_count() or 1
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        self._restarts = 0

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
        self._restarts = 0
        return super().run(options, units)

    # -- the loop's hooks --------------------------------------------------------------

    def _in_flight_limit(self) -> int:
        return self.workers + QUEUED_UNITS

    def _submit(self, options: UnitOptions, unit: WorkUnit, attempt: int) -> Future:
        try:
            return self._pool.submit(run_unit, options, unit)
        except BrokenProcessPool as err:  # broke since the last units finished
            raise InFlightLost("a worker process died") from err

    def _wait(self, handles: Collection[Future]) -> set[Future]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return done

    def _result(self, handle: Future, unit: WorkUnit) -> UnitResult:
        try:
            return handle.result()
        except BrokenProcessPool as err:
            raise InFlightLost("a worker process died") from err

    def _cancel(self, handles: Collection[Future]) -> list[Future]:
        # a future cancels only while the pool still holds it back from its worker
        # processes' queue; then it never runs
        return [h for h in handles if h.cancel()]

    def _recover(self) -> str | None:
        """A new pool for the broken one, up to ``MAX_POOL_RESTARTS`` times a run."""
        self._restarts += 1
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._restarts > MAX_POOL_RESTARTS:
            return f"worker processes died {self._restarts} times in this run"
        log.warning("a worker process died; restarting the pool (%d)", self._restarts)
        self._pool = self._new_pool()
        return None
