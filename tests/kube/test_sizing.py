import pytest

from pipelines.errors import ConfigError, ProfileFitError
from pipelines.kube.capacity.profiles import parse_profile
from pipelines.kube.capacity.sizing import (DAEMONSET_CPU_M, DAEMONSET_MEMORY_BYTES, choose_class,
                                    size_core_worker, size_worker)

GIB = 2**30


@pytest.mark.parametrize(("cpus", "memory_gib", "klass"), [
    (4, 8, 2), (4, 6, 2), (4, 16, 4), (4, 10, 4), (4, 32, 8), (2, 12, 8), (1, 4, 4)])
def test_class_is_the_smallest_that_covers_memory_per_cpu(cpus, memory_gib, klass):
    assert choose_class(cpus, memory_gib * GIB, what="w").gib_per_cpu == klass


def test_ten_gib_per_vcpu_fits_no_class_and_says_what_would():
    with pytest.raises(ProfileFitError) as info:
        size_worker(4, 40 * GIB, what="a Dask worker")
    text = str(info.value)
    assert "10.0 GiB per vCPU" in text and "fits no class" in text
    assert "at most 32 GiB with 4 CPUs" in text and "at least 5 CPUs" in text
    assert info.value.exit_code == 2


def test_request_bigger_than_any_instance_of_the_class():
    with pytest.raises(ProfileFitError, match="largest node of the general pool has 64 vCPUs"):
        size_worker(200, 800 * GIB, what="a Dask worker")


def test_requests_are_sized_to_allocatable_not_raw_memory():
    size = size_worker(4, 16 * GIB, what="w")
    assert size.memory_class.gib_per_cpu == 4
    assert size.memory_bytes < 14 * GIB and size.shrunk
    assert size.cpu_request_m < 4000 and size.cpu_limit_m == 4000
    assert all(i.vcpu >= 4 and i.category == "m" for i in size.fits_on)
    # it fits on every 4-vCPU node of the class, so the smallest shape is usable
    four = [i for i in size.fits_on if i.vcpu == 4]
    assert len(four) >= 10
    assert all(i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES >= size.memory_bytes for i in four)


def test_memory_below_allocatable_is_kept():
    size = size_worker(3, 9 * GIB, what="w")
    assert size.memory_bytes == 9 * GIB and not size.shrunk


def _spark(executor: dict) -> dict:
    return {"apiVersion": "tokenyard.io/v1alpha1", "kind": "SparkProfile", "name": "s",
            "image": "registry.example.com/tokenyard:0.1.0", "sparkVersion": "4.3.0",
            "executor": executor, "executors": {"max": 4}}


def test_spark_executor_class_includes_overhead_and_pyspark_memory():
    from pipelines.kube.checks.validate import sample_job
    from pipelines.kube.render import spark

    heap_only = parse_profile(_spark({"cores": 4, "memory": "6g"}))
    assert spark.plan(sample_job(), heap_only).executor.memory_class.gib_per_cpu == 2
    with_python = parse_profile(_spark({"cores": 4, "memory": "6g", "pysparkMemory": "6g"}))
    plan = spark.plan(sample_job(), with_python)
    # 6g heap + 614m overhead + 6g PySpark = 12.6 GiB for 4 cores: 4 GiB per vCPU
    assert plan.executor.memory_class.gib_per_cpu == 4
    assert plan.executor.memory_bytes == (6144 + 614 + 6144) * 2**20


def test_spark_executor_that_fits_no_class():
    from pipelines.kube.checks.validate import sample_job
    from pipelines.kube.render import spark

    profile = parse_profile(_spark({"cores": 2, "memory": "8g", "pysparkMemory": "12g"}))
    with pytest.raises(ProfileFitError, match="Spark executor.*fits no class"):
        spark.plan(sample_job(), profile)


def test_spark_executor_too_big_for_any_instance_of_its_class():
    from pipelines.kube.checks.validate import sample_job
    from pipelines.kube.render import spark

    profile = parse_profile(_spark({"cores": 64, "memory": "200g", "pysparkMemory": "280g"}))
    with pytest.raises(ProfileFitError, match="instance type"):
        spark.plan(sample_job(), profile)


def test_bad_profiles_are_config_errors():
    with pytest.raises(ConfigError, match="workers"):
        parse_profile({"apiVersion": "tokenyard.io/v1alpha1", "kind": "DaskProfile",
                       "name": "x", "image": "i", "worker": {"cpus": 1, "memory": "4Gi"},
                       "workers": {"count": 2, "max": 4}})
    with pytest.raises(ConfigError, match="not a profile kind"):
        parse_profile({"apiVersion": "tokenyard.io/v1alpha1", "kind": "Nope"})


@pytest.mark.parametrize("gib_per_cpu", [2, 4, 8])
def test_core_worker_owns_a_core_and_fills_every_node(gib_per_cpu):
    size = size_core_worker(gib_per_cpu * GIB, what="a Dask worker")
    assert size.memory_class.gib_per_cpu == gib_per_cpu
    assert (size.cpus, size.cpu_request_m, size.cpu_limit_m) == (1, 1000, 1000)
    assert size.shrunk and size.memory_bytes > 0.8 * gib_per_cpu * GIB
    assert all(i.vcpu >= 2 for i in size.fits_on)  # a 1-vCPU node allocates less than a core
    for i in size.fits_on:
        cores = (i.alloc_cpu_m - DAEMONSET_CPU_M) // 1000
        # never more workers than cores, and memory never leaves a core without a worker
        assert cores < i.vcpu
        assert (i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES) // size.memory_bytes >= cores


def test_core_worker_memory_below_the_share_is_kept():
    size = size_core_worker(3 * GIB, what="w")
    assert size.memory_bytes == 3 * GIB and not size.shrunk
    assert size.memory_class.gib_per_cpu == 4


def test_core_worker_that_fits_no_class():
    with pytest.raises(ProfileFitError, match="fits no class"):
        size_core_worker(10 * GIB, what="a Dask worker")
