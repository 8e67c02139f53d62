"""Rendered objects: golden files, placement, spot safety, Pod Security, no credentials."""

import ast

import pytest
import yaml

from pipelines.kube.capacity.pools import DO_NOT_DISRUPT, LABEL_MEMORY_PER_CPU, LABEL_POOL
from pipelines.kube.checks import podsecurity
from pipelines.kube.checks.validate import embedded_pod_specs, object_problems
from pipelines.kube.render import dask, spark, yamlio

from .helpers import assert_no_credentials, check_golden


@pytest.fixture(scope="module")
def dask_cluster(job, dask_profile):
    return dask.render(job, dask_profile)


@pytest.fixture(scope="module")
def dask_job(job, dask_profile):
    return dask.render(job, dask_profile, as_job=True)


@pytest.fixture(scope="module")
def spark_submit(job, spark_profile):
    return spark.render_submit(job, spark_profile)


@pytest.fixture(scope="module")
def spark_operator(job, spark_profile):
    return spark.render_operator(job, spark_profile)


def all_rendered(dask_cluster, dask_job, spark_submit, spark_operator):
    return {"dask-cluster.yaml": dask_cluster, "dask-job.yaml": dask_job,
            "spark-submit.yaml": spark_submit.objects(), "spark-operator.yaml": spark_operator}


def test_every_render_matches_its_golden_file(dask_cluster, dask_job, spark_submit, spark_operator):
    for name, objects in all_rendered(dask_cluster, dask_job, spark_submit, spark_operator).items():
        check_golden(name, yamlio.dump_all(objects))
    check_golden("spark-submit.conf", spark.properties_text(spark_submit.conf)
                 + " ".join(spark_submit.command) + "\n")


def test_every_rendered_object_validates(schemas, dask_cluster, dask_job, spark_submit, spark_operator):
    for name, objects in all_rendered(dask_cluster, dask_job, spark_submit, spark_operator).items():
        for obj in objects:
            assert object_problems(obj, name, schemas) == []


def test_every_rendered_pod_is_restricted(dask_cluster, dask_job, spark_submit, spark_operator):
    pods = 0
    for objects in all_rendered(dask_cluster, dask_job, spark_submit, spark_operator).values():
        for obj in objects:
            for path, spec in embedded_pod_specs(obj):
                assert list(podsecurity.restricted_findings(spec, path)) == []
                assert spec["serviceAccountName"] == "tokenyard-pipeline"
                for c in spec["containers"]:
                    sc = c["securityContext"]
                    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
                    assert sc["allowPrivilegeEscalation"] is False
                assert any(v.get("emptyDir") is not None for v in spec["volumes"])
                assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
                pods += 1
    assert pods == 2 + 3 + 2 + 2


def test_restricted_check_catches_a_privileged_pod(dask_cluster):
    spec = yaml.safe_load(yamlio.dump(dask_cluster[0]))["spec"]["worker"]["spec"]
    spec["containers"][0]["securityContext"] = {"runAsUser": 0}
    spec["hostNetwork"] = True
    rules = {r for _, r in podsecurity.restricted_findings(spec)}
    assert any("allowPrivilegeEscalation" in r for r in rules)
    assert any("hostNetwork" in r for r in rules)
    assert any("drop ALL" in r for r in rules)
    assert any("read-only" in r for r in rules)


def test_no_credentials_in_anything_rendered(dask_cluster, dask_job, spark_submit, spark_operator):
    for objects in all_rendered(dask_cluster, dask_job, spark_submit, spark_operator).values():
        assert_no_credentials(yamlio.dump_all(objects))
    assert_no_credentials(spark.properties_text(spark_submit.conf))


def test_dask_scheduler_and_workers(dask_cluster):
    cluster, autoscaler = dask_cluster
    scheduler = cluster["spec"]["scheduler"]
    assert scheduler["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"
    assert scheduler["spec"]["nodeSelector"] == {LABEL_POOL: "stable"}
    env = {e["name"]: e["value"] for e in scheduler["spec"]["containers"][0]["env"]}
    assert int(env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"]) > 3
    routes = ast.literal_eval(env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"])
    assert "distributed.http.scheduler.api" in routes
    assert "distributed.http.health" in routes

    worker = cluster["spec"]["worker"]["spec"]
    assert worker["nodeSelector"] == {LABEL_MEMORY_PER_CPU: "4"}
    assert worker["terminationGracePeriodSeconds"] < 120
    container = worker["containers"][0]
    args = container["args"]
    # one single-threaded worker process per 1-CPU pod (the operator needs one per pod)
    assert args[args.index("--nworkers") + 1] == "1"
    assert args[args.index("--nthreads") + 1] == "1"
    assert container["resources"]["limits"]["cpu"] == "1"
    assert container["lifecycle"]["preStop"]["exec"]["command"][:3] == [
        "python", "-m", "pipelines.kube.retire"]
    timeout = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert timeout < worker["terminationGracePeriodSeconds"]
    assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"]
    assert DO_NOT_DISRUPT not in (cluster["spec"]["worker"].get("metadata") or {}).get("annotations", {})
    assert autoscaler["kind"] == "DaskAutoscaler"
    assert (autoscaler["spec"]["minimum"], autoscaler["spec"]["maximum"]) == (8, 160)


def test_dask_env_routes_parse_as_dask_config(dask_cluster):
    import dask.config

    env = {e["name"]: e["value"] for e in
           dask_cluster[0]["spec"]["scheduler"]["spec"]["containers"][0]["env"]}
    config = dask.config.collect_env({k: v for k, v in env.items() if k.startswith("DASK_")})
    with dask.config.set(config):
        assert "distributed.http.scheduler.api" in dask.config.get(
            "distributed.scheduler.http.routes")
        assert dask.config.get("distributed.scheduler.allowed-failures") == 20


def test_fixed_count_profile_has_no_autoscaler(job):
    from pipelines.kube.capacity.profiles import load_profile

    from .helpers import REPO
    objects = dask.render(job, load_profile(REPO / "cluster_specs/dask/compute-1cpu.yaml"))
    assert [o["kind"] for o in objects] == ["DaskCluster"]
    assert objects[0]["spec"]["worker"]["replicas"] == 80


@pytest.mark.parametrize("name", ["general-1cpu", "compute-1cpu", "memory-1cpu"])
def test_shipped_dask_profiles_are_one_cpu_workers(job, name):
    from pipelines.kube.capacity.profiles import load_profile

    from .helpers import REPO
    profile = load_profile(REPO / f"cluster_specs/dask/{name}.yaml")
    assert profile.worker.cpus == 1
    container = dask.render(job, profile)[0]["spec"]["worker"]["spec"]["containers"][0]
    assert container["args"][container["args"].index("--nthreads") + 1] == "1"


@pytest.mark.parametrize("workers, more", [("{min: 2, max: 40}", "min: 8, max: 160"),
                                           ("{count: 10}", "count: 40")])
def test_dask_worker_of_several_cpus_is_refused(job, workers, more):
    from pipelines.errors import ProfileFitError
    from pipelines.kube.capacity.profiles import parse_profile

    profile = parse_profile(yaml.safe_load(
        "apiVersion: tokenyard.io/v1alpha1\nkind: DaskProfile\nname: four\nimage: i\n"
        f"worker: {{cpus: 4, memory: 16Gi}}\nworkers: {workers}\n"), source="four.yaml")
    for as_job in (False, True):
        with pytest.raises(ProfileFitError) as info:
            dask.render(job, profile, as_job=as_job, source="four.yaml")
        text = str(info.value)
        assert "four.yaml" in text and "asks for 4 CPUs" in text
        assert "1.21x" in text and "one worker process per pod" in text
        assert f"worker: {{cpus: 1, memory: 4Gi}} with 4x the workers (workers: {{{more}}})" in text


def test_dask_job_carries_the_job_file(dask_job, job):
    configmap, daskjob, _ = dask_job
    text = configmap["data"]["job.yaml"]
    in_pod = yaml.safe_load(text)
    assert in_pod["output"]["uri"] == job.output.uri
    assert in_pod["engine"]["scheduler_address"] == dask.scheduler_address("books-gpt2", "tokenyard")
    runner = daskjob["spec"]["job"]["spec"]
    assert runner["containers"][0]["args"][:3] == ["tokenyard", "run", "/etc/tokenyard/job.yaml"]
    mount = next(m for m in runner["containers"][0]["volumeMounts"] if m["name"] == "job")
    assert mount["readOnly"] is True
    assert runner["volumes"][0]["configMap"]["name"] == configmap["metadata"]["name"]
    assert daskjob["spec"]["job"]["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"


def test_local_paths_cannot_run_in_pods(dask_profile):
    from pipelines.config import load_job
    from pipelines.errors import ConfigError

    from .helpers import REPO
    local = load_job(REPO / "jobs" / "quickstart.yaml")
    with pytest.raises(ConfigError, match="pods on Kubernetes cannot read"):
        dask.render(local, dask_profile, as_job=True)


def test_spark_submit_conf(spark_submit):
    conf = spark_submit.conf
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc"
    assert conf["spark.submit.deployMode"] == "cluster"
    for key in ("spark.decommission.enabled", "spark.storage.decommission.enabled",
                "spark.storage.decommission.shuffleBlocks.enabled",
                "spark.storage.decommission.rddBlocks.enabled",
                "spark.dynamicAllocation.enabled",
                "spark.dynamicAllocation.shuffleTracking.enabled"):
        assert conf[key] == "true"
    assert int(conf["spark.task.maxFailures"]) > 4
    kill = int(conf["spark.executor.decommission.forceKillTimeout"].removesuffix("s"))
    assert kill < spark_submit.executor_template["spec"]["terminationGracePeriodSeconds"] < 120
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.maxExecutors"]) == ("1", "50")
    assert conf["spark.executor.pyspark.memory"] == "9216m"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "tokenyard-pipeline"
    assert spark_submit.command[-4:] == ["run", "/etc/tokenyard/job.yaml", "--engine", "spark"]


def test_spark_driver_stays_on_stable_nodes_and_executors_select_their_memory_class(spark_submit, spark_operator):
    driver, executor = spark_submit.driver_template, spark_submit.executor_template
    assert driver["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"
    assert driver["spec"]["nodeSelector"] == {LABEL_POOL: "stable"}
    assert executor["spec"]["nodeSelector"] == {LABEL_MEMORY_PER_CPU: "4"}
    app = spark_operator[1]
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert app["spec"]["driver"]["annotations"][DO_NOT_DISRUPT] == "true"
    assert app["spec"]["executor"]["nodeSelector"] == {LABEL_MEMORY_PER_CPU: "4"}
    assert app["spec"]["dynamicAllocation"]["shuffleTrackingEnabled"] is True
    assert app["spec"]["mainApplicationFile"] == "local:///opt/tokenyard/main.py"
