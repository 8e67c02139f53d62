from pipelines.kube.capacity import pools
from pipelines.kube.capacity.instances import LABEL_CATEGORY, LABEL_FAMILY, LABEL_GENERATION
from pipelines.kube.render import nodepools

from .helpers import REPO


def test_shipped_nodepools_are_what_the_definitions_render():
    shipped = {p.name: p.read_text() for p in (REPO / "nodepools").glob("*.yaml")}
    assert shipped == nodepools.shipped_files(), (
        "nodepools/ differs from what pipelines/kube/capacity/pools.py defines: run "
        "python -m pipelines.kube.render.nodepools nodepools/")


def _req(pool, key):
    return next(r for r in pool.requirements if r.key == key)


def test_one_spot_first_pool_per_class_with_on_demand_fallback():
    for cls in pools.CLASSES:
        pool = pools.class_pool(cls)
        obj = nodepools.nodepool_object(pool)
        assert obj["spec"]["template"]["metadata"]["labels"][pools.LABEL_MEMORY_PER_CPU] == str(cls.gib_per_cpu)
        assert _req(pool, pools.LABEL_CAPACITY_TYPE).values == ("spot", "on-demand")
        assert "weight" not in obj["spec"]
        assert _req(pool, LABEL_CATEGORY).values == (cls.category,)
        assert _req(pool, LABEL_GENERATION).operator == "Gt"
        assert _req(pool, LABEL_GENERATION).values == ("4",)
        assert any(r.min_values and r.min_values >= 5 for r in pool.requirements)
        disruption = obj["spec"]["disruption"]
        assert disruption["consolidateAfter"] and disruption["budgets"]
        assert set(obj["spec"]["limits"]) >= {"cpu", "memory"}
        types = pool.instance_types()
        assert len(types) > 50
        assert len({i.size for i in types}) >= 6  # many sizes
        # the class label is true of every node the pool may launch
        assert {i.memory_mib / 1024 / i.vcpu for i in types} == {cls.gib_per_cpu}


def test_c5n_is_not_in_the_compute_class():
    compute = pools.class_pool(pools.CLASSES[0])
    assert "c5n" in _req(compute, LABEL_FAMILY).values
    assert not any(i.family == "c5n" for i in compute.instance_types())


def test_stable_pool_is_on_demand_and_tainted():
    stable = pools.stable_pool()
    assert _req(stable, pools.LABEL_CAPACITY_TYPE).values == ("on-demand",)
    assert stable.taints and stable.taints[0].key == pools.TAINT_DEDICATED
    assert stable.consolidation_policy == "WhenEmpty"


def test_gpu_pool_offers_only_gpu_instances_behind_a_gpu_taint():
    gpu = pools.gpu_pool()
    assert _req(gpu, LABEL_CATEGORY).values == ("g", "p")
    assert any(t.key == "nvidia.com/gpu" for t in gpu.taints)
    assert all(i.gpus > 0 for i in gpu.instance_types())


def test_ec2nodeclass():
    spec = nodepools.node_class_objects()[0]["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
    ebs = spec["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] and ebs["volumeType"] == "gp3" and ebs["iops"] and ebs["throughput"]
    assert 20 <= int(ebs["volumeSize"].removesuffix("Gi")) < 100
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["role"] and "karpenter.sh/discovery" in spec["subnetSelectorTerms"][0]["tags"]
