"""The work of a run: its units' input bytes, and seconds per unit from the rates.

For the job as planned, the units are the plan's own. For another unit size
(``plan.target_unit_bytes``) or another input size (``--assume-input-bytes``) the units
are cut again the way the planner cuts them (``pipelines.plan.cut_units``): an
uncompressed JSONL or Parquet file larger than the target is split into equal pieces,
each a unit; a compressed file is one unit; smaller files are coalesced in order up to
the target. A larger input is the job's own files repeated (the same mix of sizes and
formats), the last copy cut short; a smaller one is a prefix of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipelines.config import JobConfig, auto_unit_bytes
from pipelines.cost.calibration import Rates
from pipelines.records import Plan

#: repeated copies of the inputs cut exactly before the cut is repeated as a pattern
EXACT_COPIES = 64


@dataclass(frozen=True)
class FileShape:
    size: int
    #: split into pieces of the target when larger (uncompressed JSONL, Parquet)
    splittable: bool
    #: one unit whatever its size (compressed)
    alone: bool


@dataclass(frozen=True)
class Scaled:
    """``copies`` whole copies of the files, then ``tail``: a prefix of one more."""

    base: tuple[FileShape, ...]
    copies: int = 1
    tail: tuple[FileShape, ...] = ()


@dataclass(frozen=True)
class Workload:
    """Units of input bytes in run order, the files they were cut from, and the rates."""

    unit_bytes: tuple[float, ...]
    files: Scaled
    target_unit_bytes: int
    rates: Rates
    #: the input bytes the job really has, when the workload was scaled
    actual_input_bytes: float | None = None

    @property
    def input_bytes(self) -> float:
        return sum(self.unit_bytes)

    @property
    def units(self) -> int:
        return len(self.unit_bytes)

    @property
    def tokens(self) -> float:
        return self.input_bytes * self.rates.tokens_per_byte

    @property
    def per_unit_seconds(self) -> float:
        """What every unit costs whatever its size: measured fixed cost and S3 trips."""
        return self.rates.unit_fixed_seconds + self.rates.unit_overhead_seconds

    def unit_seconds(self) -> tuple[float, ...]:
        per_byte, per_unit = self.rates.cpu_seconds_per_byte, self.per_unit_seconds
        return tuple(b * per_byte + per_unit for b in self.unit_bytes)

    @property
    def cpu_seconds(self) -> float:
        return self.input_bytes * self.rates.cpu_seconds_per_byte + \
            self.units * self.per_unit_seconds

    def with_rates(self, rates: Rates) -> "Workload":
        return Workload(self.unit_bytes, self.files, self.target_unit_bytes, rates,
                        self.actual_input_bytes)

    def recut(self, target_unit_bytes: int) -> "Workload":
        """The same input cut into units of another target size."""
        units = cut_repeated(self.files, target_unit_bytes)
        return Workload(tuple(units), self.files, target_unit_bytes, self.rates,
                        self.actual_input_bytes)


def unit_target(job: JobConfig, plan: Plan, assume_input_bytes: int | None = None) -> int:
    """The unit size a run would use: the plan's, or under ``plan.target_unit_bytes:
    auto`` the one the planner would pick for an input of ``assume_input_bytes``."""
    if assume_input_bytes is not None and job.plan.target_unit_bytes == "auto":
        return auto_unit_bytes(assume_input_bytes)
    return int(plan.options["target_unit_bytes"])


def file_shapes(plan: Plan) -> tuple[FileShape, ...]:
    return tuple(FileShape(f.size, splittable=f.format in ("jsonl", "parquet")
                           and not f.compression, alone=bool(f.compression))
                 for f in plan.inputs)


def from_plan(plan: Plan, rates: Rates, target_unit_bytes: int,
              assume_input_bytes: int | None = None) -> Workload:
    files = file_shapes(plan)
    if assume_input_bytes is None:
        return Workload(tuple(float(u.input_bytes) for u in plan.units), Scaled(files),
                        target_unit_bytes, rates)
    actual = sum(f.size for f in files)
    scaled = scale_files(files, assume_input_bytes)
    return Workload(tuple(cut_repeated(scaled, target_unit_bytes)), scaled,
                    target_unit_bytes, rates, actual_input_bytes=float(actual))


def scale_files(files: tuple[FileShape, ...], total: int) -> Scaled:
    one = sum(f.size for f in files)
    copies, rest = divmod(total, one) if one else (0, 0)
    tail: list[FileShape] = []
    for f in files:
        if rest <= 0:
            break
        size = min(f.size, rest)
        tail.append(FileShape(size, f.splittable, f.alone))
        rest -= size
    return Scaled(files, int(copies), tuple(tail))


def cut_repeated(scaled: Scaled, target: int) -> list[float]:
    """Units of many copies: cut a block of copies exactly, repeat its units."""
    if scaled.copies <= EXACT_COPIES:
        return cut(scaled.base * scaled.copies + scaled.tail, target)
    block = cut(scaled.base * EXACT_COPIES, target)
    repeats, extra = divmod(scaled.copies, EXACT_COPIES)
    units = block * repeats
    units += cut(scaled.base * extra + scaled.tail, target)
    return units


def cut(files: tuple[FileShape, ...] | list[FileShape], target: int) -> list[float]:
    """Unit sizes as ``pipelines.plan.cut_units`` cuts files of these shapes."""
    units: list[float] = []
    group = 0.0
    for f in files:
        if f.alone or (f.splittable and f.size > target):
            if group:
                units.append(group)
                group = 0.0
            if f.alone:
                units.append(float(f.size))
            else:
                n = math.ceil(f.size / target)
                cuts = [f.size * i // n for i in range(n + 1)]
                units.extend(float(b - a) for a, b in zip(cuts, cuts[1:]))
            continue
        if group and group + f.size > target:
            units.append(group)
            group = 0.0
        group += f.size
    if group:
        units.append(group)
    return units
