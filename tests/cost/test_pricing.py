"""Prices: the user's files in every form they come in, and how EC2 and EBS bill."""

from __future__ import annotations

import json

import pytest

from pipelines.config import parse_job
from pipelines.cost import capacity, pricing
from pipelines.cost.pricing import (
    RootVolume,
    billed_seconds,
    load_on_demand_file,
    load_spot_file,
    price_book,
    worker_root_volume,
)
from pipelines.errors import ConfigError
from pipelines.kube.capacity.profiles import load_profile
from tests.cost.helpers import COMPUTE, cost_json, run_cli


def _offer_product(sku: str, itype: str, os_: str = "Linux", **attrs) -> dict:
    return {"sku": sku, "productFamily": "Compute Instance",
            "attributes": {"instanceType": itype, "operatingSystem": os_, "tenancy": "Shared",
                           "preInstalledSw": "NA", "capacitystatus": "Used",
                           "regionCode": "eu-west-1", **attrs}}


def _offer_terms(sku: str, usd: str) -> dict:
    return {f"{sku}.JRTCKXETXF": {"priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
        "unit": "Hrs", "pricePerUnit": {"USD": usd}}}, "sku": sku}}


def test_plain_and_karpenter_style_on_demand_files(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"c6a.16xlarge": 2.0, "m6i.large": 0.1}))
    assert load_on_demand_file(plain) == {"c6a.16xlarge": 2.0, "m6i.large": 0.1}
    karpenter = tmp_path / "karpenter.json"
    karpenter.write_text(json.dumps({"prices": {"eu-west-1": {"c6a.16xlarge": 2.2}}}))
    assert load_on_demand_file(karpenter) == {"c6a.16xlarge": 2.2}


def test_aws_price_list_offer_file_keeps_linux_shared_on_demand(tmp_path):
    products = {
        "A": _offer_product("A", "c6a.16xlarge"),
        "B": _offer_product("B", "c6a.16xlarge", os_="Windows"),
        "C": _offer_product("C", "c6a.16xlarge", tenancy="Dedicated"),
        "D": _offer_product("D", "c6a.16xlarge", capacitystatus="UnusedCapacityReservation"),
        "E": _offer_product("E", "m6i.large"),
    }
    terms = {"OnDemand": {**{k: _offer_terms(k, "9.9") for k in "BCD"},
                          "A": _offer_terms("A", "2.6928"),
                          "E": _offer_terms("E", "0.107")}}
    path = tmp_path / "offer.json"
    path.write_text(json.dumps({"formatVersion": "v1.0", "products": products, "terms": terms}))
    assert load_on_demand_file(path) == {"c6a.16xlarge": 2.6928, "m6i.large": 0.107}


def test_aws_pricing_get_products_output(tmp_path):
    items = [json.dumps({"product": _offer_product(s, t),
                         "terms": {"OnDemand": _offer_terms(s, p)}})
             for s, t, p in (("X", "c6a.16xlarge", "2.5"), ("Y", "c6a.8xlarge", "1.25"))]
    path = tmp_path / "get-products.json"
    path.write_text(json.dumps({"FormatVersion": "aws_v1", "PriceList": items}))
    assert load_on_demand_file(path) == {"c6a.16xlarge": 2.5, "c6a.8xlarge": 1.25}


def test_a_price_list_of_several_regions_is_refused(tmp_path):
    products = {"A": _offer_product("A", "c6a.large"),
                "B": _offer_product("B", "c6a.xlarge", regionCode="us-west-2")}
    terms = {"OnDemand": {"A": _offer_terms("A", "0.1"), "B": _offer_terms("B", "0.2")}}
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"products": products, "terms": terms}))
    with pytest.raises(ConfigError, match="several regions"):
        load_on_demand_file(path)


@pytest.mark.parametrize("content, message", [
    ('{"c6a.large": "cheap"}', "not a positive number"),
    ('{"c6a.large": -1}', "not a positive number"),
    ("[1, 2]", "not a JSON object"),
    ("{not json", "not readable JSON"),
    ("{}", "lists no Linux on-demand price"),
])
def test_bad_on_demand_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_on_demand_file(path)
    assert str(path) in str(err.value) and err.value.exit_code == 2


def test_spot_price_history_export_latest_per_zone_averaged(tmp_path):
    rows = [
        {"AvailabilityZone": "us-east-1a", "InstanceType": "c6a.16xlarge",
         "ProductDescription": "Linux/UNIX", "SpotPrice": "0.900000",
         "Timestamp": "2026-11-01T10:00:00+00:00"},
        {"AvailabilityZone": "us-east-1a", "InstanceType": "c6a.16xlarge",
         "ProductDescription": "Linux/UNIX", "SpotPrice": "1.000000",
         "Timestamp": "2026-11-02T10:00:00+00:00"},
        {"AvailabilityZone": "us-east-1b", "InstanceType": "c6a.16xlarge",
         "ProductDescription": "Linux/UNIX", "SpotPrice": "1.200000",
         "Timestamp": "2026-11-01T12:00:00+00:00"},
        {"AvailabilityZone": "us-east-1b", "InstanceType": "c6a.16xlarge",
         "ProductDescription": "Windows", "SpotPrice": "5.000000",
         "Timestamp": "2026-11-03T12:00:00+00:00"},
    ]
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"SpotPriceHistory": rows}))
    assert load_spot_file(path) == {"c6a.16xlarge": pytest.approx(1.1)}


def test_user_spot_prices_replace_the_estimate_where_given(tmp_path, corpus):
    spot = tmp_path / "spot.json"
    spot.write_text(json.dumps({"c6a.16xlarge": 0.5}))
    book = price_book(spot_file=spot)
    fleet = capacity.fleet(parse_job(corpus.job_dict()), load_profile(COMPUTE), book,
                           workers=63)
    [claim] = fleet.claims
    assert claim.spot_mix[0].name == "c6a.16xlarge"
    assert claim.spot_mix[0].spot_usd_per_hour == 0.5 and not claim.spot_mix[0].spot_estimated
    assert all(o.spot_estimated for o in claim.spot_mix[1:])
    assert "spot.json" in book.spot_source


def test_user_price_files_reach_the_estimate(tmp_path, corpus):
    base = cost_json(corpus.job_file(), "--profile", COMPUTE, "--workers", "63")
    prices = {k: v * 2 for k, v in pricing.builtin_on_demand().items()}
    path = tmp_path / "double.json"
    path.write_text(json.dumps(prices))
    doubled = cost_json(corpus.job_file(), "--profile", COMPUTE, "--workers", "63",
                        "--prices", str(path))
    assert doubled["capacity"]["node_claims"][0]["on_demand_usd_per_hour"] == \
        2 * base["capacity"]["node_claims"][0]["on_demand_usd_per_hour"]
    base_nodes = base["strategies"]["on-demand"]["worker_nodes_usd"]
    assert doubled["strategies"]["on-demand"]["worker_nodes_usd"] == pytest.approx(
        2 * base_nodes, rel=1e-3)
    assert str(path) in doubled["assumptions"]["on_demand_prices"]


def test_a_bad_price_file_exits_2_with_one_paragraph(tmp_path, corpus):
    path = tmp_path / "bad.json"
    path.write_text('{"c6a.16xlarge": "lots"}')
    code, out, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE, "--prices", path)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err and "bad.json" in err


def test_per_second_billing_with_a_minute_minimum():
    assert billed_seconds(10) == 60
    assert billed_seconds(61.5) == 61.5
    assert billed_seconds(10, spot=True) == 60  # terminated by Karpenter: charged


def test_spot_interrupted_by_ec2_in_its_first_hour_is_free():
    assert billed_seconds(3599, spot=True, interrupted_by_ec2=True) == 0
    assert billed_seconds(3601, spot=True, interrupted_by_ec2=True) == 3601
    assert billed_seconds(3599, spot=False, interrupted_by_ec2=True) == 3599


def test_root_volume_cost_from_the_shipped_node_class():
    volume = worker_root_volume()
    assert volume == RootVolume(80, 3000, 250)
    # 80 GiB x $0.08 + (250 - 125) MiB/s x $0.04, per 730-hour month
    assert volume.usd_per_hour == pytest.approx((80 * 0.08 + 125 * 0.04) / 730)
    assert volume.usd(30) == pytest.approx(volume.usd_per_hour * 60 / 3600)
