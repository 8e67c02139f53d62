"""A profile on its NodePool: pods per node, NodeClaims, prices consistent with the tables."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import parse_job
from pipelines.cost import capacity
from pipelines.cost.pricing import builtin_on_demand, price_book
from pipelines.engines.limits import SPARK_TASK_MAX_FAILURES
from pipelines.errors import ProfileFitError
from pipelines.kube.capacity.instances import instance_types
from pipelines.kube.capacity.pools import MIN_INSTANCE_TYPES
from pipelines.kube.capacity.profiles import load_profile
from pipelines.kube.capacity.sizing import DAEMONSET_CPU_M, DAEMONSET_MEMORY_BYTES
from tests.cost.helpers import COMPUTE, GENERAL, SPARK, run_cli


@pytest.fixture
def job(corpus):
    return parse_job(corpus.job_dict())


def test_pods_per_node_count_allocatable_not_capacity(job):
    fleet = capacity.fleet(job, load_profile(COMPUTE), price_book(), workers=80)
    by_name = {o.name: o for o in fleet.offers}
    node = by_name["c6a.16xlarge"]
    # 64 vCPUs, but the kubelet, system reserve and DaemonSets leave 63 whole cores
    assert node.instance.vcpu == 64 and node.pods == 63
    assert node.pods == (node.instance.alloc_cpu_m - DAEMONSET_CPU_M) // 1000
    assert by_name["c6a.large"].pods == 1  # 2 vCPUs give one worker: half the node is overhead
    for o in fleet.offers:
        assert o.pods * fleet.worker.memory_bytes <= (o.instance.alloc_memory_bytes
                                                      - DAEMONSET_MEMORY_BYTES)


def test_karpenter_packs_full_claims_then_the_rest(job):
    fleet = capacity.fleet(job, load_profile(COMPUTE), price_book(), workers=200)
    assert [c.pods for c in fleet.claims] == [63, 63, 63, 11]
    assert fleet.pods == 200 and fleet.slots == 200


def test_claim_prices_are_the_tables_cheapest(job):
    book = price_book()
    table = builtin_on_demand()
    fleet = capacity.fleet(job, load_profile(COMPUTE), book, workers=80)
    for claim in fleet.claims:
        holding = [o for o in fleet.offers if o.pods >= claim.pods]
        assert len(holding) >= MIN_INSTANCE_TYPES
        assert claim.on_demand.on_demand_usd_per_hour == table[claim.on_demand.name]
        assert claim.on_demand.on_demand_usd_per_hour == min(table[o.name] for o in holding)
        spot = sorted(book.spot_price(o.instance)[0] for o in holding
                      if book.spot_price(o.instance)[0] is not None)
        assert [o.spot_usd_per_hour for o in claim.spot_mix] == spot[:MIN_INSTANCE_TYPES]
        sim = claim.claim()
        assert sim.spot_usd_per_hour == pytest.approx(sum(spot[:MIN_INSTANCE_TYPES]) / 5)
        assert sim.on_demand_usd_per_hour < table["c6a.16xlarge"] * 1.0001


def test_instance_types_are_the_pools_own(job):
    fleet = capacity.fleet(job, load_profile(GENERAL), price_book(), workers=10)
    assert fleet.pool.name == "general"
    allowed = {i.name for i in instance_types() if fleet.pool.allows(i)}
    assert {o.name for o in fleet.offers} <= allowed
    assert all(o.instance.category == "m" for o in fleet.offers)


def test_scheduler_and_runner_share_one_stable_node(job):
    fleet = capacity.fleet(job, load_profile(COMPUTE), price_book(), workers=8)
    assert len(fleet.stable) == 1 and fleet.stable[0].instance.category == "m"
    assert fleet.stable_pods == ("Dask scheduler", "job runner")


def test_spark_executors_bring_their_task_slots(job):
    fleet = capacity.fleet(job, load_profile(SPARK), price_book(), workers=10)
    assert fleet.engine == "spark" and fleet.slots_per_pod == 8 and fleet.slots == 80
    assert fleet.stable_pods == ("Spark driver",)
    assert fleet.grace_seconds == 80
    assert fleet.allowed_failures == SPARK_TASK_MAX_FAILURES


def test_the_pools_cpu_limit_caps_the_workers(job):
    fleet = capacity.fleet(job, load_profile(COMPUTE), price_book(), workers=5000)
    limit = float(fleet.pool.limits["cpu"])
    assert fleet.pods < 5000 and fleet.pods_asked == 5000
    assert sum(c.on_demand.instance.vcpu for c in fleet.claims) <= limit


def _profile(tmp_path, memory: str) -> str:
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "tokenyard.io/v1alpha1", "kind": "DaskProfile", "name": "huge",
        "image": "registry.example.com/tokenyard:0.1.0",
        "worker": {"cpus": 1, "memory": memory}, "workers": {"count": 4}}))
    return str(path)


def test_a_profile_that_fits_no_instance_type_is_refused(tmp_path, job):
    path = _profile(tmp_path, "64Gi")
    with pytest.raises(ProfileFitError) as err:
        capacity.fleet(job, load_profile(path), price_book(), workers=None, source=path)
    assert path in str(err.value) and err.value.exit_code == 2


def test_cli_names_the_profile_that_fits_nothing_and_exits_2(tmp_path, corpus):
    path = _profile(tmp_path, "64Gi")
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", path)
    assert code == 2 and out == ""
    assert path in err and "fits no class" in err and "Traceback" not in err
    assert not corpus.out.exists()  # refused before any input was read or written
