"""Engine ``spark``: each work unit is one Spark job of one task that calls ``run_unit``.

Where the session comes from, in order: the session already active in this process (a
``spark-submit``'ed driver on Kubernetes, a notebook); else a new one on
``engine.spark_master`` (``local[4]``, ``local-cluster[2,1,1024]``, ``spark://...``,
``k8s://...``); else, under ``spark-submit``, the master it was given; else
``local[N]`` with N = ``engine.workers`` or the core count. A session the engine
created, it stops at the end; one it found, it leaves running.

Why one job per unit: the driver submits jobs from a thread pool (FAIR scheduler,
about two jobs per task slot in flight, so that a slot that frees has the next job
waiting), so each unit's result reaches ``progress.unit_done`` the moment its job ends,
and a failed unit is known at once. Each job has a job group of its own, so that a run
that stops cancels the jobs whose task Spark has not launched yet.

Failures, split by who handles them:

* Errors raised by ``run_unit`` never fail the Spark task: the task returns them as
  values and the driver applies the scheduling loop of every engine
  (:class:`pipelines.engines.base.Engine`): a transient error runs the unit again as a
  new job, up to ``max_attempts``; a permanent one (bad input, a missing tokenizer) is
  the unit's failure and stops the run after the units already running. Spark never
  retries bad input in a loop.
* A lost executor or a crashed Python worker fails the task itself: Spark reruns it,
  up to ``spark.task.maxFailures`` (raised for spot; ``local[N]`` becomes
  ``local[N,F]``). Only when Spark gives up does the unit fail, with
  :class:`SparkJobFailed` (transient, so the loop may try once more).

Storage I/O stays in Python inside the tasks (s3fs), so no Hadoop S3 jars are needed,
and workers find credentials through the AWS chain of the environment they run in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from pipelines.config import EngineConfig
from pipelines.engines.base import Engine, RunOutcome
from pipelines.engines.limits import (SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS,
                                      SPARK_TASK_MAX_FAILURES)
from pipelines.errors import ClusterError, TokenyardError
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import UnitOptions, UnitResult, WorkUnit
from pipelines.task import run_unit
from pipelines.worker_env import WORKER_ENV

log = logging.getLogger(__name__)

#: task failures (lost executors, crashed Python workers) Spark survives per unit
MAX_TASK_FAILURES = SPARK_TASK_MAX_FAILURES
#: settings that set the failure limits of ``pipelines.engines.limits``
FAILURE_CONF = {
    "spark.task.maxFailures": str(SPARK_TASK_MAX_FAILURES),
    "spark.stage.maxConsecutiveAttempts": str(SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS),
}
#: Spark jobs in flight per task slot: a finished job's slot is never left idle
JOBS_PER_SLOT = 2
#: upper bound on jobs in flight (driver threads), whatever the cluster size
MAX_JOBS_IN_FLIGHT = 256
#: when a run stops: how long to let Spark's status tracker catch up with the launches
#: before the jobs it shows with no task launched are cancelled, and how often to look
#: (milliseconds, unless jobs of others hold task slots of a shared session)
TRACKER_SETTLE_S = 30.0
TRACKER_POLL_S = 0.02
#: settings of a session the engine creates; ``spark_conf`` overrides them
SESSION_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.python.worker.reuse": "true",
    "spark.scheduler.mode": "FAIR",
    **{f"spark.executorEnv.{k}": v for k, v in WORKER_ENV.items()},
}

_LOCAL = re.compile(r"^local(\[(?P<threads>\d+|\*)\])?$")


class SparkJobFailed(TokenyardError):
    """Spark gave up on a unit's task (executors lost, Python worker crashed)."""

    transient = True

    def __init__(self, unit: str, reason: str):
        self.unit = unit
        self.reason = reason
        super().__init__(f"Spark gave up on unit {unit}: {reason}",
                         hint="See the executor logs in the Spark UI for the cause.")


def _task(payload: tuple[UnitOptions, WorkUnit]):
    """Runs in a Spark Python worker: ``run_unit``, with its errors returned, not raised."""
    options, unit = payload
    try:
        return run_unit(options, unit), None, None
    except Exception as err:
        return None, _portable(err), traceback.format_exc()


def _portable(err: Exception) -> Exception:
    """The error itself if it pickles back to the driver, else a stand-in that does."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _spark_reason(err: Exception) -> str:
    """One line out of a Py4J error: Spark's own reason, without the Java stack."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Exception:" in line and not line.startswith("at "):
            return line[:500]
    return (lines[0] if lines else type(err).__name__)[:500]


def is_local_master(master: str | None) -> bool:
    return bool(master) and (master.startswith("local[") or master.startswith("local-cluster")
                             or master == "local")


def local_with_retries(master: str) -> str:
    """``local[N]`` as ``local[N,F]``: local mode retries tasks only when told so in its URL."""
    m = _LOCAL.match(master)
    if not m:
        return master
    return f"local[{m.group('threads') or 1},{MAX_TASK_FAILURES}]"


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "", session: SparkSession | None = None,
                 spark_conf: dict[str, str] | None = None) -> None:
        super().__init__(config, progress, job_name=job_name)
        self.spark = session
        self.spark_conf = dict(spark_conf or {})
        self._own_session = False
        #: prefix of the job groups of this engine's units
        self._group = f"tokenyard-{uuid.uuid4().hex[:12]}"
        self._pool: ThreadPoolExecutor | None = None
        self._slots_wanted_now = 0

    # -- the session -------------------------------------------------------------------

    def _requested_master(self) -> str | None:
        if self.config.spark_master:
            return self.config.spark_master
        if os.environ.get("PYSPARK_GATEWAY_PORT"):  # under spark-submit: its --master rules
            return None
        return f"local[{self.config.workers or os.cpu_count() or 1}]"

    def _create_session(self) -> SparkSession:
        master = self._requested_master()
        builder = SparkSession.builder
        conf = {"spark.app.name": f"tokenyard {self.job_name}".strip(), **SESSION_CONF}
        if master is not None:
            if is_local_master(master):
                # workers run this interpreter; nothing listens beyond loopback
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            if not master.startswith("local["):
                conf.update(FAILURE_CONF)
            builder = builder.master(local_with_retries(master))
        else:
            conf.update(FAILURE_CONF)
        if master is None:
            # under spark-submit, what it was given (--conf, --properties-file) wins over
            # the engine's defaults
            SparkContext._ensure_initialized()
            given = SparkConf()
            conf = {k: v for k, v in conf.items() if not given.contains(k)}
        conf.update(self.spark_conf)
        for key, value in conf.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def _start_session(self) -> SparkSession:
        """A new session, or a ClusterError saying why Spark would not start."""
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        try:
            return self._create_session()
        except (PySparkException, Py4JError) as err:
            master = self._requested_master() or "the spark-submit master"
            raise ClusterError(
                f"a Spark session on {master} could not be started: {_spark_reason(err)}.",
                hint="Spark needs a Java 17 runtime: java on the PATH, or JAVA_HOME set to "
                     "it; check the master URL (engine.spark_master or --master).") from err

    def __enter__(self) -> "SparkEngine":
        try:
            if self.spark is None:
                self.spark = SparkSession.getActiveSession()
                if self.spark is not None:
                    self._note_found_session()
            if self.spark is None:
                self.spark = self._start_session()
                self._own_session = True
            sc = self.spark.sparkContext
            self.progress.note(
                f"Spark master {sc.master}: {sc.defaultParallelism} task slots, "
                f"application {sc.applicationId}")
            url = sc.uiWebUrl
            self.progress.note(f"Spark UI: {url}" if url else
                               "Spark UI: off (spark.ui.enabled=false)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _note_found_session(self) -> None:
        master = self.spark.sparkContext.master
        wanted = self.config.spark_master
        if wanted and wanted != master:
            log.warning("a Spark session on %s is active already; using it, not %s",
                        master, wanted)
        self.progress.note(f"using the active Spark session ({master})")

    def __exit__(self, *exc) -> None:
        if self._own_session and self.spark is not None:
            self.spark.stop()
        self.spark = None
        self._own_session = False

    # -- running units -----------------------------------------------------------------

    @staticmethod
    def _slots_wanted(sc: SparkContext) -> int:
        """Task slots dynamic allocation may grow to: pending tasks are what make it ask."""
        conf = sc.getConf()
        if conf.get("spark.dynamicAllocation.enabled", "false").lower() != "true":
            return 0
        most = int(conf.get("spark.dynamicAllocation.maxExecutors", "0") or 0)
        return most * int(conf.get("spark.executor.cores", "1") or 1)

    @staticmethod
    def _jobs_in_flight(sc: SparkContext, slots_wanted: int) -> int:
        slots = max(sc.defaultParallelism, slots_wanted)  # executors come and go
        return max(2, min(MAX_JOBS_IN_FLIGHT, JOBS_PER_SLOT * slots))

    def run(self, options: UnitOptions, units: list[WorkUnit]) -> RunOutcome:
        sc = self.spark.sparkContext
        self._slots_wanted_now = self._slots_wanted(sc)
        self._pool = ThreadPoolExecutor(MAX_JOBS_IN_FLIGHT, thread_name_prefix="tokenyard-spark")
        try:
            outcome = super().run(options, units)
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool.shutdown(wait=True)
        return outcome

    # -- the loop's hooks --------------------------------------------------------------

    def _in_flight_limit(self) -> int:
        return self._jobs_in_flight(self.spark.sparkContext, self._slots_wanted_now)

    def _submit(self, options: UnitOptions, unit: WorkUnit, attempt: int) -> _UnitJob:
        job = _UnitJob(unit, f"{self._group}-{unit.name}-{attempt}")
        job.future = self._pool.submit(self._run_job, options, job)
        return job

    def _run_job(self, options: UnitOptions, job: _UnitJob):
        """In a driver thread: one Spark job for one unit; returns (result, error, trace)."""
        with job.lock:
            if job.cancelled:
                return None, None, None
            job.submitted = True
        sc = self.spark.sparkContext
        # thread-local in PySpark's pinned-thread mode: names the job in the UI
        sc.setJobGroup(job.group, f"tokenize unit {job.unit.name}", interruptOnCancel=False)
        try:
            rdd = sc.parallelize([(options, job.unit)], 1)
            [answer] = rdd.map(_task).collect()
        except Exception as err:
            return None, SparkJobFailed(job.unit.name, _spark_reason(err)), None
        return answer

    def _wait(self, handles: Collection[_UnitJob]) -> list[_UnitJob]:
        by_future = {job.future: job for job in handles}
        done, _ = wait(by_future, return_when=FIRST_COMPLETED)
        return [by_future[f] for f in done]

    def _result(self, job: _UnitJob, unit: WorkUnit) -> UnitResult:
        result, error, trace = job.future.result()
        if error is None:
            return result
        if trace:
            log.debug("unit %s failed in its Spark task:\n%s", unit.name, trace)
        raise error

    def _cancel(self, handles: Collection[_UnitJob]) -> list[_UnitJob]:
        """Jobs not given to Spark yet, and jobs Spark holds with no task launched."""
        doomed, given = [], []
        for job in handles:
            with job.lock:
                if not job.submitted:
                    job.cancelled = True  # its thread will not submit it
                    doomed.append(job)
                else:
                    given.append(job)
        sc = self.spark.sparkContext
        for job in self._not_launched(sc, given):
            sc.cancelJobGroup(job.group)
            doomed.append(job)
        return doomed

    @staticmethod
    def _not_launched(sc: SparkContext, jobs: list[_UnitJob]) -> list[_UnitJob]:
        """The jobs (of those given) whose task Spark has not launched.

        Spark's status tracker learns of a launch a moment after it happens (its
        listener runs behind the scheduler), and the slot of a unit that just ended was
        given to the next job at once: so the tracker's answer counts only once it
        shows these jobs in every task slot (or all of them launched), or after
        ``TRACKER_SETTLE_S``. A job the tracker does not know yet counts as launched.
        """
        tracker = sc.statusTracker()
        deadline = time.monotonic() + TRACKER_SETTLE_S
        while True:
            states = [(job, _launch_state(tracker, job.group)) for job in jobs]
            waiting = [job for job, state in states if state == "waiting"]
            running = sum(1 for _, state in states if state == "running")
            if running >= min(sc.defaultParallelism, running + len(waiting)) \
                    or time.monotonic() > deadline:
                return waiting
            time.sleep(TRACKER_POLL_S)

    def _abort(self, handles: Collection[_UnitJob]) -> None:
        for job in handles:
            with job.lock:
                job.cancelled = True
                submitted = job.submitted
            if submitted:
                with contextlib.suppress(Exception):  # the context may be gone already
                    self.spark.sparkContext.cancelJobGroup(job.group)


@dataclass(eq=False)
class _UnitJob:
    """One unit's Spark job (its own job group), the driver thread's future for it, and
    whether it was given to Spark or cancelled before that."""

    unit: WorkUnit
    group: str
    future: Future | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    submitted: bool = False
    cancelled: bool = False


def _launch_state(tracker, group: str) -> str:
    """``"unknown"`` (no job yet), ``"waiting"`` (no task launched), ``"running"`` (its
    task runs) or ``"ended"``, from Spark's status tracker."""
    ids = tracker.getJobIdsForGroup(group)
    if not ids:
        return "unknown"
    info = tracker.getJobInfo(max(ids))
    if info is None:
        return "unknown"
    if info.status != "RUNNING":
        return "ended"
    stages = [tracker.getStageInfo(sid) for sid in info.stageIds]
    if any(st is not None and st.numActiveTasks > 0 for st in stages):
        return "running"
    if any(st is not None and st.numCompletedTasks + st.numFailedTasks > 0 for st in stages):
        return "ended"
    return "waiting"
