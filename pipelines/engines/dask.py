"""Engine ``dask`` (the default): an embedded ``LocalCluster``, a running scheduler, or
a ``KubeCluster``.

Each unit is one task keyed ``tokenize-NNNNNN-<fingerprint>``, so the dashboard's task
stream and progress pages show the pipeline's own work. Workers have one thread each
(one process per core). The scheduler tolerates more worker deaths than Dask's
default before it gives up on a task (spot capacity), and the driver feeds the
pipeline's counters to the scheduler, which serves them on its Prometheus endpoint
(``/metrics``: ``tokenyard_documents_total``, ``tokenyard_tokens_total``, ...).

The scheduling loop is :class:`pipelines.engines.base.Engine`'s. Every unit is
submitted at once (the scheduler queues them; an adaptive cluster scales on that
backlog); a retry is a new task, ``tokenize-NNNNNN-<fingerprint>-<attempt>``. Dask
itself reruns the task of a worker that died, and recomputes a result lost with its
worker before the driver gathered it. When a run stops, every unit not executing on a
worker (queued on the scheduler or in a worker's own queue) is cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Collection
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, as_completed
from distributed.scheduler import KilledWorker
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from pipelines.config import EngineConfig
from pipelines.engines.base import Engine, RunOutcome
from pipelines.engines.limits import DASK_ALLOWED_FAILURES
from pipelines.errors import ClusterError, WorkersLostError
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, UnitResult, WorkUnit
from pipelines.task import run_unit
from pipelines.worker_env import WORKER_ENV

log = logging.getLogger(__name__)

METRICS_TOPIC = "tokenyard-unit"
#: worker deaths a task survives before the scheduler marks it failed (Dask's default: 3)
ALLOWED_FAILURES = DASK_ALLOWED_FAILURES


def task_key(unit: WorkUnit, fingerprint: str, attempt: int = 1) -> str:
    key = f"tokenize-{unit.name}-{fingerprint[:8]}"
    return key if attempt == 1 else f"{key}-{attempt}"


_COUNTERS: dict | None = None


def _counters() -> dict:
    """Prometheus counters in this process's default registry, created once."""
    global _COUNTERS
    if _COUNTERS is None:
        from prometheus_client import Counter

        def counter(name: str, doc: str):
            return Counter(f"tokenyard_{name}", doc, ["job"])

        _COUNTERS = {
            "units": counter("units_done", "work units finished"),
            "documents": counter("documents", "documents tokenized"),
            "tokens": counter("tokens", "tokens written"),
            "input_bytes": counter("input_bytes", "input bytes read"),
            "rejected": counter("rejected_records", "input records rejected"),
        }
    return _COUNTERS


class TokenyardMetrics(SchedulerPlugin):
    """A scheduler plugin that turns unit events into Prometheus counters."""

    name = "tokenyard-metrics"
    idempotent = True
    _warned = False  # said once per scheduler that its metrics are off

    def log_event(self, topic: str, msg) -> None:
        if topic != METRICS_TOPIC or not isinstance(msg, dict):
            return
        try:
            counters = _counters()
        except ImportError:  # prometheus_client missing on a remote scheduler
            if not self._warned:
                self._warned = True
                log.warning("tokenyard metrics are off on this scheduler: prometheus_client "
                            "is not installed in its image (pip install prometheus-client); "
                            "the run itself is unaffected")
            return
        job = str(msg.get("job", ""))
        counters["units"].labels(job).inc()
        for name in ("documents", "tokens", "input_bytes", "rejected"):
            counters[name].labels(job).inc(int(msg.get(name, 0)))


#: loggers of worker processes that follow the driver's level in an embedded cluster
WORKER_LOGGERS = ("distributed.worker",)


class EmbeddedWorker(WorkerPlugin):
    """Worker processes of the embedded cluster leave Ctrl-C to the driver and log at its
    levels.

    The terminal sends Ctrl-C (SIGINT) to every process of the group; the driver handles
    it and closes the cluster, which stops its workers cleanly: workers that took it
    themselves would each print a traceback over the driver's one message. Likewise a
    worker's own report of a failed unit (with its traceback) is shown only when the
    driver's logging asks for it; the driver reports the failure in any case.
    """

    name = "tokenyard-embedded-worker"
    idempotent = True

    def __init__(self, levels: dict[str, int]) -> None:
        self.levels = dict(levels)

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _interrupts_ignored() -> Any:
    """Processes started inside the block inherit SIGINT ignored (dispositions set to
    ignore survive exec); the driver's own handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _lost(error: BaseException, unit: WorkUnit) -> BaseException:
    """Dask's ``KilledWorker`` as the pipeline's transient ``WorkersLostError``."""
    if isinstance(error, KilledWorker):
        return WorkersLostError(unit.name, f"{ALLOWED_FAILURES} workers died while running "
                                           "it, the limit Dask allows one task")
    return error


class DaskEngine(Engine):
    name = "dask"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "", cluster=None, cluster_note: str | None = None,
                 close_cluster: bool = False,
                 make_cluster: Callable[[], tuple[Any, str]] | None = None) -> None:
        super().__init__(config, progress, job_name=job_name)
        #: a cluster object made elsewhere (e.g. a KubeCluster); closed at the end if asked
        self.cluster = cluster
        self._own_cluster = close_cluster
        self._cluster_note = cluster_note
        #: makes such a cluster (and a note on reaching it) when the engine starts, so that
        #: nothing is created for a run that fails before it needs workers
        self._make_cluster = make_cluster
        self.client: Client | None = None
        self._config_ctx = None
        self._finished: as_completed | None = None

    def __enter__(self) -> "DaskEngine":
        self._config_ctx = dask.config.set({
            "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
            "distributed.nanny.pre-spawn-environ": {
                **dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV},
        })
        self._config_ctx.__enter__()
        try:
            if self.cluster is None and self._make_cluster is not None:
                self.cluster, self._cluster_note = self._make_cluster()
            if self.cluster is not None:
                self.client = Client(self.cluster)
            elif self.config.scheduler_address:
                self.client = self._connect(self.config.scheduler_address)
                self.progress.note(f"Dask scheduler: {self.config.scheduler_address}")
            else:
                workers = self.config.workers or os.cpu_count() or 1
                with _interrupts_ignored():
                    self.cluster = LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=self.config.dashboard_address,
                        memory_limit=self.config.memory_per_worker,
                        scheduler_kwargs={"host": "127.0.0.1"}, host="127.0.0.1")
                self._own_cluster = True
                self.client = Client(self.cluster)
                self.client.register_plugin(EmbeddedWorker(
                    {n: logging.getLogger(n).getEffectiveLevel() for n in WORKER_LOGGERS}))
                self.progress.note(f"Dask LocalCluster: {workers} workers, 1 thread each")
            self.client.register_plugin(TokenyardMetrics())
            self.progress.note(f"Dask dashboard: {self.client.dashboard_link}")
            if self._cluster_note:
                self.progress.note(self._cluster_note)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @staticmethod
    def _connect(address: str) -> Client:
        try:
            return Client(address)
        except OSError as err:  # refused, unresolvable, or no answer within the timeout
            raise ClusterError(
                f"the Dask scheduler {address} (engine.scheduler_address or --scheduler) "
                f"cannot be reached: {err}.",
                hint="Check the address and that the scheduler is running and reachable "
                     "from here; or leave the address unset to run an embedded "
                     "LocalCluster.", transient=True) from err

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._own_cluster and self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self._config_ctx is not None:
            self._config_ctx.__exit__(None, None, None)
            self._config_ctx = None

    def call(self, fn, *args):
        """``fn(*args)`` on a worker (the tokenizer backend's check: a worker loads the
        backends for its units anyway, the driver need not)."""
        return self.client.submit(fn, *args, pure=False).result()

    @property
    def dashboard_link(self) -> str | None:
        return self.client.dashboard_link if self.client else None

    def _report(self, result: UnitResult) -> None:
        self.client.log_event(METRICS_TOPIC, {
            "job": self.job_name, "documents": result.documents, "tokens": result.tokens,
            "input_bytes": result.input_bytes, "rejected": result.rejected})

    def run(self, options: UnitOptions, units: list[WorkUnit]) -> RunOutcome:
        self._finished = as_completed()
        try:
            return super().run(options, units)
        except OSError as err:  # distributed's CommClosedError and timeouts among them
            raise ClusterError(
                f"the connection to the Dask scheduler was lost mid-run ({type(err).__name__}: "
                f"{err}).", hint="Units that finished are kept; run the same job again to "
                                 "resume once the scheduler is back.", transient=True) from err

    # -- the loop's hooks --------------------------------------------------------------

    def _in_flight_limit(self) -> int:
        # every unit: the scheduler queues what its workers cannot take yet, and an
        # adaptive cluster scales on that backlog
        return sys.maxsize

    def _submit(self, options: UnitOptions, unit: WorkUnit, attempt: int) -> Future:
        future = self.client.submit(run_unit, options, unit,
                                    key=task_key(unit, options.fingerprint, attempt), pure=False)
        self._finished.add(future)
        return future

    def _wait(self, handles: Collection[Future]) -> list[Future]:
        wanted = set(handles)
        while True:  # cancelled futures come out too: skip them
            done = [f for f in self._finished.next_batch(block=True) if f in wanted]
            if done:
                return done

    def _result(self, future: Future, unit: WorkUnit) -> UnitResult:
        # A finished result can be lost again (its worker killed) before it is gathered:
        # the status is then "lost" or "pending" and Dask recomputes it. result() waits
        # for that; only an exception counts as a failure.
        try:
            if future.cancelled():
                raise WorkersLostError(unit.name, "the cluster cancelled its task")
            result = future.result()
        except Exception as err:  # the unit's own error, sent back by Dask
            error = _lost(err, unit)
            if error is err:
                raise
            raise error from err
        finally:
            future.release()
        self._report(result)
        return result

    def _cancel(self, futures: Collection[Future]) -> list[Future]:
        """Every unit not executing on a worker: queued on the scheduler or waiting in a
        worker's own queue."""
        executing: set[str] = set()
        for keys in self.client.run(_running_keys, on_error="ignore").values():
            executing.update(keys)
        doomed = [f for f in futures if not f.done() and str(f.key) not in executing]
        if doomed:
            self.client.cancel(doomed)
        return doomed


def _running_keys(dask_worker) -> list[str]:
    """On a worker: the keys of the tasks its threads are running."""
    return [str(ts.key) for ts in dask_worker.state.all_running_tasks]
