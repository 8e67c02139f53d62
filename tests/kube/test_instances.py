import json
import subprocess
import sys
from importlib import resources

from pipelines.kube.capacity import instances
from pipelines.kube.capacity.instances import instance_types
from .helpers import REPO

TABLE = resources.files("pipelines.kube.capacity").joinpath(instances.TABLE_FILE)


def test_table_is_compact_and_names_its_sources():
    assert len(TABLE.read_bytes()) < 200_000
    table = instances.table()
    sources = " ".join(table["sources"])
    assert "karpenter-provider-aws" in sources and "Spot" in sources
    assert table["generated"] == instances.GENERATED
    assert len(instance_types()) > 900


def test_table_matches_reference_data(data_dir):
    karpenter = json.loads((data_dir / "karpenter-instance-types.json").read_text())["instance_types"]
    advisor = json.loads((data_dir / "spot-advisor-data.json").read_text())
    spot = advisor["spot_advisor"][instances.REGION]["Linux"]
    for i in instance_types():
        ref = karpenter[i.name]
        labels = ref["labels"]
        assert i.vcpu == int(labels["karpenter.k8s.aws/instance-cpu"])
        assert i.memory_mib == int(labels["karpenter.k8s.aws/instance-memory"])
        assert i.family == labels["karpenter.k8s.aws/instance-family"]
        assert f"{i.alloc_memory_mib}Mi" == ref["allocatable"]["memory"]
        assert i.alloc_memory_mib < i.memory_mib  # allocatable is always below raw memory
        assert i.spot_savings_pct == spot.get(i.name, {}).get("s")
        assert i.spot_band == spot.get(i.name, {}).get("r")


def test_table_keeps_every_relevant_type(data_dir):
    karpenter = json.loads((data_dir / "karpenter-instance-types.json").read_text())["instance_types"]
    wanted = {name for name, ref in karpenter.items()
              if ref["labels"]["karpenter.k8s.aws/instance-category"] in ("c", "m", "r", "g", "p")
              and int(ref["labels"]["karpenter.k8s.aws/instance-generation"]) >= 5}
    assert wanted == {i.name for i in instance_types()}


def test_committed_table_is_what_the_script_generates(data_dir):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "build_instance_table.py"),
                           str(data_dir), "--region", instances.REGION,
                           "--date", instances.GENERATED],
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout == TABLE.read_text(encoding="utf-8")


def test_m_family_vcpu_allocates_about_three_and_a_half_gib():
    m6i = {i.name: i for i in instance_types()}["m6i.xlarge"]
    per_vcpu_gib = m6i.alloc_memory_mib / 1024 / m6i.vcpu
    assert 3.3 < per_vcpu_gib < 3.6
