"""Regenerate ``_instance_data.py``, the compact instance table, from reference data.

Run from the repository root::

    python -m pipelines.kube.build_instance_table ../shared/data/aws > pipelines/kube/_instance_data.py

It keeps only what the renderers and ``check-scheduling`` use: Linux instance types of
categories c, m, r (the CPU:memory classes) and g, p (GPU), generation 5 and later, with
vCPUs, memory, what Karpenter says a node allocates after system overhead, GPUs, arch, and
the Spot Advisor savings and interruption band for one region.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

#: categories kept: the three CPU:memory classes and the two GPU categories
CATEGORIES = ("c", "m", "r", "g", "p")
MIN_GENERATION = 5
DEFAULT_REGION = "us-east-1"

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
            advice.get("s", ""), advice.get("r", ""),
        ))
    return out


def render(karpenter: dict, advisor: dict, region: str, date: str) -> str:
    body = "\n".join(",".join(str(v) for v in row) for row in rows(karpenter, advisor, region))
    bands = "; ".join(f"{r['index']} = {r['label']}" for r in advisor["ranges"])
    return f'''"""Compact EC2 instance table (generated; do not edit by hand).

Generated {date} by ``python -m pipelines.kube.build_instance_table`` from:

* instance facts and allocatable after overhead: {karpenter["source"]}
* spot savings (% below on-demand) and interruption band for {region} Linux: AWS Spot
  Instance Advisor feed, snapshot of 2025-06-28 (bands: {bands})

Kept: Linux types of categories {", ".join(CATEGORIES)}, generation {MIN_GENERATION} and later.
Memory and allocatable memory are in MiB, allocatable CPU in millicores.
"""

REGION = "{region}"
GENERATED = "{date}"
COLUMNS = {COLUMNS!r}
BANDS = {tuple(r["label"] for r in advisor["ranges"])!r}

CSV = """\\
{body}
"""
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with karpenter-instance-types.json "
                        "and spot-advisor-data.json")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    karpenter = json.loads((args.data_dir / "karpenter-instance-types.json").read_text())
    advisor = json.loads((args.data_dir / "spot-advisor-data.json").read_text())
    sys.stdout.write(render(karpenter, advisor, args.region, args.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
