"""Regenerate ``pipelines/cost/_price_data.py``, the compact on-demand price table.

Run from the repository root::

    python tools/build_price_table.py ../shared/data/aws > pipelines/cost/_price_data.py

It keeps only what ``tokenyard cost`` prices: the on-demand Linux price in USD per
instance-hour of every instance type in the compact instance table
(``pipelines/kube/_instance_data.py``) whose category a tokenization pool can launch
(c, m, r: the three CPU:memory classes and the stable pool). Spot savings and
interruption bands are already in the instance table and are not repeated here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

#: categories priced: the worker classes (c, m, r) and the stable pool (m)
CATEGORIES = ("c", "m", "r")
REGION = "us-east-1"


def rows(prices: dict, region: str) -> list[tuple[str, float]]:
    from pipelines.kube.capacity.instances import instance_types

    table = prices["prices"][region]
    return [(i.name, float(table[i.name])) for i in instance_types()
            if i.category in CATEGORIES and i.name in table]


def render(prices: dict, region: str, date: str) -> str:
    body = "\n".join(f"{name},{price!r}" for name, price in rows(prices, region))
    return f'''"""Compact on-demand price table (generated; do not edit by hand).

Generated {date} by ``python tools/build_price_table.py`` from:

* on-demand Linux prices, USD per instance-hour, {region}: {prices["source"]},
  generated_at {prices["generated_at"]}

Kept: the instance types of categories {", ".join(CATEGORIES)} in
``pipelines/kube/_instance_data.py``.
"""

REGION = "{region}"
GENERATED = "{date}"
SOURCE_GENERATED_AT = "{prices["generated_at"]}"
COLUMNS = ("name", "on_demand_usd_per_hour")

CSV = """\\
{body}
"""
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with on-demand-prices.json")
    parser.add_argument("--region", default=REGION)
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    prices = json.loads((args.data_dir / "on-demand-prices.json").read_text())
    sys.stdout.write(render(prices, args.region, args.date))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
