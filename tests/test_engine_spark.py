"""Engine spark on real Spark: local[2] and local-cluster[2,1,1024], S3 on loopback.

One Spark session at a time is shared by the tests of this module (``sessions``); the
environment its JVM and Python workers inherit (fake AWS credentials, the loopback
endpoint) is set before the first one starts. Fault tests kill executor JVMs that are
children of this process, found by their command line, never anything else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from pipelines.config import EngineConfig, parse_job
from pipelines.errors import InputError, RunFailedError
from pipelines.formats import iter_documents
from pipelines.run import run_job
from pipelines.testing.corpus import write_jsonl
from pipelines.testing.s3 import AWS_ENV
from tests.helpers import REPO, set_spark_env

pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

LOCAL = "local[2]"
CLUSTER = "local-cluster[2,1,1024]"
#: a corpus: (files, bytes per file); with 1 MiB units about one unit per MB
SMALL = (4, 3_000_000)
LARGE = (4, 14_000_000)


# -- fixtures and helpers ------------------------------------------------------------


class Recorder:
    """A Progress that records what an engine reports, in order."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.done: list[int] = []
        self.retries: list[tuple[int, int, BaseException]] = []
        self.on_done = None

    def start(self, plan, pending, done) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)

    def unit_done(self, result) -> None:
        self.done.append(result.index)
        if self.on_done:
            self.on_done(result)

    def unit_retry(self, index, attempt, error) -> None:
        self.retries.append((index, attempt, error))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def spark_env(s3_server):
    """What the Spark JVM and its Python workers inherit: set before any session starts."""
    with pytest.MonkeyPatch.context() as mp:
        set_spark_env(mp, s3_server.endpoint)
        yield


class Sessions:
    """At most one Spark session at a time, made by the engine itself and kept open."""

    def __init__(self) -> None:
        self.engine = None
        self.master = None

    def get(self, master: str):
        from pipelines.engines.spark import SparkEngine

        if self.master != master:
            self.close()
            self.progress = Recorder()
            engine = SparkEngine(EngineConfig(kind="spark", spark_master=master), self.progress,
                                 job_name="tests")
            engine.__enter__()
            self.engine, self.master = engine, master
        return self.engine.spark

    def close(self) -> None:
        if self.engine is not None:
            self.engine.__exit__(None, None, None)
            self.engine = self.master = None


@pytest.fixture(scope="module")
def sessions(spark_env):
    kit = Sessions()
    yield kit
    kit.close()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Generated JSONL corpora by shape, made once: (directory, record count)."""
    made: dict[tuple[int, int], tuple[Path, int]] = {}

    def make(shape: tuple[int, int]) -> tuple[Path, int]:
        if shape not in made:
            root = tmp_path_factory.mktemp(f"corpus-{shape[0]}x{shape[1]}")
            records = sum(write_jsonl(root / f"part-{i}.jsonl", shape[1], seed=100 + i,
                                      id_prefix=f"p{i}") for i in range(shape[0]))
            made[shape] = (root, records)
        return made[shape]

    return make


@pytest.fixture(scope="module")
def references() -> dict:
    """Committed trees of clean Dask runs, by corpus shape, filled by the first test to need one."""
    return {}


def stage(s3, corpora, tokenizer_bytes, shape=SMALL) -> int:
    """Upload a corpus and the tokenizer to the (freshly reset) loopback S3; returns records."""
    root, records = corpora(shape)
    s3.bucket("raw")
    s3.bucket("models")
    s3.bucket("out")
    for path in sorted(root.iterdir()):
        s3.put(f"s3://raw/in/{path.name}", path.read_bytes())
    s3.put("s3://models/tokenizer.json", tokenizer_bytes)
    return records


def job_dict(out: str, kind: str = "spark", backend: str = "auto", **engine) -> dict:
    """The test job; ``backend="hf"`` where kills must land inside units (fastokens
    finishes them in milliseconds)."""
    return {
        "name": "spark-test",
        "input": {"uri": "s3://raw/in/*.jsonl", "id_field": "id"},
        "tokenizer": {"path": "s3://models/tokenizer.json", "backend": backend},
        "output": {"uri": out},
        "plan": {"target_unit_bytes": "1MiB"},
        "engine": {"kind": kind, "workers": 2, "dashboard_address": "127.0.0.1:0", **engine},
    }


def committed(s3, prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in s3.listing(prefix).items() if not k.startswith("_runs/")}


def reference(s3, references, shape=SMALL) -> dict[str, bytes]:
    if shape not in references:
        run_job(parse_job(job_dict("s3://out/reference", kind="dask")))
        references[shape] = committed(s3, "s3://out/reference")
    return references[shape]


def spark_rest(session, route: str):
    url = session.sparkContext.uiWebUrl
    app = session.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/{route}", timeout=10) as r:
        return json.loads(r.read())


def failed_tasks(session) -> int:
    return sum(s["numFailedTasks"] for s in spark_rest(session, "stages"))


def shard_documents(out: str) -> int:
    return sum(1 for _ in iter_documents(out))


def executors() -> list[psutil.Process]:
    """Executor JVMs started by this process's Spark (local-cluster), never anyone else's."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any("CoarseGrainedExecutorBackend" in part for part in p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def busy(executor: psutil.Process, window_s: float = 0.3) -> bool:
    """Whether an executor's Python workers are using CPU: it is running a unit."""
    def cpu() -> float:
        total = 0.0
        try:
            for p in executor.children(recursive=True):
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return total

    before = cpu()
    time.sleep(window_s)
    return cpu() - before > 0.05


# -- tests -----------------------------------------------------------------------------


def test_python_workers_inherit_the_environment(sessions, s3):
    sc = sessions.get(LOCAL).sparkContext
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_EC2_METADATA_DISABLED",
            "TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS", "PYTHONPATH")
    seen = sc.parallelize([0], 1).map(lambda _: {k: os.environ.get(k) for k in keys}).collect()[0]
    assert seen["AWS_ENDPOINT_URL"] == s3.endpoint
    assert seen["AWS_ACCESS_KEY_ID"] == AWS_ENV["AWS_ACCESS_KEY_ID"]
    assert seen["AWS_EC2_METADATA_DISABLED"] == "true"
    assert seen["TOKENIZERS_PARALLELISM"] == "false" and seen["RAYON_NUM_THREADS"] == "1"
    assert sc.master == "local[2,16]"  # local mode retries tasks only when its URL says so
    assert any(n.startswith("Spark UI: http://") for n in sessions.progress.notes)


def test_spark_output_is_byte_identical_to_dask(sessions, s3, corpora, tokenizer_bytes,
                                                references):
    records = stage(s3, corpora, tokenizer_bytes)
    dask_tree = reference(s3, references)
    session = sessions.get(LOCAL)
    progress = Recorder()
    markers_at_first_done = []
    progress.on_done = lambda r: markers_at_first_done.append(
        len(s3.fs.find("out/spark/_units"))) if not markers_at_first_done else None

    summary = run_job(parse_job(job_dict("s3://out/spark")), progress=progress,
                      engine_kwargs={"session": session})

    assert committed(s3, "s3://out/spark") == dask_tree
    assert summary.documents == records == shard_documents("s3://out/spark")
    assert sorted(progress.done) == list(range(summary.units)) and summary.units > 8
    # reported as each unit finished: most units had not even started at the first report
    assert markers_at_first_done[0] < summary.units // 2
    assert progress.retries == [] and summary.retries == 0
    run = json.loads(next(v for k, v in s3.listing("s3://out/spark").items()
                          if k.startswith("_runs/")))
    assert run["engine"] == "spark"


def test_bad_input_fails_the_unit_once_without_retries(sessions, s3, tokenizer_bytes):
    s3.bucket("raw")
    s3.bucket("models")
    s3.bucket("out")
    good = "\n".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) for i in range(50))
    s3.put("s3://raw/in/a.jsonl", (good + "\n").encode())
    s3.put("s3://raw/in/b.jsonl", (good + '\n{"id": "broken", "text": \n').encode())
    s3.put("s3://models/tokenizer.json", tokenizer_bytes)
    session = sessions.get(LOCAL)
    failed_before = failed_tasks(session)
    progress = Recorder()

    with pytest.raises(RunFailedError) as info:
        run_job(parse_job(job_dict("s3://out/bad")), progress=progress,
                engine_kwargs={"session": session})

    assert isinstance(info.value.first, InputError)
    assert "b.jsonl" in str(info.value.first) and "line 51" in str(info.value.first)
    assert progress.retries == []
    assert failed_tasks(session) == failed_before  # the error came back as a value
    assert not s3.fs.exists("out/bad/manifest.json")


def test_a_killed_spark_driver_resumes_with_either_engine(sessions, s3, corpora,
                                                          tokenizer_bytes, references,
                                                          tmp_path):
    stage(s3, corpora, tokenizer_bytes)
    clean = reference(s3, references)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job_dict("s3://out/a", kind="dask", backend="hf")))
    log = tmp_path / "driver.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "run", str(job_file), "--engine", "spark",
             "--master", "local[2]"],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if s3.fs.exists("out/a/_units") and len(s3.fs.find("out/a/_units")) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the driver ended before it could be killed:\n" + \
            log.read_text(errors="replace")[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and Python workers
        proc.wait()
    assert "Spark UI: http://" in log.read_text(errors="replace")
    assert not s3.fs.exists("out/a/manifest.json")
    for key, data in s3.listing("s3://out/a").items():
        s3.put(f"s3://out/b/{key}", data)
    done_before = len(s3.fs.find("out/a/_units"))

    by_dask = run_job(parse_job(job_dict("s3://out/a", kind="dask")))
    by_spark = run_job(parse_job(job_dict("s3://out/b")),
                       engine_kwargs={"session": sessions.get(LOCAL)})

    for summary in (by_dask, by_spark):
        assert summary.units_skipped >= done_before >= 3
        assert summary.units_skipped < summary.units
    assert committed(s3, "s3://out/a") == clean
    assert committed(s3, "s3://out/b") == clean


def kill_executors(count: int, progress: Recorder, finished: threading.Event,
                   after_units: int = 2, gap_s: float = 1.0) -> list[int]:
    """SIGKILL ``count`` busy executor JVMs, one at a time, while the run goes on."""
    killed: list[int] = []
    while len(progress.done) < after_units and not finished.is_set():
        time.sleep(0.05)
    while len(killed) < count and not finished.is_set():
        for ex in executors():
            if ex.pid not in killed and busy(ex) and not finished.is_set():
                ex.send_signal(signal.SIGKILL)
                killed.append(ex.pid)
                time.sleep(gap_s)
                break
        else:
            time.sleep(0.1)
    return killed


@pytest.mark.parametrize("kills, shape", [
    (1, SMALL),
    pytest.param(6, LARGE, marks=pytest.mark.slow, id="campaign"),
])
def test_killed_executors_cost_nothing(sessions, s3, corpora, tokenizer_bytes, references,
                                       kills, shape):
    records = stage(s3, corpora, tokenizer_bytes, shape)
    clean = reference(s3, references, shape)
    session = sessions.get(CLUSTER)
    deadline = time.monotonic() + 60
    while len(executors()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(executors()) == 2
    assert session.sparkContext.getConf().get("spark.task.maxFailures") == "16"
    progress = Recorder()
    finished = threading.Event()
    killed: list[int] = []
    killer = threading.Thread(
        target=lambda: killed.extend(kill_executors(kills, progress, finished)), daemon=True)
    failed_before = failed_tasks(session)

    killer.start()
    try:
        summary = run_job(parse_job(job_dict("s3://out/faults", backend="hf")),
                          progress=progress, engine_kwargs={"session": session})
    finally:
        finished.set()
        killer.join()

    assert len(killed) == kills, "the run ended before every kill landed"
    assert committed(s3, "s3://out/faults") == clean
    assert summary.documents == records == shard_documents("s3://out/faults")
    assert sorted(progress.done) == list(range(summary.units))  # each unit reported once
    assert failed_tasks(session) > failed_before  # the kills did cost Spark tasks
    lost = [e for e in spark_rest(session, "allexecutors")
            if e["id"] != "driver" and not e["isActive"]]
    assert len(lost) >= kills
