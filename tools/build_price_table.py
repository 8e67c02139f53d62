"""Regenerate the compact on-demand price table, ``pipelines/cost/on_demand_prices.json``.

Run from the repository root::

    python tools/build_price_table.py ../shared/data/aws > pipelines/cost/on_demand_prices.json

It keeps only what ``tokenyard cost`` prices: the on-demand Linux price in USD per
instance-hour of every instance type in the compact instance table
(``pipelines/kube/capacity/instance_types.json``, from ``build_instance_table.py``) whose
category a tokenization pool can launch (c, m, r: the three CPU:memory classes and the
stable pool). Spot savings and interruption bands are already in the instance table and
are not repeated here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import compact_table

#: categories priced: the worker classes (c, m, r) and the stable pool (m)
CATEGORIES = ("c", "m", "r")
OUTPUT = "pipelines/cost/on_demand_prices.json"
COLUMNS = ("name", "on_demand_usd_per_hour")


def rows(prices: dict, region: str) -> list[tuple[str, float]]:
    from pipelines.kube.capacity.instances import instance_types

    table = prices["prices"][region]
    return [(i.name, float(table[i.name])) for i in instance_types()
            if i.category in CATEGORIES and i.name in table]


def render(prices: dict, region: str, date: str) -> str:
    meta = {
        "about": "Compact on-demand price table (generated; do not edit by hand).",
        "generated": date,
        "generator": f"python tools/build_price_table.py ../shared/data/aws > {OUTPUT}",
        "sources": [f"on-demand Linux prices, USD per instance-hour, {region}: "
                    f"{prices['source']}, generated_at {prices['generated_at']}"],
        "source_generated_at": prices["generated_at"],
        "kept": f"the instance types of categories {', '.join(CATEGORIES)} in "
                "pipelines/kube/capacity/instance_types.json.",
        "region": region,
    }
    return compact_table.dumps(meta, COLUMNS, rows(prices, region))


def main(argv: list[str] | None = None) -> int:
    args = compact_table.parser(__doc__.splitlines()[0],
                                "folder with on-demand-prices.json").parse_args(argv)
    prices = compact_table.read_json(args.data_dir, "on-demand-prices.json")
    sys.stdout.write(render(prices, args.region, args.date))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
