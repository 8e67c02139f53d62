"""Regenerate the compact instance table, ``pipelines/kube/capacity/instance_types.json``.

Run from the repository root::

    python tools/build_instance_table.py ../shared/data/aws > pipelines/kube/capacity/instance_types.json

It keeps only what the renderers and ``check-scheduling`` use: Linux instance types of
categories c, m, r (the CPU:memory classes) and g, p (GPU), generation 5 and later, with
vCPUs, memory, what Karpenter says a node allocates after system overhead, GPUs, arch, and
the Spot Advisor savings and interruption band for one region.
"""

from __future__ import annotations

import sys

import compact_table

#: categories kept: the three CPU:memory classes and the two GPU categories
CATEGORIES = ("c", "m", "r", "g", "p")
MIN_GENERATION = 5
#: the Spot Instance Advisor feed in ../shared/data/aws was taken on this day
SPOT_ADVISOR_SNAPSHOT = "2025-06-28"
OUTPUT = "pipelines/kube/capacity/instance_types.json"

#: the fields of ``pipelines.kube.capacity.instances.InstanceType``, in order
COLUMNS = ("name", "category", "family", "generation", "size", "arch", "vcpu", "memory_mib",
           "alloc_cpu_m", "alloc_memory_mib", "pods", "gpus", "gpu_name",
           "spot_savings_pct", "spot_band")


def _mebibytes(quantity: str) -> int:
    if not quantity.endswith("Mi"):
        raise ValueError(f"expected a memory quantity in Mi, got {quantity!r}")
    return int(quantity[:-2])


def _millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(quantity) * 1000


def rows(karpenter: dict, advisor: dict, region: str) -> list[tuple]:
    spot = advisor["spot_advisor"][region]["Linux"]
    out = []
    for name, facts in sorted(karpenter["instance_types"].items()):
        labels, alloc = facts["labels"], facts["allocatable"]
        category = labels.get("karpenter.k8s.aws/instance-category")
        generation = int(labels.get("karpenter.k8s.aws/instance-generation", "0"))
        if category not in CATEGORIES or generation < MIN_GENERATION:
            continue
        if labels.get("kubernetes.io/os") != "linux":
            continue
        advice = spot.get(name, {})
        out.append((
            name, category, labels["karpenter.k8s.aws/instance-family"], generation,
            labels["karpenter.k8s.aws/instance-size"], labels["kubernetes.io/arch"],
            int(labels["karpenter.k8s.aws/instance-cpu"]),
            int(labels["karpenter.k8s.aws/instance-memory"]),
            _millicores(alloc["cpu"]), _mebibytes(alloc["memory"]), int(alloc["pods"]),
            int(labels.get("karpenter.k8s.aws/instance-gpu-count", "0")),
            labels.get("karpenter.k8s.aws/instance-gpu-name", ""),
            advice.get("s"), advice.get("r"),
        ))
    return out


def render(karpenter: dict, advisor: dict, region: str, date: str) -> str:
    meta = {
        "about": "Compact EC2 instance table (generated; do not edit by hand): what each "
                 "instance type is and what a node of it allocates to pods.",
        "generated": date,
        "generator": f"python tools/build_instance_table.py ../shared/data/aws > {OUTPUT}",
        "sources": [
            f"instance facts and allocatable after overhead: {karpenter['source']}",
            f"spot savings (% below on-demand) and interruption band for {region} Linux: "
            f"AWS Spot Instance Advisor feed, snapshot of {SPOT_ADVISOR_SNAPSHOT}",
        ],
        "kept": f"Linux types of categories {', '.join(CATEGORIES)}, generation "
                f"{MIN_GENERATION} and later.",
        "units": "memory_mib and alloc_memory_mib in MiB, alloc_cpu_m in millicores; "
                 "spot_savings_pct and spot_band are null for a type the Advisor does not "
                 "list; gpu_name is empty without GPUs.",
        "region": region,
        # the label of each interruption band, by band number
        "bands": [r["label"] for r in sorted(advisor["ranges"], key=lambda r: r["index"])],
    }
    return compact_table.dumps(meta, COLUMNS, rows(karpenter, advisor, region))


def main(argv: list[str] | None = None) -> int:
    args = compact_table.parser(
        __doc__.splitlines()[0],
        "folder with karpenter-instance-types.json and spot-advisor-data.json").parse_args(argv)
    karpenter = compact_table.read_json(args.data_dir, "karpenter-instance-types.json")
    advisor = compact_table.read_json(args.data_dir, "spot-advisor-data.json")
    sys.stdout.write(render(karpenter, advisor, args.region, args.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
