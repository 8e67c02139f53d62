"""Inputs to sorted, stable work units and the job's fingerprint.

Units depend only on the inputs and the options, never on engines or worker counts:
uncompressed JSONL and text larger than ``target_unit_bytes`` are cut at byte offsets
(the reader aligns each cut to the next line start), Parquet at row groups; small files
are coalesced in key order up to the target; a compressed file is one unit. The default
target (``auto``) comes from the input's total size (:func:`pipelines.config.auto_unit_bytes`)
and is saved resolved, so a plan never changes under a job.

The fingerprint hashes everything that changes output bytes: the inputs (key, size,
ETag/mtime), the tokenizer's bytes and the output-shaping options. It leaves out the
engine, worker counts, retries and the paths of the tokenizer and the output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import posixpath
import re
from dataclasses import asdict, dataclass

from fsspec.utils import glob_translate

from pipelines import layout, storage, uris
from pipelines.config import JobConfig, auto_unit_bytes
from pipelines.errors import ConfigError, InputError, StorageNotFoundError
from pipelines.records import (InputFile, Plan, PlanOptions, Slice, TokenizerFacts, WorkUnit,
                               dumps)

log = logging.getLogger(__name__)

COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
FORMAT_SUFFIXES = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "text", ".text": "text", ".md": "text",
}
#: rough planning figures for `tokenyard plan`: bytes of UTF-8 text per token, and the
#: text each worker turns into shards per second, end to end, by tokenizer backend
#: (GPT-2-shaped BPE on English text, measured by benchmarks/throughput.py)
ESTIMATE_BYTES_PER_TOKEN = 4.3
ESTIMATE_TEXT_BYTES_PER_WORKER_S = {"hf": 3.5e6, "fastokens": 45e6}
ESTIMATE_COMPRESSION_RATIO = 4.0
#: seconds before the first unit starts (interpreter, workers, tokenizer loads)
ESTIMATE_STARTUP_S = {"local": 1.5, "dask": 4.0, "spark": 12.0}


def detect(key: str, declared: str) -> tuple[str, str | None]:
    """The (format, compression) of an input file from its name and the job's format."""
    name = posixpath.basename(key).lower()
    stem, ext = posixpath.splitext(name)
    compression = COMPRESSION_SUFFIXES.get(ext)
    if compression:
        name = stem
    if declared != "auto":
        fmt = declared
    else:
        fmt = FORMAT_SUFFIXES.get(posixpath.splitext(name)[1])
        if fmt is None:
            raise ConfigError(
                f"cannot tell the format of input {key} from its name.",
                hint="Set input.format to jsonl, parquet or text, or use the suffixes "
                     ".jsonl, .jsonl.gz, .jsonl.zst, .parquet, .txt.")
    if fmt == "parquet" and compression:
        raise ConfigError(f"input {key} is a compressed Parquet file ({compression}).",
                          hint="Parquet compresses its own pages; store it uncompressed.")
    return fmt, compression


@dataclass(frozen=True)
class _Piece:
    slice: Slice
    weight: int
    splittable_alone: bool  # True: must be a unit of its own


def _parquet_pieces(f: InputFile, target: int,
                    storage_options: storage.StorageOptions) -> list[_Piece]:
    import pyarrow.parquet as pq

    try:
        with storage.open_input(f.uri, storage_options) as fh:
            meta = pq.ParquetFile(fh).metadata
    except (OSError, ValueError) as err:
        if isinstance(err, OSError) and not type(err).__module__.startswith("pyarrow"):
            storage.raise_translated(err, f.uri, "read", storage_options)
        raise InputError(f.key, f"not a readable Parquet file ({err})",
                         hint="Check the file, or exclude it from input.uri.") from None
    groups = [(i, meta.row_group(i).num_rows, meta.row_group(i).total_byte_size)
              for i in range(meta.num_row_groups)]
    if f.size <= target or len(groups) <= 1:
        return [_Piece(Slice(f, 0, max(len(groups), 1), 0), f.size, False)]
    pieces, start, first_row, rows, acc = [], 0, 0, 0, 0
    for i, n, nbytes in groups:
        if acc and acc + nbytes > target:
            pieces.append(_Piece(Slice(f, start, i, first_row), acc, True))
            start, first_row, acc = i, rows, 0
        acc += nbytes
        rows += n
    pieces.append(_Piece(Slice(f, start, len(groups), first_row), acc, True))
    return pieces


def _pieces(f: InputFile, target: int, storage_options: storage.StorageOptions) -> list[_Piece]:
    if f.compression:
        return [_Piece(Slice(f, 0, f.size), f.size, True)]
    if f.format == "parquet":
        return _parquet_pieces(f, target, storage_options)
    if f.format == "jsonl" and f.size > target:
        n = math.ceil(f.size / target)
        cuts = [f.size * i // n for i in range(n + 1)]
        return [_Piece(Slice(f, a, b), b - a, True) for a, b in zip(cuts, cuts[1:])]
    return [_Piece(Slice(f, 0, f.size), f.size, False)]


def cut_units(files: list[InputFile], target: int,
              storage_options: storage.StorageOptions) -> tuple[WorkUnit, ...]:
    units: list[WorkUnit] = []
    group: list[_Piece] = []

    def flush() -> None:
        if group:
            units.append(WorkUnit(len(units), tuple(p.slice for p in group),
                                  sum(p.weight for p in group)))
            group.clear()

    for f in files:
        for piece in _pieces(f, target, storage_options):
            if piece.splittable_alone:
                flush()
                group.append(piece)
                flush()
                continue
            if group and sum(p.weight for p in group) + piece.weight > target:
                flush()
            group.append(piece)
    flush()
    return tuple(units)


def target_unit_bytes(job: JobConfig, inputs: tuple[InputFile, ...]) -> int:
    """The job's unit size: as set, or from the input's total size under ``auto``."""
    target = job.plan.target_unit_bytes
    return auto_unit_bytes(sum(f.size for f in inputs)) if target == "auto" else target


def output_options(job: JobConfig, target: int) -> PlanOptions:
    """The options that shape output bytes, and only those."""
    return PlanOptions(
        input_format=job.input.format,
        text_field=job.input.text_field,
        id_field=job.input.id_field,
        eos=job.tokenizer.eos,
        bos=job.tokenizer.bos,
        max_segment_chars=job.tokenizer.max_segment_chars,
        output_format=job.output.format,
        target_unit_bytes=target,
        split_special_tokens=job.tokenizer.split_special_tokens,
    )


def fingerprint(inputs: tuple[InputFile, ...], tokenizer_sha256: str,
                options: PlanOptions) -> str:
    identity = {
        "inputs": [[f.key, f.size, f.version, f.format, f.compression] for f in inputs],
        "tokenizer_sha256": tokenizer_sha256,
        "options": options.to_dict(),
    }
    return hashlib.sha256(dumps(identity)).hexdigest()


def _listed(job: JobConfig, storage_options: storage.StorageOptions) -> tuple[list[storage.Listed],
                                                                              list[str]]:
    """Every file the input names, keys relative to the common folder of a URI list;
    and the keys skipped as hidden."""
    uris = job.input.uris
    if len(uris) == 1:
        try:
            listing = storage.scan(uris[0], storage_options)
        except StorageNotFoundError:
            return [], []
        return list(listing.files), list(listing.hidden)
    found: dict[str, storage.Listed] = {}
    hidden: list[str] = []
    for uri in uris:
        try:
            listing = storage.scan(uri, storage_options)
        except StorageNotFoundError:
            continue
        hidden += listing.hidden
        for item in listing.files:
            found.setdefault(item.uri, item)
    if not found:
        return [], hidden
    folders = [u.split("/")[:-1] for u in found]
    common = 0
    while all(len(f) > common and f[common] == folders[0][common] for f in folders):
        common += 1
    out = [dataclasses.replace(item, key="/".join(item.uri.split("/")[common:]))
           for item in found.values()]
    return sorted(out, key=lambda item: item.key), hidden


def _reaches(input_uri: str, output: uris.LocationKey) -> bool:
    """Whether listing ``input_uri`` could return a file tokenyard writes under ``output``."""
    scheme_path = input_uri.split("://", 1)[1] if "://" in input_uri else input_uri
    glob = uris.has_glob(scheme_path)
    base = uris.glob_base(scheme_path) if glob else scheme_path
    prefix = input_uri.split("://", 1)[0] + "://" if "://" in input_uri else ""
    base_key = uris.location_key(prefix + base)
    pattern = (re.compile(glob_translate(base_key.path + scheme_path[len(base):]))
               if glob else None)
    for name in layout.written_names():
        written = f"{output.path}/{name}"
        if not written.startswith(base_key.path.rstrip("/") + "/"):
            continue
        key = written[len(base_key.path.rstrip("/")) + 1:]
        if storage.is_hidden(key):
            continue
        if pattern is None or pattern.match(written):
            return True
    return False


def check_overlap(job: JobConfig) -> None:
    """Refuse a job whose output could be read back as its input, or whose input lies
    at or under its output prefix (where runs write and ``--restart`` deletes).

    Checked before anything is read or written, so that a first run cannot commit a
    dataset that its rerun would then take for new input.
    """
    out = uris.location_key(job.output.uri)
    many = len(job.input.uris) > 1
    for i, uri in enumerate(job.input.uris):
        field = f"input.uri[{i}]" if many else "input.uri"
        path = uri.split("://", 1)[1] if "://" in uri else uri
        base = uris.glob_base(path) if uris.has_glob(path) else path
        scheme = uri.split("://", 1)[0] + "://" if "://" in uri else ""
        root = uris.location_key(scheme + base)
        if out.contains(root):
            raise ConfigError(
                f"{field} {uri} lies at or under output.uri {job.output.uri}: runs write "
                "shards, markers and rejects there and --restart deletes them, so input and "
                "output would be mixed.",
                hint="Keep the input outside the output prefix: point output.uri (or "
                     "--output) at a folder of its own, e.g. a sibling of the input folder.")
        if root.contains(out) and _reaches(uri, out):
            raise ConfigError(
                f"output.uri {job.output.uri} lies under {field} {uri}: the shards, rejects "
                "and manifest written there would be listed as new input by the next run of "
                "this job.",
                hint="Point output.uri (or --output) outside the input folder, narrow the "
                     "input with a glob that cannot match the output (raw/*.jsonl), or name "
                     "the output folder with a leading '_' so that listings skip it.")


def _inside_output(job: JobConfig, listed: list[storage.Listed]) -> None:
    """No listed input may be a file under the output prefix (reached through a link)."""
    out = uris.location_key(job.output.uri)
    for item in listed:
        if out.contains(uris.location_key(item.uri)):
            raise ConfigError(
                f"the input {item.uri} lies under output.uri {job.output.uri} (through a "
                "symbolic link?): the output is never read as input.",
                hint="Remove the link, or exclude it from input.uri.")


def hidden_note(hidden: list[str] | tuple[str, ...]) -> str:
    """Says which files were skipped for their names, or nothing when none were."""
    if not hidden:
        return ""
    shown = ", ".join(hidden[:3]) + (f" and {len(hidden) - 3} more" if len(hidden) > 3 else "")
    return (f"; {len(hidden)} file(s) were skipped because a name in their path starts with "
            f"'.' or '_' (markers and temporaries, as Spark and Hadoop skip them): {shown}")


def list_inputs(job: JobConfig, storage_options: storage.StorageOptions) -> tuple[InputFile, ...]:
    listed, hidden = _listed(job, storage_options)
    if not listed:
        uris = job.input.uris
        shown = uris[0] if len(uris) == 1 else f"{uris[0]} (and {len(uris) - 1} more URIs)"
        hint = ("Check input.uri (globs such as **/*.jsonl.zst are allowed), and that the "
                "bucket and prefix exist.")
        if hidden:
            hint = ("Rename the files (or the folder) without the leading '.' or '_' if "
                    "they are inputs.")
        raise StorageNotFoundError(
            shown, "list", "no input files match" + hidden_note(hidden),
            endpoint=storage.endpoint_of(uris[0], storage_options), hint=hint)
    if hidden:
        log.info("skipped %d hidden file(s) under the input%s", len(hidden), hidden_note(hidden))
    _inside_output(job, listed)
    files = []
    for item in listed:
        fmt, compression = detect(item.key, job.input.format)
        files.append(InputFile(uri=item.uri, key=item.key, size=item.size,
                               version=item.version, format=fmt, compression=compression))
    return tuple(files)


def make_plan(job: JobConfig, tokenizer: TokenizerFacts,
              storage_options: storage.StorageOptions) -> Plan:
    """Plan a job: ``tokenizer`` describes the tokenizer file (name, sha256, vocab)."""
    inputs = list_inputs(job, storage_options)
    target = target_unit_bytes(job, inputs)
    options = output_options(job, target)
    units = cut_units(list(inputs), target, storage_options)
    fp = fingerprint(inputs, tokenizer.sha256, options)
    log.info("planned %d units over %d inputs, fingerprint %s", len(units), len(inputs), fp[:12])
    return Plan(job=job.name, fingerprint=fp, options=options, tokenizer=tokenizer,
                inputs=inputs, units=units)


def differences(saved: Plan, new: Plan) -> list[str]:
    """What changed between a saved plan and a new one, in words a user can act on."""
    out = []
    if saved.tokenizer.sha256 != new.tokenizer.sha256:
        out.append(f"the tokenizer differs (saved sha256 {saved.tokenizer.sha256[:12]}, "
                   f"now {new.tokenizer.sha256[:12]})")
    old_options, new_options = saved.options.to_dict(), new.options.to_dict()
    for key in sorted(set(old_options) | set(new_options)):
        if old_options.get(key) != new_options.get(key):
            out.append(f"option {key} was {old_options.get(key)!r}, "
                       f"now {new_options.get(key)!r}")
    old_in = {f.key: f for f in saved.inputs}
    new_in = {f.key: f for f in new.inputs}
    added = sorted(set(new_in) - set(old_in))
    gone = sorted(set(old_in) - set(new_in))
    changed = sorted(k for k in set(old_in) & set(new_in)
                     if asdict(old_in[k]) != asdict(new_in[k]))
    for label, keys in (("new inputs", added), ("inputs gone", gone), ("inputs changed", changed)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            out.append(f"{label}: {', '.join(keys[:3])}{more}")
    return out or ["the fingerprint differs"]


@dataclass(frozen=True)
class Estimate:
    """Rough tokens and wall time of a run, for `tokenyard plan` (labelled an estimate)."""

    tokens: int
    text_bytes: int
    seconds: float
    #: workers that get a unit at all (a plan of 3 units keeps 3 workers busy)
    busy_workers: int


def estimate(plan: Plan, workers: int, backend: str = "hf", engine: str = "local") -> Estimate:
    """Tokens, and wall seconds of ``workers`` running the plan's units on ``backend``.

    Each unit's text takes ``ESTIMATE_TEXT_BYTES_PER_WORKER_S[backend]``; units go to the
    first free worker in plan order, as the engines hand them out, so a plan with fewer
    or unequal units than workers shows the wait for the largest.
    """
    rate = ESTIMATE_TEXT_BYTES_PER_WORKER_S.get(backend, ESTIMATE_TEXT_BYTES_PER_WORKER_S["hf"])
    sizes = [u.input_bytes * (ESTIMATE_COMPRESSION_RATIO if u.slices[0].file.compression
                              else 1.0) for u in plan.units]
    free = [0.0] * max(1, min(workers, len(sizes)) if sizes else 1)
    for size in sizes:
        i = free.index(min(free))
        free[i] += size / rate
    text_bytes = sum(sizes)
    return Estimate(tokens=int(text_bytes / ESTIMATE_BYTES_PER_TOKEN), text_bytes=int(text_bytes),
                    seconds=ESTIMATE_STARTUP_S.get(engine, 2.0) + max(free),
                    busy_workers=min(workers, len(sizes)))
