"""The built-in price table: compact, sourced, and equal to the reference data."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

from pipelines.cost import pricing
from pipelines.cost.pricing import builtin_on_demand, price_book
from pipelines.kube.capacity.instances import instance_types
from tests.helpers import REPO

TABLE = resources.files("pipelines.cost").joinpath(pricing.TABLE_FILE)


def test_table_is_compact_and_names_its_source():
    assert len(TABLE.read_bytes()) < 40_000
    table = pricing.table()
    assert "karpenter-provider-aws" in " ".join(table["sources"])
    assert table["generated"]
    assert table["columns"] == ["name", "on_demand_usd_per_hour"]  # nothing else


def test_every_worker_and_stable_type_has_a_price():
    names = {i.name for i in instance_types() if i.category in ("c", "m", "r")}
    assert set(builtin_on_demand()) == names


def test_prices_match_the_reference_data(aws_data):
    reference = json.loads((aws_data / "on-demand-prices.json").read_text())
    prices = reference["prices"][pricing.REGION]
    table = builtin_on_demand()
    assert table and all(table[name] == prices[name] for name in table)
    assert reference["generated_at"] == pricing.table()["source_generated_at"]


def test_committed_table_is_what_the_script_generates(aws_data):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "build_price_table.py"),
                           str(aws_data), "--region", pricing.REGION,
                           "--date", pricing.table()["generated"]],
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout == TABLE.read_text(encoding="utf-8")


def test_spot_estimate_is_the_advisor_saving_off_on_demand(aws_data):
    advisor = json.loads((aws_data / "spot-advisor-data.json").read_text())
    spot = advisor["spot_advisor"][pricing.REGION]["Linux"]
    book = price_book()
    checked = 0
    for i in instance_types():
        if i.category != "c" or i.name not in spot:
            continue
        price, estimated = book.spot_price(i)
        assert estimated
        assert price == builtin_on_demand()[i.name] * (1 - spot[i.name]["s"] / 100)
        checked += 1
    assert checked > 50
