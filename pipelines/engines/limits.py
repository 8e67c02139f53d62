"""How many failures a run survives: defined once, for the engines that run here and the
Kubernetes objects the renderers write.

Spot capacity takes workers away without notice, and each loss fails the tasks it was
running. These limits say how many such losses one unit survives before the run gives
up. The local engines (``LocalCluster``, ``local[N]``, a process pool) and the rendered
objects (the DaskCluster's scheduler environment, ``spark-submit`` configuration, the
SparkApplication) use the same numbers, and the README quotes them; a test keeps all
of them in step. Plain constants: importing this module imports no engine backend.
"""

from __future__ import annotations

#: worker deaths a Dask task survives before the scheduler fails it with ``KilledWorker``
#: (``distributed.scheduler.allowed-failures``; Dask's default, 3, is too few for spot)
DASK_ALLOWED_FAILURES = 20

#: failures of one Spark task (lost executors, crashed Python workers) before Spark
#: gives up on it (``spark.task.maxFailures``; Spark's default, 4, is too few for spot);
#: ``local[N]`` becomes ``local[N,F]`` with this F
SPARK_TASK_MAX_FAILURES = 16

#: consecutive attempts of a Spark stage (``spark.stage.maxConsecutiveAttempts``)
SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS = SPARK_TASK_MAX_FAILURES

#: times the local engine's process pool may break (a worker killed) before it gives up
LOCAL_POOL_RESTARTS = 20

#: transient unit failures in a row, with no unit finishing in between, after which a
#: run stops retrying: storage is down, not flaky
MAX_CONSECUTIVE_TRANSIENT = 6


def spark_executor_max_failures(max_executors: int) -> int:
    """Executor failures a Spark application survives (``spark.executor.maxNumFailures``):
    four losses per executor slot, at least 3."""
    return max(3, 4 * max_executors)
