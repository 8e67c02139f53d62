"""Where spot interruptions come from: Spot Advisor bands, or a measured trace.

**Bands.** The Spot Instance Advisor puts each instance type in a band of "frequency of
interruption": the share of its instances EC2 reclaimed over the trailing month
(<5%, 5-10%, 10-15%, 15-20%, >20%). A band is read as the probability ``p`` that one
instance is interrupted within ``window_hours`` (``BAND_MONTHLY_PROBABILITY``: the
middle of the band, 25% for ">20%"; by default within a month, 730 hours), and turned
into a constant rate per instance-hour, ``-ln(1 - p) / window_hours``. Node lifetimes
are then exponential and independent. The Advisor does not say how long the instances
it counts lived; instances that live a day rather than a month make the same band a
rate 30 times higher (``--band-hours 24``), so the sensitivity table shows that too.

**Traces.** A trace in the format of ``../shared/data/spot-traces`` is
``{"metadata": {"gap_seconds": G}, "data": [n0, n1, ...]}``: the spot instances alive at
each tick (0 = preempted and not yet relaunched). It is replayed as ``markets``
independent copies of one spot market, each from its own random start (the trace wraps
around): a node on a market is reclaimed when the market goes from up to down, and a
launch finds spot capacity only on a market that is up (and not about to go down). The
ticks before the trace's first instance came up (its first launch) are dropped. One
market (the default) is the worst case: every spot node goes at once, as for one
instance type in one zone.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ConfigError
from pipelines.kube.capacity.instances import INTERRUPTION_BANDS

HOURS_PER_MONTH = 730
#: band index -> monthly probability that an instance is interrupted (band middles)
BAND_MONTHLY_PROBABILITY: tuple[float, ...] = (0.025, 0.075, 0.125, 0.175, 0.25)


def band_rate_per_hour(band: int, window_hours: float = HOURS_PER_MONTH) -> float:
    """Interruptions per instance-hour for a Spot Advisor band."""
    p = BAND_MONTHLY_PROBABILITY[band]
    return -math.log1p(-p) / window_hours


def band_assumptions(window_hours: float = HOURS_PER_MONTH) -> dict[str, str]:
    """Each band as the user should read it: label -> probability and rate."""
    out = {}
    for band, label in enumerate(INTERRUPTION_BANDS):
        p = BAND_MONTHLY_PROBABILITY[band]
        rate = band_rate_per_hour(band, window_hours)
        out[label] = (f"{p:.1%} of instances within {window_hours:g} h -> {rate * 1e3:.3f} "
                      f"interruptions per 1,000 instance-hours (one per "
                      f"{1 / rate / 24:,.1f} days of a node's life)")
    return out


@dataclass(frozen=True)
class Trace:
    """One measured spot market: up or down at each tick."""

    name: str
    gap_seconds: float
    up: tuple[bool, ...]

    @property
    def period_seconds(self) -> float:
        return len(self.up) * self.gap_seconds

    @property
    def preemptions(self) -> int:
        return sum(1 for a, b in zip(self.up, self.up[1:]) if a and not b)

    @property
    def uptime(self) -> float:
        return sum(self.up) / len(self.up)

    @property
    def days(self) -> float:
        return self.period_seconds / 86400

    def describe(self) -> str:
        return (f"{self.name}: {self.days:.2f} days at {self.gap_seconds:g} s ticks, "
                f"{self.preemptions} preemptions ({self.preemptions / self.days:.1f} a day), "
                f"up {self.uptime:.1%} of the time")


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    example = ('A trace is {"metadata": {"gap_seconds": 34}, "data": [1, 1, 0, ...]}: spot '
               "instances alive at each tick (see ../shared/data/spot-traces/README.md).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"the trace file {path} does not exist.", hint=example) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"the trace file {path} is not readable JSON ({err}).",
                          hint=example) from None
    meta = data.get("metadata") if isinstance(data, dict) else None
    ticks = data.get("data") if isinstance(data, dict) else None
    gap = meta.get("gap_seconds") if isinstance(meta, dict) else None
    if (not isinstance(gap, (int, float)) or isinstance(gap, bool) or gap <= 0
            or not isinstance(ticks, list) or len(ticks) < 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for n in ticks)):
        raise ConfigError(f"the trace file {path} is not a spot trace: it needs a positive "
                          "metadata.gap_seconds and a data list of at least two counts "
                          "(non-negative integers).", hint=example)
    up = tuple(n > 0 for n in ticks)
    if not any(up):
        raise ConfigError(f"the trace file {path} never has a spot instance up, so no spot "
                          "node could ever launch.", hint=example)
    # the ticks before the first instance came up are its first launch, not a preemption
    return Trace(path.name, float(gap), up[up.index(True):])


class Market:
    """A trace replayed from ``offset`` seconds, wrapping around at its end."""

    def __init__(self, trace: Trace, offset_seconds: float) -> None:
        self.trace = trace
        self.offset = offset_seconds
        gap = trace.gap_seconds
        up = trace.up
        n = len(up)
        # transitions within one period, on the trace's own clock (wrapping at the end)
        self.downs = [i * gap for i in range(n) if up[i - 1] and not up[i]]
        self.ups = [i * gap for i in range(n) if not up[i - 1] and up[i]]

    def _clock(self, t: float) -> tuple[float, float]:
        period = self.trace.period_seconds
        shifted = self.offset + t
        cycle = math.floor(shifted / period) * period
        return shifted - cycle, cycle - self.offset

    def is_up(self, t: float) -> bool:
        tau, _ = self._clock(t)
        return self.trace.up[min(int(tau // self.trace.gap_seconds), len(self.trace.up) - 1)]

    def _next(self, marks: list[float], t: float) -> float:
        if not marks:
            return math.inf
        tau, base = self._clock(t)
        i = bisect.bisect_right(marks, tau)
        if i < len(marks):
            return base + marks[i]
        return base + self.trace.period_seconds + marks[0]

    def next_down(self, t: float) -> float:
        """When the market next goes from up to down, after ``t``."""
        return self._next(self.downs, t)

    def next_up(self, t: float) -> float:
        return self._next(self.ups, t)


def markets(trace: Trace, count: int, rng: random.Random) -> list[Market]:
    return [Market(trace, rng.uniform(0, trace.period_seconds)) for _ in range(count)]
