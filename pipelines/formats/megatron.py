"""Megatron-LM indexed datasets: the ``.bin``/``.idx`` pair.

``.bin`` is the raw little-endian token stream with no header. ``.idx`` is::

    b"MMIDIDX\\x00\\x00"   magic
    <Q  version (1)
    <B  dtype code (8 = uint16, 4 = int32)
    <Q  sequence count N
    <Q  document count (N + 1)
    int32[N]    sequence lengths, in tokens
    int64[N]    sequence pointers, in bytes into .bin
    int64[N+1]  document indices: 0, 1, ..., N (one sequence per document)

This is what Megatron's ``IndexedDataset`` reads (and ``numpy.memmap`` can too).
The writer streams tokens straight to storage; it keeps only the lengths.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from pipelines import layout, storage
from pipelines.records import ShardFile

#: the token stream and the index of a shard, after its base name
BIN, IDX = layout.SHARD_SUFFIXES["megatron"]

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64,
               6: np.float64, 7: np.float32, 8: np.uint16}
CODE_OF = {np.dtype(v): k for k, v in DTYPE_CODES.items()}
_POINTER_CHUNK = 1 << 20


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 below 65,500 entries (Megatron's own rule), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65_500 else np.dtype(np.int32)


def index_header(dtype: np.dtype, sequences: int) -> bytes:
    return (MAGIC + struct.pack("<Q", VERSION) + struct.pack("<B", CODE_OF[np.dtype(dtype)])
            + struct.pack("<Q", sequences) + struct.pack("<Q", sequences + 1))


class MegatronWriter:
    """Writes one unit's ``.bin`` and ``.idx`` (at the base the caller gives: the unit's
    shard base in :mod:`pipelines.layout`); use as a context manager."""

    suffixes = (BIN, IDX)
    #: Megatron shards keep no document ids: the reader need not make them
    needs_doc_ids = False

    def __init__(self, base_uri: str, rel_base: str, dtype: np.dtype,
                 storage_options: storage.StorageOptions):
        self.base_uri = base_uri
        self.rel_base = rel_base
        self.dtype = np.dtype(dtype)
        self.storage_options = storage_options
        self._lengths = array("i")
        self._stack = ExitStack()
        self._bin = None
        self.files: tuple[ShardFile, ...] = ()

    def __enter__(self) -> "MegatronWriter":
        self._bin = self._stack.enter_context(
            storage.atomic_writer(self.base_uri + BIN, self.storage_options))
        return self

    def write(self, tokens: np.ndarray, lengths: np.ndarray, ids: list[str]) -> None:
        if tokens.dtype != self.dtype:
            tokens = tokens.astype(self.dtype)
        self._bin.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).data)
        self._lengths.frombytes(lengths.astype(np.int32).tobytes())

    def write_stream(self, parts: Iterable[np.ndarray], doc_id: str) -> tuple[int, int]:
        """One document whose ids arrive in parts; returns (tokens, largest id)."""
        n, top = 0, -1
        for part in parts:
            if part.size:
                self._bin.write(part.astype(self.dtype.newbyteorder("<"), copy=False).data)
                n += int(part.size)
                top = max(top, int(part.max()))
        self._lengths.append(n)
        return n, top

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._stack.__exit__(exc_type, exc, tb)
            return False
        bin_writer = self._bin
        self._stack.close()  # commits .bin
        with storage.atomic_writer(self.base_uri + IDX, self.storage_options) as idx:
            write_index(idx, self._lengths, self.dtype)
        self.files = (
            ShardFile(self.rel_base + BIN, bin_writer.size, bin_writer.sha256),
            ShardFile(self.rel_base + IDX, idx.size, idx.sha256),
        )
        return False


def write_index(out, lengths: array, dtype: np.dtype) -> None:
    n = len(lengths)
    out.write(index_header(dtype, n))
    lens = np.frombuffer(lengths, dtype=np.int32) if n else np.zeros(0, np.int32)
    out.write(lens.astype("<i4", copy=False).data)
    itemsize = np.dtype(dtype).itemsize
    offset = 0
    for start in range(0, n, _POINTER_CHUNK):
        chunk = lens[start:start + _POINTER_CHUNK].astype(np.int64) * itemsize
        pointers = np.cumsum(chunk) - chunk + offset  # exclusive prefix sum
        out.write(pointers.astype("<i8", copy=False).data)
        offset += int(chunk.sum())
    for start in range(0, n + 1, _POINTER_CHUNK):
        out.write(np.arange(start, min(n + 1, start + _POINTER_CHUNK), dtype="<i8").data)


@dataclass(frozen=True)
class MegatronIndex:
    dtype: np.dtype
    lengths: np.ndarray
    pointers: np.ndarray
    document_indices: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


def parse_index(raw: bytes) -> MegatronIndex:
    """Parse ``.idx`` bytes, checking the header; raises ValueError on any mismatch."""
    if raw[:9] != MAGIC:
        raise ValueError("bad magic: not a Megatron .idx file")
    (version,) = struct.unpack_from("<Q", raw, 9)
    if version != VERSION:
        raise ValueError(f"unsupported .idx version {version}")
    (code,) = struct.unpack_from("<B", raw, 17)
    if code not in DTYPE_CODES:
        raise ValueError(f"unknown dtype code {code}")
    (n,) = struct.unpack_from("<Q", raw, 18)
    (docs,) = struct.unpack_from("<Q", raw, 26)
    offset = 34
    expected = offset + 4 * n + 8 * n + 8 * docs
    if len(raw) != expected:
        raise ValueError(f".idx is {len(raw)} bytes; its header says {expected}")
    lengths = np.frombuffer(raw, "<i4", n, offset)
    pointers = np.frombuffer(raw, "<i8", n, offset + 4 * n)
    doc_idx = np.frombuffer(raw, "<i8", docs, offset + 12 * n)
    return MegatronIndex(np.dtype(DTYPE_CODES[code]), lengths, pointers, doc_idx)


class MegatronReader:
    """Reads one shard pair: ``len(reader)`` documents, ``reader[i]`` their tokens.

    Local shards are memory-mapped; remote ones are fetched whole on first access.
    """

    def __init__(self, base_uri: str,
                 storage_options: storage.StorageOptions | None = None) -> None:
        self.index = parse_index(storage.read_bytes(base_uri + IDX, storage_options))
        if storage.is_local(base_uri):
            path = base_uri[len("file://"):] if base_uri.startswith("file://") else base_uri
            size = storage.size_of(base_uri + BIN, storage_options) or 0
            self.tokens = (np.memmap(path + BIN, dtype=self.index.dtype, mode="r")
                           if size else np.zeros(0, self.index.dtype))
        else:
            raw = storage.read_bytes(base_uri + BIN, storage_options)
            self.tokens = np.frombuffer(raw, dtype=self.index.dtype)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.index.pointers[i]) // self.index.dtype.itemsize
        return np.asarray(self.tokens[start:start + int(self.index.lengths[i])])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
