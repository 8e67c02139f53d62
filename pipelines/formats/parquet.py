"""Parquet shards: one row per document, readable by Dask, Spark and HF ``datasets``.

Columns: ``input_ids`` (list of uint16, or uint32 for vocabularies of 65,500 and more),
``num_tokens`` (int32) and ``id`` (the record's id field, or where it came from). One
row group per tokenized batch; zstd pages; no timestamps, so bytes are stable.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import layout, storage
from pipelines.records import ShardFile

COMPRESSION = "zstd"


def schema_for(dtype: np.dtype) -> pa.Schema:
    value = pa.uint16() if np.dtype(dtype).itemsize == 2 else pa.uint32()
    return pa.schema([
        pa.field("input_ids", pa.list_(value), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
    ])


#: documents per row group: row groups depend on the documents only, never on how the
#: reader batched them, so shards are the same bytes whatever the batch settings
ROW_GROUP_DOCUMENTS = 1000
#: a row group is written early once it holds this many tokens (bounds memory)
ROW_GROUP_MAX_TOKENS = 16 * 2**20


class ParquetShardWriter:
    """Writes one unit's ``.parquet`` (at the base the caller gives: the unit's shard base
    in :mod:`pipelines.layout`); use as a context manager."""

    suffixes = layout.SHARD_SUFFIXES["parquet"]
    #: rows carry each document's source id
    needs_doc_ids = True

    def __init__(self, base_uri: str, rel_base: str, dtype: np.dtype,
                 storage_options: storage.StorageOptions):
        self.uri = base_uri + self.suffixes[0]
        self.rel = rel_base + self.suffixes[0]
        self.schema = schema_for(dtype)
        self.storage_options = storage_options
        self._ctx = None
        self._out = None
        self._writer = None
        self._rows: list[tuple[np.ndarray, np.ndarray, list[str]]] = []
        self._row_docs = self._row_tokens = 0
        self.files: tuple[ShardFile, ...] = ()

    def __enter__(self) -> "ParquetShardWriter":
        self._ctx = storage.atomic_writer(self.uri, self.storage_options)
        self._out = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(_Sink(self._out), self.schema, compression=COMPRESSION)
        return self

    def write(self, tokens: np.ndarray, lengths: np.ndarray, ids: list[str]) -> None:
        """Documents' tokens (concatenated) with their lengths and ids."""
        ends = np.cumsum(lengths)
        start = 0
        while start < len(lengths):
            room = ROW_GROUP_DOCUMENTS - self._row_docs
            stop = min(len(lengths), start + room)
            first = int(ends[start - 1]) if start else 0
            last = int(ends[stop - 1])
            self._rows.append((tokens[first:last], lengths[start:stop], ids[start:stop]))
            self._row_docs += stop - start
            self._row_tokens += last - first
            if self._row_docs >= ROW_GROUP_DOCUMENTS or self._row_tokens >= ROW_GROUP_MAX_TOKENS:
                self._flush()
            start = stop

    def _flush(self) -> None:
        if not self._rows:
            return
        tokens = np.concatenate([r[0] for r in self._rows])
        lengths = np.concatenate([r[1] for r in self._rows])
        ids = [i for r in self._rows for i in r[2]]
        self._rows, self._row_docs, self._row_tokens = [], 0, 0
        self._write_group(tokens, lengths, ids)

    def _write_group(self, tokens: np.ndarray, lengths: np.ndarray, ids: list[str]) -> None:
        value_type = self.schema.field("input_ids").type.value_type
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = pa.array(tokens.astype(value_type.to_pandas_dtype(), copy=False))
        table = pa.Table.from_arrays([
            pa.ListArray.from_arrays(pa.array(offsets), values),
            pa.array(lengths.astype(np.int32)),
            pa.array(ids, pa.string()),
        ], schema=self.schema)
        self._writer.write_table(table, row_group_size=max(len(ids), 1))

    def write_stream(self, parts: Iterable[np.ndarray], doc_id: str) -> tuple[int, int]:
        """One document whose ids arrive in parts (a row holds them all, so they are
        gathered first); returns (tokens, largest id)."""
        ids = np.concatenate([np.asarray(p) for p in parts] or [np.zeros(0, np.uint16)])
        self._flush()
        self._write_group(ids, np.array([ids.size]), [doc_id])
        return int(ids.size), int(ids.max()) if ids.size else -1

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        except Exception:
            if exc_type is None:
                raise
        self._ctx.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self.files = (ShardFile(self.rel, self._out.size, self._out.sha256),)
        return False


class _Sink:
    """The file protocol pyarrow asks of a Python sink, over a HashingWriter."""

    def __init__(self, out) -> None:
        self._out = out
        self.closed = False

    def write(self, data) -> int:
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.tell()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class ParquetShardReader:
    """Reads one Parquet shard: ``len(reader)`` documents, ``reader[i]`` their tokens."""

    def __init__(self, uri: str, storage_options: storage.StorageOptions | None = None) -> None:
        raw = storage.read_bytes(uri, storage_options)
        self.table = pq.read_table(pa.BufferReader(raw))
        self._ids = self.table.column("input_ids").combine_chunks()

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> np.ndarray:
        return self._ids[i].values.to_numpy(zero_copy_only=False)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def ids(self) -> list[str]:
        return self.table.column("id").to_pylist()
