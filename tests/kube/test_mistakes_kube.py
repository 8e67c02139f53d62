"""The Kubernetes side as users get it wrong: suggestions that fit, pods that get what they
asked for, files told apart by content, failure limits defined once."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from pipelines.errors import ProfileFitError
from pipelines.kube.capacity.profiles import parse_profile
from pipelines.kube.capacity.quantity import parse_memory
from pipelines.kube.checks import feasibility
from pipelines.kube.checks.validate import sample_job, validate
from pipelines.kube.render import dask, spark

from .helpers import REPO

API = {"apiVersion": "tokenyard.io/v1alpha1", "image": "registry.example.com/tokenyard:0.1.0"}


def dask_profile(scheduler=(1, "4Gi"), worker=(1, "4Gi"), runner=(1, "2Gi"),
                 workers=None):
    return parse_profile({**API, "kind": "DaskProfile", "name": "d",
                          "scheduler": {"cpus": scheduler[0], "memory": scheduler[1]},
                          "worker": {"cpus": worker[0], "memory": worker[1]},
                          "runner": {"cpus": runner[0], "memory": runner[1]},
                          "workers": workers or {"min": 2, "max": 10}})


def spark_profile(cores, memory, pyspark="0", driver=(1, "2g")):
    return parse_profile({**API, "kind": "SparkProfile", "name": "s", "sparkVersion": "4.3.0",
                          "driver": {"cores": driver[0], "memory": driver[1]},
                          "executor": {"cores": cores, "memory": memory,
                                       "pysparkMemory": pyspark},
                          "executors": {"max": 4}})


def dask_profiles():
    for cpus, memory in itertools.product([1, 2, 8, 16], ["2Gi", "60Gi", "200Gi"]):
        yield f"scheduler {cpus}x{memory}", dask_profile(scheduler=(cpus, memory))
        yield f"runner {cpus}x{memory}", dask_profile(runner=(cpus, memory))
    for cpus, memory in itertools.product([1, 2, 4], ["10Gi", "20Gi", "40Gi"]):
        yield f"worker {cpus}x{memory}", dask_profile(worker=(cpus, memory))
    yield "worker 4 adaptive", dask_profile(worker=(4, "16Gi"), workers={"min": 1, "max": 3})


def spark_profiles():
    for cores, memory, pyspark in itertools.product([1, 2, 4, 64], ["2g", "8g", "30g", "100g"],
                                                    ["0", "12g"]):
        yield f"executor {cores}x{memory}+{pyspark}", spark_profile(cores, memory, pyspark)
    for cores, memory in itertools.product([1, 16, 32], ["8g", "60g"]):
        yield f"driver {cores}x{memory}", spark_profile(2, "4g", driver=(cores, memory))


def planner(profile):
    job = sample_job()
    if profile.kind == "DaskProfile":
        return lambda p: dask.plan(job, p).pods(with_runner=True)
    return lambda p: spark.plan(job, p).pods()


CASES = list(dask_profiles()) + list(spark_profiles())


@pytest.mark.parametrize("name, profile", CASES, ids=[c[0] for c in CASES])
def test_every_suggested_change_renders_and_schedules(name, profile):
    from pipelines.kube.capacity import fit

    pools = feasibility.load_pools(REPO / "nodepools")
    plan = planner(profile)
    try:
        pods = plan(profile)
    except ProfileFitError as err:
        assert len(err.fits) == len(err.changes)
        for text, change in zip(err.fits, err.changes):
            fixed = fit.apply(profile, change)
            verdicts = feasibility.check(plan(fixed), pools)
            stuck = [v.pod.role for v in verdicts if not v.schedulable]
            assert not stuck, f"{name}: the suggestion '{text}' leaves {stuck} Pending"
        return
    assert all(v.schedulable for v in feasibility.check(pods, pools)), name


def test_the_suggestion_for_a_big_multi_cpu_worker_fits():
    """worker {cpus: 2, memory: 20Gi} once suggested {cpus: 1, memory: 10Gi}, which no class
    takes."""
    with pytest.raises(ProfileFitError) as err:
        dask.plan(sample_job(), dask_profile(worker=(2, "20Gi")))
    assert err.value.changes == [{"worker.cpus": 1, "worker.memory": "8Gi",
                                  "workers": {"min": 4, "max": 20}}]


def test_a_spark_suggestion_is_in_profile_keys_not_pod_totals():
    """'at most 8 GiB with 1 CPUs' read as executor.memory: 8g made a pod of 8.8 GiB."""
    from pipelines.kube.capacity import fit

    with pytest.raises(ProfileFitError) as err:
        spark.plan(sample_job(), spark_profile(1, "8g"))
    [memory] = [c["executor.memory"] for c in err.value.changes if "executor.memory" in c]
    fixed = fit.apply(spark_profile(1, "8g"), {"executor.memory": memory})
    assert fixed.executor.pod_memory_bytes <= 8 * 2**30
    spark.plan(sample_job(), fixed)


@pytest.mark.parametrize("memory", ["4Gi", "6Gi", "20Gi"])
def test_the_scheduler_gets_the_memory_it_asked_for(memory):
    p = dask.plan(sample_job(), dask_profile(scheduler=(1, memory)))
    assert p.scheduler.memory_bytes == parse_memory(memory) and not p.scheduler.shrunk
    [scheduler] = [pod for pod in p.pods(with_runner=True) if pod.role == "scheduler"]
    assert scheduler.memory_bytes == parse_memory(memory)


def test_a_scheduler_no_stable_node_holds_is_refused_not_shrunk():
    with pytest.raises(ProfileFitError) as err:
        dask.plan(sample_job(), dask_profile(scheduler=(1, "200Gi")))
    assert "the Dask scheduler" in str(err.value) and err.value.role == "scheduler"
    assert err.value.changes and all("scheduler.memory" in c for c in err.value.changes)


def test_check_scheduling_says_when_a_worker_is_sized_down(capsys):
    from pipelines.cli import main

    from .helpers import JOB_FILE

    assert main(["check-scheduling", str(JOB_FILE), "--profile",
                 str(REPO / "cluster_specs/dask/general-1cpu.yaml"),
                 "--nodepools", str(REPO / "nodepools")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: worker: " in out and "memory sized down from 4.0 GiB" in out
    assert "note: scheduler" not in out


JOB_TEXT = ("name: nightly\ninput: {uri: s3://raw-bucket/x/}\ntokenizer: {path: "
            "s3://models/t.json}\noutput: {uri: s3://out-bucket/x/}\n")


def test_validate_tells_jobs_from_manifests_by_content(tmp_path, schema_dir):
    (tmp_path / "elsewhere").mkdir()
    job = tmp_path / "elsewhere" / "nightly.yaml"       # a job outside any jobs/ folder
    job.write_text(JOB_TEXT)
    bad_job = tmp_path / "elsewhere" / "bad.yaml"
    bad_job.write_text(JOB_TEXT.replace("tokenizer:", "tokeniser:"))
    (tmp_path / "jobs").mkdir()
    manifest = tmp_path / "jobs" / "configmap.yaml"     # a manifest inside a jobs/ folder
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")
    neither = tmp_path / "jobs" / "notes.yaml"
    neither.write_text("owner: data-team\n")
    problems, _ = validate([job, bad_job, manifest, neither], root=tmp_path,
                           schema_dir=schema_dir)
    text = "\n".join(map(str, problems))
    assert str(job) not in text and str(manifest) not in text
    assert f"{bad_job}: job/nightly: " in text and "unknown key 'tokeniser'" in text
    assert f"{neither}: " in text and "nor a tokenyard job" in text


# -- failure limits, defined once ---------------------------------------------------


def test_rendered_dask_scheduler_and_local_engine_allow_the_same_failures(job):
    from pipelines.engines import limits
    from pipelines.engines import dask as dask_engine

    [cluster] = [o for o in dask.render(job, dask_profile()) if o["kind"] == "DaskCluster"]
    env = {e["name"]: e.get("value") for e in
           cluster["spec"]["scheduler"]["spec"]["containers"][0]["env"]}
    assert env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] == \
        str(limits.DASK_ALLOWED_FAILURES) == str(dask_engine.ALLOWED_FAILURES)


def test_the_embedded_scheduler_really_allows_them():
    from pipelines.engines import limits
    from pipelines.config import EngineConfig
    from pipelines.engines.dask import DaskEngine

    config = EngineConfig(kind="dask", workers=1, dashboard_address="127.0.0.1:0")
    with DaskEngine(config) as engine:
        allowed = engine.client.run_on_scheduler(lambda dask_scheduler:
                                                 dask_scheduler.allowed_failures)
    assert allowed == limits.DASK_ALLOWED_FAILURES


def test_rendered_spark_and_local_spark_use_the_same_failure_limits(job, spark_profile):
    pytest.importorskip("pyspark")
    from pipelines.engines import limits
    from pipelines.engines import spark as spark_engine

    submit = spark.render_submit(job, spark_profile)
    operator = [o for o in spark.render_operator(job, spark_profile)
                if o["kind"] == "SparkApplication"][0]
    for conf in (submit.conf, operator["spec"]["sparkConf"]):
        assert conf["spark.task.maxFailures"] == str(limits.SPARK_TASK_MAX_FAILURES)
        assert conf["spark.stage.maxConsecutiveAttempts"] == \
            str(limits.SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS)
        assert conf["spark.executor.maxNumFailures"] == \
            str(limits.spark_executor_max_failures(spark_profile.executors.max))
    assert spark_engine.local_with_retries("local[2]") == \
        f"local[2,{limits.SPARK_TASK_MAX_FAILURES}]"
    for key, value in spark_engine.FAILURE_CONF.items():
        assert submit.conf[key] == value


def test_the_documents_quote_the_limits():
    from pipelines.engines import limits
    readme = " ".join((REPO / "README.md").read_text().split())
    spark_doc = " ".join((REPO / "docs/spark-kubernetes.md").read_text().split())
    assert f"allows {limits.DASK_ALLOWED_FAILURES} failures per task" in readme
    assert f"`spark.task.maxFailures` is raised to {limits.SPARK_TASK_MAX_FAILURES}" in readme
    assert f"`local[N]` becomes `local[N,{limits.SPARK_TASK_MAX_FAILURES}]`" in readme
    found = re.search(r"`spark.task.maxFailures` and `spark.stage.maxConsecutiveAttempts` are "
                      r"(\d+)", spark_doc)
    assert found and int(found.group(1)) == limits.SPARK_TASK_MAX_FAILURES


def test_profile_edits_apply_to_sections_and_keys():
    from pipelines.kube.capacity import fit

    profile = dask_profile(worker=(4, "16Gi"), workers={"count": 2})
    edited = fit.apply(profile, {"worker.cpus": 1, "worker.memory": "4Gi",
                                 "workers": {"count": 8}})
    assert (edited.worker.cpus, edited.worker.memory, edited.workers.count) == (1, "4Gi", 8)
    assert yaml.safe_dump(profile.model_dump(by_alias=True, exclude_none=True))
