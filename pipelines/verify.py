"""Re-check a committed dataset the way a careful trainer would, before it trains on it.

:func:`verify` reads the manifest and checks, for every shard it lists: the files
are there with the size and sha256 the manifest gives; a Megatron ``.idx`` has the
right header, the manifest's dtype, lengths that sum to the ``.bin`` size, pointers
that are monotone and match the lengths, and document indices ``0..N``; a Parquet
shard reads, with ``num_tokens`` equal to the length of each ``input_ids`` list; every
token id is below the vocabulary size; document and token counts match the manifest,
the markers and the rejects files; records in = documents out + rejected.

It collects every problem instead of stopping at the first, and returns a
:class:`Report`; :func:`check` raises :class:`DatasetError` listing them. Shards are read
one at a time, and large ``.bin`` files in chunks, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipelines import layout, storage
from pipelines.errors import DatasetError, StorageNotFoundError
from pipelines.records import Manifest, ManifestShard, ShardFile

_CHUNK_BYTES = 16 * 2**20


@dataclass
class Report:
    """What :func:`verify` found: every problem, and what it checked."""

    output_uri: str
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    files: int = 0
    documents: int = 0
    tokens: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise DatasetError(self.output_uri, self.problems)


def stream_checked(uri: str, storage_options: storage.StorageOptions | None,
                   expected_size: int, expected_sha: str, name: str, problems: list[str],
                   on_chunk=None) -> bool:
    """Stream a file, checking size and sha256 against the manifest; ``on_chunk`` sees
    every chunk. False when the file is missing."""
    sha = hashlib.sha256()
    size = 0
    try:
        with storage.open_input(uri, storage_options) as f:
            while chunk := f.read(_CHUNK_BYTES):
                sha.update(chunk)
                size += len(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
    except (StorageNotFoundError, FileNotFoundError):
        problems.append(f"{name}: missing")
        return False
    if size != expected_size:
        problems.append(f"{name}: {size} bytes, the manifest says {expected_size}")
    elif sha.hexdigest() != expected_sha:
        problems.append(f"{name}: sha256 {sha.hexdigest()[:16]}..., the manifest says "
                        f"{expected_sha[:16]}...")
    return True


def _read_checked(output_uri: str, file: ShardFile,
                  storage_options: storage.StorageOptions | None,
                  problems: list[str]) -> bytes | None:
    """A listed file's bytes, checked by :func:`stream_checked`; None when missing."""
    kept: list[bytes] = []
    found = stream_checked(layout.file_uri(output_uri, file.path), storage_options, file.size,
                           file.sha256, file.path, problems, kept.append)
    if not found:
        return None
    return b"".join(kept)


def _scan_bin(output_uri: str, file: ShardFile, dtype: np.dtype,
              storage_options: storage.StorageOptions | None,
              problems: list[str]) -> int | None:
    """Stream a ``.bin``: check size and sha256; return its largest token id."""
    little = dtype.newbyteorder("<")
    state = {"carry": b"", "max": -1}

    def scan(chunk: bytes) -> None:
        data = state["carry"] + chunk
        whole = len(data) - len(data) % dtype.itemsize
        if whole:
            state["max"] = max(state["max"], int(np.frombuffer(data[:whole], little).max()))
        state["carry"] = data[whole:]

    if not stream_checked(layout.file_uri(output_uri, file.path), storage_options, file.size,
                          file.sha256, file.path, problems, scan):
        return None
    return state["max"]


def _with_suffix(shard: ManifestShard, suffix: str) -> ShardFile | None:
    return next((f for f in shard.files if f.path.endswith(suffix)), None)


def _check_megatron(output_uri: str, shard: ManifestShard, manifest: Manifest,
                    storage_options: storage.StorageOptions | None, problems: list[str],
                    vocab: int) -> tuple[int, int]:
    from pipelines.formats.megatron import parse_index

    bin_suffix, idx_suffix = layout.SHARD_SUFFIXES["megatron"]
    bin_f, idx_f = _with_suffix(shard, bin_suffix), _with_suffix(shard, idx_suffix)
    if bin_f is None or idx_f is None:
        problems.append(f"unit {shard.unit}: the manifest lists no {bin_suffix}/{idx_suffix} "
                        "pair")
        return 0, 0
    try:
        dtype = np.dtype(manifest.dtype)
    except TypeError:
        problems.append(f"{layout.MANIFEST}: unknown dtype {manifest.dtype!r}")
        return 0, 0
    max_id = _scan_bin(output_uri, bin_f, dtype, storage_options, problems)
    if max_id is not None and vocab and max_id >= vocab:
        problems.append(f"{bin_f.path}: token id {max_id} is outside the vocabulary "
                        f"(size {vocab})")
    raw_idx = _read_checked(output_uri, idx_f, storage_options, problems)
    if raw_idx is None:
        return 0, 0
    name = idx_f.path
    try:
        index = parse_index(raw_idx)
    except (ValueError, struct.error) as err:
        problems.append(f"{name}: not a valid Megatron index ({err})")
        return 0, 0
    if index.dtype != dtype:
        problems.append(f"{name}: dtype {index.dtype}, the manifest says {dtype}")
    n = len(index.lengths)
    lengths = index.lengths.astype(np.int64)
    if n and lengths.min() < 0:
        problems.append(f"{name}: negative document lengths")
    expected_ptr = np.concatenate([[0], np.cumsum(lengths[:-1] * dtype.itemsize)]) if n \
        else lengths
    if n and not np.array_equal(index.pointers, expected_ptr):
        bad = int(np.argmax(index.pointers != expected_ptr))
        problems.append(f"{name}: pointer {bad} is {int(index.pointers[bad])}, the lengths "
                        f"say {int(expected_ptr[bad])}")
    if n > 1 and np.any(np.diff(index.pointers) < 0):
        problems.append(f"{name}: pointers are not monotone")
    if not np.array_equal(index.document_indices, np.arange(n + 1)):
        problems.append(f"{name}: document indices are not 0..{n}")
    tokens = int(lengths.sum())
    if tokens * dtype.itemsize != bin_f.size:
        problems.append(f"{name}: lengths sum to {tokens} tokens ({tokens * dtype.itemsize} "
                        f"bytes), {bin_f.path} is {bin_f.size} bytes in the manifest")
    return n, tokens


def _check_parquet(output_uri: str, shard: ManifestShard,
                   storage_options: storage.StorageOptions | None,
                   problems: list[str], vocab: int) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    suffix = layout.data_suffix("parquet")
    file = _with_suffix(shard, suffix)
    if file is None:
        problems.append(f"unit {shard.unit}: the manifest lists no {suffix} file")
        return 0, 0
    name = file.path
    raw = _read_checked(output_uri, file, storage_options, problems)
    if raw is None:
        return 0, 0
    try:
        table = pq.read_table(pa.BufferReader(raw))
        ids = table.column("input_ids").combine_chunks()
        num = table.column("num_tokens").to_numpy()
        lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, KeyError, ValueError, OSError) as err:
        # a file Arrow cannot read, or without the columns: a trainer could not read it
        problems.append(f"{name}: not a readable token shard ({err})")
        return 0, 0
    if not np.array_equal(num, lengths):
        bad = int(np.argmax(num != lengths))
        problems.append(f"{name}: row {bad} has num_tokens {int(num[bad])} but "
                        f"{int(lengths[bad])} input_ids")
    values = ids.flatten()
    if vocab and len(values):
        max_id = int(pc.max(values).as_py())
        if max_id >= vocab:
            problems.append(f"{name}: token id {max_id} is outside the vocabulary "
                            f"(size {vocab})")
    return table.num_rows, int(lengths.sum())


def _check_rejects(output_uri: str, manifest: Manifest,
                   storage_options: storage.StorageOptions | None,
                   problems: list[str]) -> int:
    total = 0
    for entry in manifest.rejects:
        file = ShardFile(entry.path, entry.size, entry.sha256)
        raw = _read_checked(output_uri, file, storage_options, problems)
        if raw is None:
            continue
        records = 0
        for n, line in enumerate(raw.splitlines(), 1):
            try:
                records += int(json.loads(line).get("records", 1))
            except (ValueError, AttributeError):
                problems.append(f"{entry.path}: line {n} is not a JSON reject record")
        if records != entry.records:
            problems.append(f"{entry.path}: {records} rejected records, the manifest says "
                            f"{entry.records}")
        total += records
    return total


def _check_markers(output_uri: str, manifest: Manifest,
                   storage_options: storage.StorageOptions | None,
                   problems: list[str]) -> None:
    for shard in manifest.shards:
        unit = layout.unit_name(shard.unit)
        marker = layout.read_marker(output_uri, shard.unit, storage_options)
        if marker is None:
            problems.append(f"unit {unit}: its marker is missing or unreadable")
            continue
        if marker.fingerprint != manifest.fingerprint:
            problems.append(f"unit {unit}: its marker belongs to another plan")
        if marker.documents != shard.documents or marker.tokens != shard.tokens:
            problems.append(f"unit {unit}: the marker says {marker.documents} documents and "
                            f"{marker.tokens} tokens, the manifest {shard.documents} and "
                            f"{shard.tokens}")


def verify(output_uri: str, storage_options: storage.StorageOptions | None = None, *,
           on_shard: Callable[[int, int], None] | None = None) -> Report:
    """Check a committed dataset; the report lists every problem found."""
    output_uri = output_uri.rstrip("/")
    report = Report(output_uri)
    problems = report.problems
    try:
        manifest = layout.read_manifest(output_uri, storage_options)
    except DatasetError as err:
        problems.extend(err.problems)
        return report
    if manifest is None:
        problems.append(f"{layout.MANIFEST} is missing: the dataset was never committed (see "
                        "'tokenyard status')")
        return report
    vocab = manifest.tokenizer.vocab_size or 0
    documents = tokens = 0
    for i, shard in enumerate(manifest.shards):
        report.files += len(shard.files)
        report.bytes += sum(f.size for f in shard.files)
        if manifest.format == "megatron":
            n, t = _check_megatron(output_uri, shard, manifest, storage_options, problems,
                                   vocab)
        elif manifest.format == "parquet":
            n, t = _check_parquet(output_uri, shard, storage_options, problems, vocab)
        else:
            problems.append(f"{layout.MANIFEST}: unknown format {manifest.format!r}")
            return report
        unit = layout.unit_name(shard.unit)
        if n != shard.documents:
            problems.append(f"unit {unit}: {n} documents in its shard, the manifest says "
                            f"{shard.documents}")
        if t != shard.tokens:
            problems.append(f"unit {unit}: {t} tokens in its shard, the manifest says "
                            f"{shard.tokens}")
        documents += n
        tokens += t
        report.shards += 1
        if on_shard:
            on_shard(i + 1, len(manifest.shards))
    report.documents, report.tokens = documents, tokens
    rejected = _check_rejects(output_uri, manifest, storage_options, problems)
    _check_markers(output_uri, manifest, storage_options, problems)
    totals = manifest.totals
    if totals.documents != documents:
        problems.append(f"totals: {documents} documents in the shards, the manifest says "
                        f"{totals.documents}")
    if totals.tokens != tokens:
        problems.append(f"totals: {tokens} tokens in the shards, the manifest says "
                        f"{totals.tokens}")
    if totals.rejected != rejected:
        problems.append(f"totals: {rejected} records in {layout.REJECTS}/, the manifest says "
                        f"{totals.rejected}")
    if totals.records != documents + rejected:
        problems.append(f"reconciliation: records in ({totals.records}) != documents out "
                        f"({documents}) + rejected ({rejected})")
    if totals.units != len(manifest.shards):
        problems.append(f"totals: {len(manifest.shards)} shards listed, the manifest says "
                        f"{totals.units} units")
    return report


def check(output_uri: str, storage_options: storage.StorageOptions | None = None) -> Report:
    """:func:`verify`, raising :class:`DatasetError` when anything is wrong."""
    report = verify(output_uri, storage_options)
    report.raise_for_problems()
    return report
