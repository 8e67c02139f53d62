"""Re-check a committed dataset the way a careful trainer would, before it trains on it.

:func:`verify` reads ``manifest.json`` and checks, for every shard it lists: the files
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

from pipelines import storage
from pipelines.errors import DatasetError, StorageNotFoundError

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


def stream_checked(uri: str, storage_options: storage.StorageOptions | None, expected_size: int,
                   expected_sha: str, name: str,
                    problems: list[str], on_chunk=None) -> bool:
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


def _read_checked(uri: str, storage_options: storage.StorageOptions | None, expected_size: int,
                  expected_sha: str, name: str,
                  problems: list[str], keep: bool) -> bytes | None:
    """:func:`stream_checked`, returning the file's bytes when ``keep``."""
    kept: list[bytes] = []
    found = stream_checked(uri, storage_options, expected_size, expected_sha, name, problems,
                            kept.append if keep else None)
    if not found:
        return None
    return b"".join(kept)


def _scan_bin(uri: str, meta: dict, dtype: np.dtype, storage_options: storage.StorageOptions | None,
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

    if not stream_checked(uri, storage_options, meta["size"], meta["sha256"], meta["path"],
                          problems,
                           scan):
        return None
    return state["max"]


def _check_megatron(output_uri: str, shard: dict, files: dict[str, dict], manifest: dict,
                    storage_options: storage.StorageOptions | None, problems: list[str],
                    vocab: int) -> tuple[int, int]:
    from pipelines.formats.megatron import parse_index

    bin_f = next((f for p, f in files.items() if p.endswith(".bin")), None)
    idx_f = next((f for p, f in files.items() if p.endswith(".idx")), None)
    unit = shard.get("unit")
    if bin_f is None or idx_f is None:
        problems.append(f"unit {unit}: the manifest lists no .bin/.idx pair")
        return 0, 0
    try:
        dtype = np.dtype(manifest.get("dtype"))
    except TypeError:
        problems.append(f"manifest.json: unknown dtype {manifest.get('dtype')!r}")
        return 0, 0
    max_id = _scan_bin(storage.join(output_uri, bin_f["path"]), bin_f, dtype, storage_options,
                       problems)
    if max_id is not None and vocab and max_id >= vocab:
        problems.append(f"{bin_f['path']}: token id {max_id} is outside the vocabulary "
                        f"(size {vocab})")
    raw_idx = _read_checked(storage.join(output_uri, idx_f["path"]), storage_options, idx_f["size"],
                            idx_f["sha256"], idx_f["path"], problems, keep=True)
    if raw_idx is None:
        return 0, 0
    name = idx_f["path"]
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
    if tokens * dtype.itemsize != bin_f["size"]:
        problems.append(f"{name}: lengths sum to {tokens} tokens ({tokens * dtype.itemsize} "
                        f"bytes), {bin_f['path']} is {bin_f['size']} bytes in the manifest")
    return n, tokens


def _check_parquet(output_uri: str, shard: dict, files: dict[str, dict],
                   storage_options: storage.StorageOptions | None,
                   problems: list[str], vocab: int) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf_meta = next((f for p, f in files.items() if p.endswith(".parquet")), None)
    if pf_meta is None:
        problems.append(f"unit {shard.get('unit')}: the manifest lists no .parquet file")
        return 0, 0
    name = pf_meta["path"]
    raw = _read_checked(storage.join(output_uri, name), storage_options, pf_meta["size"],
                        pf_meta["sha256"], name, problems, keep=True)
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


def _check_rejects(output_uri: str, manifest: dict, storage_options: storage.StorageOptions | None,
                   problems: list[str]) -> int:
    total = 0
    for entry in manifest.get("rejects", []):
        raw = _read_checked(storage.join(output_uri, entry["path"]), storage_options, entry["size"],
                            entry["sha256"], entry["path"], problems, keep=True)
        if raw is None:
            continue
        records = 0
        for n, line in enumerate(raw.splitlines(), 1):
            try:
                records += int(json.loads(line).get("records", 1))
            except (ValueError, AttributeError):
                problems.append(f"{entry['path']}: line {n} is not a JSON reject record")
        if records != entry.get("records"):
            problems.append(f"{entry['path']}: {records} rejected records, the manifest says "
                            f"{entry.get('records')}")
        total += records
    return total


def _check_markers(output_uri: str, manifest: dict, storage_options: storage.StorageOptions | None,
                   problems: list[str]) -> None:
    from pipelines.task import read_marker

    for shard in manifest.get("shards", []):
        unit = shard.get("unit")
        marker = read_marker(output_uri, unit, storage_options)
        if marker is None:
            problems.append(f"unit {unit:06d}: its marker is missing or unreadable")
            continue
        if marker.fingerprint != manifest.get("fingerprint"):
            problems.append(f"unit {unit:06d}: its marker belongs to another plan")
        if marker.documents != shard.get("documents") or marker.tokens != shard.get("tokens"):
            problems.append(f"unit {unit:06d}: the marker says {marker.documents} documents and "
                            f"{marker.tokens} tokens, the manifest {shard.get('documents')} and "
                            f"{shard.get('tokens')}")


def verify(output_uri: str, storage_options: storage.StorageOptions | None = None, *,
           on_shard: Callable[[int, int], None] | None = None) -> Report:
    """Check a committed dataset; the report lists every problem found."""
    output_uri = output_uri.rstrip("/")
    report = Report(output_uri)
    problems = report.problems
    try:
        raw = storage.read_bytes(storage.join(output_uri, "manifest.json"), storage_options)
    except StorageNotFoundError:
        problems.append("manifest.json is missing: the dataset was never committed (see "
                        "'tokenyard status')")
        return report
    try:
        manifest = json.loads(raw)
        shards = manifest["shards"]
        fmt = manifest["format"]
    except (ValueError, KeyError, TypeError) as err:
        problems.append(f"manifest.json is not a tokenyard manifest ({err})")
        return report
    vocab = int(manifest.get("tokenizer", {}).get("vocab_size") or 0)
    documents = tokens = 0
    for i, shard in enumerate(shards):
        files = {f["path"]: f for f in shard.get("files", [])}
        report.files += len(files)
        report.bytes += sum(f["size"] for f in files.values())
        if fmt == "megatron":
            n, t = _check_megatron(output_uri, shard, files, manifest, storage_options, problems,
                                   vocab)
        elif fmt == "parquet":
            n, t = _check_parquet(output_uri, shard, files, storage_options, problems, vocab)
        else:
            problems.append(f"manifest.json: unknown format {fmt!r}")
            return report
        unit = shard.get("unit")
        if n != shard.get("documents"):
            problems.append(f"unit {unit:06d}: {n} documents in its shard, the manifest says "
                            f"{shard.get('documents')}")
        if t != shard.get("tokens"):
            problems.append(f"unit {unit:06d}: {t} tokens in its shard, the manifest says "
                            f"{shard.get('tokens')}")
        documents += n
        tokens += t
        report.shards += 1
        if on_shard:
            on_shard(i + 1, len(shards))
    report.documents, report.tokens = documents, tokens
    rejected = _check_rejects(output_uri, manifest, storage_options, problems)
    _check_markers(output_uri, manifest, storage_options, problems)
    totals = manifest.get("totals", {})
    if totals.get("documents") != documents:
        problems.append(f"totals: {documents} documents in the shards, the manifest says "
                        f"{totals.get('documents')}")
    if totals.get("tokens") != tokens:
        problems.append(f"totals: {tokens} tokens in the shards, the manifest says "
                        f"{totals.get('tokens')}")
    if totals.get("rejected") != rejected:
        problems.append(f"totals: {rejected} records in rejects/, the manifest says "
                        f"{totals.get('rejected')}")
    records = totals.get("records")
    if records != documents + rejected:
        problems.append(f"reconciliation: records in ({records}) != documents out "
                        f"({documents}) + rejected ({rejected})")
    if totals.get("units") is not None and totals["units"] != len(shards):
        problems.append(f"totals: {len(shards)} shards listed, the manifest says "
                        f"{totals['units']} units")
    return report


def check(output_uri: str, storage_options: storage.StorageOptions | None = None) -> Report:
    """:func:`verify`, raising :class:`DatasetError` when anything is wrong."""
    report = verify(output_uri, storage_options)
    report.raise_for_problems()
    return report
