"""What an instance-hour costs, on-demand and on spot, and how EC2 bills a node.

On-demand prices come from the built-in us-east-1 table (``_price_data``, generated
from the price list Karpenter ships) or from a user's file: a JSON object
``{"m6i.xlarge": 0.192}``, Karpenter's ``{"prices": {REGION: {...}}}``, an AWS Price
List offer file (``products`` + ``terms``) or the output of ``aws pricing
get-products`` (``PriceList``) for one region. Spot prices are an *estimate* from the
Spot Instance Advisor's savings figure (on-demand x (1 - savings)) unless the user
gives a file: a JSON object of prices, or the output of ``aws ec2
describe-spot-price-history`` (per type: the latest price in each zone, averaged over
zones). A type the spot file does not list keeps the Advisor estimate, and says so.

Billing, as EC2 bills Linux: per second with a 60-second minimum per instance; a spot
instance that EC2 interrupts within its first hour is not charged (one that Karpenter
terminates is charged for the seconds used). Each node also pays for its EBS root
volume (gp3, per second), from the shipped EC2NodeClass's size, IOPS and throughput.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pipelines.cost import _price_data
from pipelines.errors import ConfigError
from pipelines.kube.capacity.instances import InstanceType

REGION = _price_data.REGION
#: EC2 bills Linux instances per second, with this minimum per instance
MIN_BILLED_SECONDS = 60
#: a spot instance EC2 interrupts within this many seconds of launch is not charged
FREE_INTERRUPTED_SECONDS = 3600
SECONDS_PER_HOUR = 3600
#: AWS prices EBS per GB-month; a month is 730 hours in its price list
HOURS_PER_MONTH = 730
#: gp3 in us-east-1: storage, and IOPS and throughput above the free baseline
GP3_USD_PER_GIB_MONTH = 0.08
GP3_USD_PER_IOPS_MONTH = 0.005
GP3_USD_PER_MIBS_MONTH = 0.04
GP3_FREE_IOPS = 3000
GP3_FREE_MIBS = 125


@functools.cache
def builtin_on_demand() -> dict[str, float]:
    """The built-in table: instance type -> on-demand USD per hour in ``REGION``."""
    reader = csv.reader(io.StringIO(_price_data.CSV))
    return {name: float(price) for name, price in reader}


@dataclass(frozen=True)
class PriceBook:
    """Hourly prices by instance type, and where they came from."""

    on_demand: Mapping[str, float]
    #: spot prices from a user's file (types it lists); the rest are Advisor estimates
    spot_file: Mapping[str, float]
    on_demand_source: str
    spot_source: str

    def on_demand_price(self, instance: InstanceType) -> float | None:
        return self.on_demand.get(instance.name)

    def spot_price(self, instance: InstanceType) -> tuple[float | None, bool]:
        """``(USD per hour, estimated)``; None when neither the file nor the Advisor
        knows the type."""
        if instance.name in self.spot_file:
            return self.spot_file[instance.name], False
        od = self.on_demand_price(instance)
        if od is None or instance.spot_savings_pct is None:
            return None, True
        return od * (1 - instance.spot_savings_pct / 100), True


def price_book(on_demand_file: str | Path | None = None,
               spot_file: str | Path | None = None) -> PriceBook:
    if on_demand_file is None:
        on_demand = builtin_on_demand()
        od_source = (f"built-in {REGION} on-demand table (Karpenter's generated price list, "
                     f"{_price_data.SOURCE_GENERATED_AT[:10]})")
    else:
        on_demand = load_on_demand_file(on_demand_file)
        od_source = f"on-demand prices from {on_demand_file}"
    spot = load_spot_file(spot_file) if spot_file is not None else {}
    spot_source = (f"spot prices from {spot_file}; types it does not list are estimated "
                   "from the Spot Instance Advisor" if spot_file is not None else
                   "spot prices ESTIMATED as on-demand x (1 - Spot Instance Advisor savings, "
                   f"{REGION}, snapshot 2025-06-28); pass --spot-prices with a spot price "
                   "history export for current prices")
    return PriceBook(on_demand, spot, od_source, spot_source)


# -- files ---------------------------------------------------------------------------


def _read_json(path: str | Path, what: str, example: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"the {what} file {path} does not exist.", hint=example) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"the {what} file {path} is not readable JSON ({err}).",
                          hint=example) from None


def _mapping(data: Any, path: str | Path, what: str, example: str) -> dict[str, float]:
    bad = [k for k, v in data.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
           or not math.isfinite(v)]
    if bad:
        raise ConfigError(f"the {what} file {path} maps instance types to prices, but "
                          f"{bad[0]!r} has {data[bad[0]]!r}, not a positive number of USD "
                          "per hour.", hint=example)
    return {str(k): float(v) for k, v in data.items()}


_OD_EXAMPLE = ('Give a JSON object such as {"m6i.xlarge": 0.192}, or an AWS Price List '
               "offer file or 'aws pricing get-products' output for one region.")


def load_on_demand_file(path: str | Path) -> dict[str, float]:
    """On-demand USD per hour by instance type, from any of the forms the module names."""
    data = _read_json(path, "on-demand price", _OD_EXAMPLE)
    if isinstance(data, dict) and "products" in data and "terms" in data:
        prices = _offer_file(data["products"], data["terms"].get("OnDemand") or {})
    elif isinstance(data, dict) and isinstance(data.get("PriceList"), list):
        items = [json.loads(p) if isinstance(p, str) else p for p in data["PriceList"]]
        products = {str(i): item.get("product") or {} for i, item in enumerate(items)}
        terms = {str(i): (item.get("terms") or {}).get("OnDemand") or {}
                 for i, item in enumerate(items)}
        prices = _offer_file(products, terms)
    elif isinstance(data, dict) and isinstance(data.get("prices"), dict):
        regions = data["prices"]
        if len(regions) != 1:
            raise ConfigError(f"the on-demand price file {path} holds prices for "
                              f"{len(regions)} regions ({', '.join(sorted(regions))}); "
                              "tokenyard cost prices one region.",
                              hint="Keep the region the cluster runs in.")
        prices = _mapping(next(iter(regions.values())), path, "on-demand price", _OD_EXAMPLE)
    elif isinstance(data, dict):
        prices = _mapping(data, path, "on-demand price", _OD_EXAMPLE)
    else:
        raise ConfigError(f"the on-demand price file {path} holds a {type(data).__name__}, "
                          "not a JSON object.", hint=_OD_EXAMPLE)
    if not prices:
        raise ConfigError(f"the on-demand price file {path} lists no Linux on-demand price.",
                          hint=_OD_EXAMPLE)
    return prices


def _offer_file(products: Mapping[str, Any], on_demand: Mapping[str, Any]) -> dict[str, float]:
    """Linux, shared tenancy, no pre-installed software, capacity "Used" prices."""
    prices: dict[str, float] = {}
    regions: set[str] = set()
    for sku, product in products.items():
        a = product.get("attributes") or {}
        if (a.get("operatingSystem") != "Linux" or a.get("tenancy", "Shared") != "Shared"
                or a.get("preInstalledSw", "NA") != "NA"
                or a.get("capacitystatus", "Used") != "Used" or "instanceType" not in a):
            continue
        sku_terms = on_demand.get(product.get("sku", sku)) or on_demand.get(sku) or {}
        for term in sku_terms.values():
            for dim in (term.get("priceDimensions") or {}).values():
                if dim.get("unit") not in (None, "Hrs"):
                    continue
                usd = float((dim.get("pricePerUnit") or {}).get("USD", "0"))
                if usd > 0:
                    prices[a["instanceType"]] = usd
                    regions.add(a.get("regionCode") or a.get("location") or "?")
    if len(regions) > 1:
        raise ConfigError(f"the price list holds on-demand prices for several regions "
                          f"({', '.join(sorted(regions))}); tokenyard cost prices one region.",
                          hint="Export the offer file of the cluster's region only.")
    return prices


_SPOT_EXAMPLE = ('Give a JSON object such as {"c6i.16xlarge": 1.05}, or the output of '
                 "'aws ec2 describe-spot-price-history --product-descriptions Linux/UNIX'.")


def load_spot_file(path: str | Path) -> dict[str, float]:
    """Spot USD per hour by instance type: a JSON object, or a spot price history export
    (per type, the latest price in each zone, averaged over zones)."""
    data = _read_json(path, "spot price", _SPOT_EXAMPLE)
    if isinstance(data, dict) and isinstance(data.get("SpotPriceHistory"), list):
        latest: dict[tuple[str, str], tuple[str, float]] = {}
        for row in data["SpotPriceHistory"]:
            if not str(row.get("ProductDescription", "Linux/UNIX")).startswith("Linux/UNIX"):
                continue
            try:
                key = (row["InstanceType"], row.get("AvailabilityZone", ""))
                stamp, price = str(row.get("Timestamp", "")), float(row["SpotPrice"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"the spot price history {path} has a row without "
                                  f"InstanceType or a numeric SpotPrice: {row!r}.",
                                  hint=_SPOT_EXAMPLE) from None
            if key not in latest or stamp >= latest[key][0]:
                latest[key] = (stamp, price)
        by_type: dict[str, list[float]] = {}
        for (name, _zone), (_stamp, price) in sorted(latest.items()):
            by_type.setdefault(name, []).append(price)
        prices = {name: sum(v) / len(v) for name, v in by_type.items()}
    elif isinstance(data, dict):
        prices = _mapping(data, path, "spot price", _SPOT_EXAMPLE)
    else:
        raise ConfigError(f"the spot price file {path} holds a {type(data).__name__}, not a "
                          "JSON object.", hint=_SPOT_EXAMPLE)
    if not prices:
        raise ConfigError(f"the spot price file {path} lists no Linux spot price.",
                          hint=_SPOT_EXAMPLE)
    return prices


# -- billing -------------------------------------------------------------------------


def billed_seconds(seconds: float, *, spot: bool = False,
                   interrupted_by_ec2: bool = False) -> float:
    """The seconds EC2 charges for an instance that ran ``seconds``."""
    if spot and interrupted_by_ec2 and seconds < FREE_INTERRUPTED_SECONDS:
        return 0.0
    return max(float(MIN_BILLED_SECONDS), seconds)


def instance_usd(usd_per_hour: float, seconds: float, *, spot: bool = False,
                 interrupted_by_ec2: bool = False) -> float:
    return usd_per_hour * billed_seconds(seconds, spot=spot,
                                         interrupted_by_ec2=interrupted_by_ec2) / SECONDS_PER_HOUR


@dataclass(frozen=True)
class RootVolume:
    size_gib: int
    iops: int
    throughput_mibs: int

    @property
    def usd_per_hour(self) -> float:
        month = (self.size_gib * GP3_USD_PER_GIB_MONTH
                 + max(0, self.iops - GP3_FREE_IOPS) * GP3_USD_PER_IOPS_MONTH
                 + max(0, self.throughput_mibs - GP3_FREE_MIBS) * GP3_USD_PER_MIBS_MONTH)
        return month / HOURS_PER_MONTH

    def usd(self, seconds: float) -> float:
        """EBS bills per second with a 60-second minimum, interrupted or not."""
        return self.usd_per_hour * max(float(MIN_BILLED_SECONDS), seconds) / SECONDS_PER_HOUR


@functools.cache
def worker_root_volume() -> RootVolume:
    """The root volume of the shipped EC2NodeClass the CPU pools launch nodes with."""
    from pipelines.kube.capacity.pools import CLUSTER_NAME
    from pipelines.kube.render.nodepools import node_class_objects

    spec = next(o for o in node_class_objects() if o["metadata"]["name"] == CLUSTER_NAME)
    ebs = spec["spec"]["blockDeviceMappings"][0]["ebs"]
    return RootVolume(int(str(ebs["volumeSize"]).removesuffix("Gi")), int(ebs["iops"]),
                      int(ebs["throughput"]))
