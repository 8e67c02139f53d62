"""Engine ``spark``: each work unit is one Spark job of one task that calls ``run_unit``.

Where the session comes from, in order: the session already active in this process (a
``spark-submit``'ed driver on Kubernetes, a notebook); else a new one on
``engine.spark_master`` (``local[4]``, ``local-cluster[2,1,1024]``, ``spark://...``,
``k8s://...``); else, under ``spark-submit``, the master it was given; else
``local[N]`` with N = ``engine.workers`` or the core count. A session the engine
created, it stops at the end; one it found, it leaves running.

Why one job per unit: the driver submits jobs from a thread pool (FAIR scheduler,
about two jobs per task slot in flight), so each unit's result reaches
``progress.unit_done`` the moment its job ends, and a failed unit is known at once.

Failures, split by who handles them:

* Errors raised by ``run_unit`` never fail the Spark task: the task returns them as
  values and the driver applies the same rule as every engine (``Attempts``): a
  transient error runs the unit again as a new job, up to ``max_attempts``; a
  permanent one (bad input, a missing tokenizer) is the unit's failure and stops the
  run after the units already running. Spark never retries bad input in a loop.
* A lost executor or a crashed Python worker fails the task itself: Spark reruns it,
  up to ``spark.task.maxFailures`` (raised for spot; ``local[N]`` becomes
  ``local[N,F]``). Only when Spark gives up does the unit fail, with
  :class:`SparkJobFailed` (transient, so ``Attempts`` may try once more).

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
import traceback
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from pipelines.config import EngineConfig
from pipelines.engines.base import Attempts, RunOutcome
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


class SparkEngine:
    name = "spark"

    def __init__(self, config: EngineConfig, progress: Progress = NO_PROGRESS, *,
                 job_name: str = "", session: SparkSession | None = None,
                 spark_conf: dict[str, str] | None = None) -> None:
        self.config = config
        self.progress = progress
        self.job_name = job_name
        self.attempts = Attempts(config.max_attempts)
        self.spark = session
        self.spark_conf = dict(spark_conf or {})
        self._own_session = False
        self._group = f"tokenyard-{uuid.uuid4().hex[:12]}"

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

    def _run_job(self, options: UnitOptions, unit: WorkUnit):
        """In a driver thread: one Spark job for one unit; returns (result, error, trace)."""
        sc = self.spark.sparkContext
        # thread-local in PySpark's pinned-thread mode: names the job in the UI
        sc.setJobGroup(self._group, f"tokenize unit {unit.name}", interruptOnCancel=False)
        try:
            rdd = sc.parallelize([(options, unit)], 1)
            [answer] = rdd.map(_task).collect()
        except Exception as err:
            return None, SparkJobFailed(unit.name, _spark_reason(err)), None
        return answer

    def run(self, options: UnitOptions, units: list[WorkUnit]) -> RunOutcome:
        sc = self.spark.sparkContext
        outcome = RunOutcome()
        queue = deque(units)
        running: dict[Future, WorkUnit] = {}
        stop = False
        slots_wanted = self._slots_wanted(sc)
        pool = ThreadPoolExecutor(MAX_JOBS_IN_FLIGHT, thread_name_prefix="tokenyard-spark")
        try:
            while (queue and not stop) or running:
                limit = self._jobs_in_flight(sc, slots_wanted)
                while queue and not stop and len(running) < limit:
                    unit = queue.popleft()
                    self.attempts.started(unit.index)
                    running[pool.submit(self._run_job, options, unit)] = unit
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = running.pop(fut)
                    result, error, trace = fut.result()
                    if error is None:
                        self._done(outcome, result)
                        continue
                    if trace:
                        log.debug("unit %s failed in its Spark task:\n%s", unit.name, trace)
                    if not stop and self.attempts.should_retry(unit.index, error):
                        outcome.retries += 1
                        self.progress.unit_retry(unit.index, self.attempts.counts[unit.index],
                                                 error)
                        queue.append(unit)
                        continue
                    outcome.failures[unit.index] = error
                    if not stop:
                        stop = True
                        log.info("unit %s failed for good; no more units start", unit.name)
        except BaseException:
            with contextlib.suppress(Exception):  # the context may be gone already
                sc.cancelJobGroup(self._group)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return outcome

    def _done(self, outcome: RunOutcome, result: UnitResult) -> None:
        self.attempts.succeeded()
        outcome.results[result.index] = result
        self.progress.unit_done(result)
