"""The engine contract (:mod:`tests.engine_contract`) for each engine: a process pool,
a Dask ``LocalCluster`` and a local Spark session, two workers each; and what only one
engine does (the local pool's own recovery)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pipelines.config import EngineConfig
from tests.engine_contract import WORKERS, EngineContract, Held, Recorder, written
from tests.helpers import set_spark_env


class TestLocalEngine(EngineContract):
    @pytest.fixture
    def new_engine(self):
        from pipelines.engines.local import LocalEngine

        def make(progress, **config):
            return LocalEngine(EngineConfig(kind="local", workers=WORKERS, **config), progress)

        return make

    def test_a_killed_worker_process_costs_nothing_but_its_units(self, new_engine, staged,
                                                                s3, references):
        """The pool breaks with every unit in flight; a new pool runs them again, and no
        attempt is counted: losing a worker is not the units' failure."""
        progress = Recorder()
        traffic = Held(staged.inputs)
        staged.proxy.rule = traffic
        with new_engine(progress) as engine:
            def kill_one_worker() -> None:
                try:
                    if traffic.wait_held(WORKERS):  # every worker is inside a unit
                        os.kill(min(engine._pool._processes), signal.SIGKILL)
                finally:
                    traffic.release.set()

            killer = threading.Thread(target=kill_one_worker)
            killer.start()
            try:
                outcome = engine.run(staged.options, list(staged.plan.units))
            finally:
                killer.join()

        assert sorted(outcome.results) == staged.indexes and outcome.failures == {}
        assert outcome.retries == 0 and progress.retries == []
        assert sorted(progress.done) == staged.indexes
        assert written(s3) == references[staged.plan.fingerprint]


class TestDaskEngine(EngineContract):
    @pytest.fixture
    def new_engine(self):
        from pipelines.engines.dask import DaskEngine

        def make(progress, **config):
            return DaskEngine(EngineConfig(kind="dask", workers=WORKERS,
                                           dashboard_address="127.0.0.1:0", **config), progress)

        return make


@pytest.mark.spark
class TestSparkEngine(EngineContract):
    @pytest.fixture(scope="class")
    @classmethod
    def session(cls, s3_server):
        """One local session for the class, started with the environment its JVM and
        Python workers keep: fake AWS credentials, the loopback S3 endpoint, loopback
        only. The JVM outlives the session and later ones in this process inherit that
        environment: it is the one tests/test_engine_spark.py sets too."""
        pytest.importorskip("pyspark")
        from pipelines.engines.spark import SparkEngine

        with pytest.MonkeyPatch.context() as mp:
            set_spark_env(mp, s3_server.endpoint)
            owner = SparkEngine(EngineConfig(kind="spark", spark_master=f"local[{WORKERS}]"))
            with owner:
                yield owner.spark

    @pytest.fixture
    def new_engine(self, session):
        from pipelines.engines.spark import SparkEngine

        def make(progress, **config):
            return SparkEngine(EngineConfig(kind="spark", **config), progress, session=session)

        return make
