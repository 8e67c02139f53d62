"""Sample units cut from a job's own inputs, for calibration.

``SAMPLE_POINTS`` points are spread evenly over the plan's input bytes (point ``i`` at
``(i + 0.5) / SAMPLE_POINTS`` of the way through), so a sample of a large corpus is not
just its first file. Each point stands for an equal share of the input bytes and
becomes a :class:`SamplePoint`: a :class:`SampleUnit` of about ``sample_bytes /
SAMPLE_POINTS`` that ``run_unit`` runs as it would run a real unit, and a small one of
``SMALL_SHARE`` of it cut at the same place, so that what a unit costs whatever its size
can be told from what each byte costs (``calibration``). A unit is:

* uncompressed JSONL: a byte slice of the file itself (the reader owns every line that
  starts inside it, so a slice can be cut at any byte);
* a compressed file or a plain-text file small enough: the whole file;
* larger compressed files: their first lines, decompressed into a local staging file,
  standing for the compressed bytes they take at the file's compression ratio (measured
  over its first ``RATIO_WINDOW_BYTES``; compressed files cannot be sliced; the
  decompression's own CPU time, small beside tokenizing, is left out);
* larger plain-text files: their first bytes, cut at a character boundary;
* Parquet: the first rows of the row group at the point, written to a local file.

Each sample unit carries ``plan_bytes``: the bytes of the plan's input it stands for,
measured the way the planner weighs units, so rates come out per plan byte. A job whose
whole input is smaller than the sample runs its real units (no small ones).
"""

from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage
from pipelines.records import InputFile, Plan, Slice, WorkUnit

log = logging.getLogger(__name__)

SAMPLE_POINTS = 8
#: the small unit of a point, as a share of its large one
SMALL_SHARE = 0.125
#: bytes read from a compressed stream per call while staging a prefix: bounds how far
#: the count of compressed bytes consumed can overshoot
STAGE_READ_BYTES = 16 * 1024
#: compressed bytes decompressed to measure a file's compression ratio (decompressing is
#: fast beside tokenizing); the ratio's error is about a read and a block over this
RATIO_WINDOW_BYTES = 4 * 2**20


@dataclass(frozen=True)
class SampleUnit:
    unit: WorkUnit
    #: bytes of the plan's input this sample stands for
    plan_bytes: float
    #: where it comes from, for the report
    source: str


@dataclass(frozen=True)
class SamplePoint:
    """One place in the input: a sample unit, a small one cut at the same place, and the
    share of the input it stands for (``weight``: one equal share per point, two when a
    small file has two points in it and is sampled once; a real unit's own bytes when
    the sample is the whole job)."""

    unit: SampleUnit
    small: SampleUnit | None
    weight: float = 1.0

    def units(self) -> list[SampleUnit]:
        return [self.unit] + ([self.small] if self.small is not None else [])


def _slice_weights(unit: WorkUnit) -> list[float]:
    """Each slice's share of the unit's input bytes, as the planner weighs them."""
    raw = [float(s.stop - s.start) if s.file.format == "jsonl" and not s.file.compression
           else float(s.file.size) for s in unit.slices]
    total = sum(raw) or 1.0
    return [w * unit.input_bytes / total for w in raw]


def _locate(plan: Plan, position: float) -> tuple[WorkUnit, Slice, float, float]:
    """The unit and slice at byte ``position`` of the plan, the offset into the slice's
    weight, and that weight."""
    acc = 0.0
    for unit in plan.units:
        if acc + unit.input_bytes > position or unit is plan.units[-1]:
            offset = position - acc
            for s, w in zip(unit.slices, _slice_weights(unit)):
                if offset < w or s is unit.slices[-1]:
                    return unit, s, max(0.0, min(offset, w)), w
                offset -= w
        acc += unit.input_bytes
    raise ValueError("empty plan")


def sample_points(plan: Plan, sample_bytes: int, staging: Path, storage_opts: dict,
                  text_field: str = "text") -> list[SamplePoint]:
    """Cut the sample; ``staging`` is a local folder for staged excerpts."""
    total = plan.input_bytes
    if total <= sample_bytes:
        return [SamplePoint(SampleUnit(u, float(u.input_bytes), f"unit {u.name}"), None,
                            float(u.input_bytes)) for u in plan.units]
    points = min(SAMPLE_POINTS, len(plan.units) * SAMPLE_POINTS)
    budget = max(1, sample_bytes // points)
    out: list[SamplePoint] = []
    index = 0
    for i in range(points):
        unit, s, offset, weight = _locate(plan, (i + 0.5) / points * total)
        big = _sample_of(s, offset, weight, budget, staging, storage_opts, index=index,
                         text_field=text_field)
        if big is None:
            continue
        if out and (out[-1].unit.source, out[-1].unit.plan_bytes) == \
                (big.source, big.plan_bytes):
            out[-1] = SamplePoint(out[-1].unit, out[-1].small, out[-1].weight + 1)
            continue
        small = _sample_of(s, offset, weight, max(1, int(budget * SMALL_SHARE)), staging,
                           storage_opts, index=index + 1, text_field=text_field)
        if small is not None and small.plan_bytes >= big.plan_bytes:
            small = None  # a whole small file: nothing smaller to cut from it
        out.append(SamplePoint(big, small))
        index += 2
    return out


def sample_units(plan: Plan, sample_bytes: int, staging: Path, storage_opts: dict,
                 text_field: str = "text") -> list[SampleUnit]:
    """Every sample unit of :func:`sample_points`, large and small."""
    return [u for p in sample_points(plan, sample_bytes, staging, storage_opts, text_field)
            for u in p.units()]


def _unit(index: int, s: Slice) -> WorkUnit:
    return WorkUnit(index, (s,), s.stop - s.start)


def _sample_of(s: Slice, offset: float, weight: float, budget: int, staging: Path,
               storage_opts: dict, *, index: int, text_field: str) -> SampleUnit | None:
    f = s.file
    if f.format == "jsonl" and not f.compression:
        length = min(budget, s.stop - s.start)
        start = int(min(max(s.start, s.start + offset), s.stop - length))
        cut = Slice(f, start, start + length)
        return SampleUnit(_unit(index, cut), float(length),
                          f"{f.key}[bytes {start}:{start + length}]")
    if f.format == "parquet":
        return _parquet_sample(s, offset, weight, budget, staging, storage_opts, index,
                               text_field)
    if f.compression:
        if f.size * 4 <= budget:  # small: the whole file, as the plan has it
            return SampleUnit(_unit(index, Slice(f, 0, f.size)), float(f.size), f.key)
        return _stage_compressed(f, budget, staging, storage_opts, index)
    # plain text: one document per file
    if f.size <= budget:
        return SampleUnit(_unit(index, Slice(f, 0, f.size)), float(f.size), f.key)
    return _stage_text_prefix(f, budget, staging, storage_opts, index)


def _staged(f: InputFile, path: Path, fmt: str) -> InputFile:
    return InputFile(uri=str(path), key=f"{f.key} (sample)", size=path.stat().st_size,
                     version="sample", format=fmt, compression=None)


class _Counting(io.RawIOBase):
    """A raw stream that counts the bytes read through it."""

    def __init__(self, f) -> None:
        self.f = f
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(min(len(buffer), STAGE_READ_BYTES))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


def _decompressor(raw, compression: str):
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_size=STAGE_READ_BYTES)


def compression_ratio(f: InputFile, storage_opts: dict,
                      window_bytes: int = RATIO_WINDOW_BYTES) -> float:
    """Decompressed bytes per compressed byte over the file's first ``window_bytes``
    (all of it when smaller: then exact)."""
    fs, p = storage.get_fs(f.uri, storage_opts)
    out = 0
    with fs.open(p, "rb") as fh:
        counter = _Counting(fh)
        stream = _decompressor(counter, f.compression or "")
        while counter.count < window_bytes:
            chunk = stream.read(STAGE_READ_BYTES * 4)
            if not chunk:
                break
            out += len(chunk)
        consumed = counter.count
    return out / consumed if consumed else 1.0


def _stage_compressed(f: InputFile, budget: int, staging: Path, storage_opts: dict,
                      index: int) -> SampleUnit:
    """The first lines of a compressed file, decompressed, standing for the compressed
    bytes they take at the file's measured compression ratio."""
    fmt = "jsonl" if f.format == "jsonl" else "text"
    path = staging / f"sample-{index:03d}.{'jsonl' if fmt == 'jsonl' else 'txt'}"
    ratio = compression_ratio(f, storage_opts)
    fs, p = storage.get_fs(f.uri, storage_opts)
    written = 0
    with fs.open(p, "rb") as fh:
        stream = io.BufferedReader(_decompressor(_Counting(fh), f.compression or ""),
                                   buffer_size=STAGE_READ_BYTES)
        with open(path, "wb") as out:
            for line in stream:
                out.write(line)
                written += len(line)
                if written >= budget * ratio:
                    break
    staged = _staged(f, path, fmt)
    plan_bytes = min(written / ratio, float(f.size))
    return SampleUnit(_unit(index, Slice(staged, 0, staged.size)), plan_bytes,
                      f"{f.key}[first {staged.size} bytes decompressed]")


def _stage_text_prefix(f: InputFile, budget: int, staging: Path, storage_opts: dict,
                       index: int) -> SampleUnit:
    fs, p = storage.get_fs(f.uri, storage_opts)
    with fs.open(p, "rb") as fh:
        data = fh.read(budget)
    while data and (data[-1] & 0xC0) == 0x80:  # do not cut inside a character
        data = data[:-1]
    if data and data[-1] >= 0xC0:
        data = data[:-1]
    path = staging / f"sample-{index:03d}.txt"
    path.write_bytes(data)
    staged = _staged(f, path, "text")
    return SampleUnit(_unit(index, Slice(staged, 0, staged.size)), float(len(data)),
                      f"{f.key}[first {len(data)} bytes]")


def _parquet_sample(s: Slice, offset: float, weight: float, budget: int, staging: Path,
                    storage_opts: dict, index: int, text_field: str) -> SampleUnit | None:
    import pyarrow.parquet as pq

    f = s.file
    fs, p = storage.get_fs(f.uri, storage_opts)
    with fs.open(p, "rb") as fh:
        pf = pq.ParquetFile(fh)
        groups = list(range(s.start, min(s.stop, pf.metadata.num_row_groups)))
        if not groups:
            return None
        rows_in_slice = sum(pf.metadata.row_group(g).num_rows for g in groups) or 1
        group = groups[min(len(groups) - 1, int(offset / max(weight, 1.0) * len(groups)))]
        table = pf.read_row_group(group)
    if text_field not in table.column_names or table.num_rows == 0:
        return None
    taken, size = 0, 0
    for value in table.column(text_field).to_pylist():
        taken += 1
        size += len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 0
        if size >= budget:
            break
    path = staging / f"sample-{index:03d}.parquet"
    pq.write_table(table.slice(0, taken), path)
    staged = _staged(f, path, "parquet")
    plan_bytes = weight * taken / rows_in_slice
    return SampleUnit(_unit(index, Slice(staged, 0, 1, 0)), plan_bytes,
                      f"{f.key}[row group {group}, first {taken} rows]")
