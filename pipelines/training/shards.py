"""Windows of tokens out of a source's shards: memory-mapped, bounded, checked.

:class:`ShardStore` turns a shard file into a local path: the file itself for a local
dataset (its size checked against the manifest the first time), a verified copy from
the node's :class:`~pipelines.training.cache.ShardCache` for a remote one.
:class:`SourceReader` keeps a bounded set of shards open (Megatron ``.bin`` files are
memory-mapped, so the page cache holds them, not the process; a Parquet shard is
decoded into memory, so fewer of those are kept) and copies a window's
``seq_len + 1`` tokens out of one or more of them as int64.

Document boundaries come from the index (Megatron ``.idx`` lengths, Parquet
``num_tokens``), never from eos tokens: a document may contain the eos id as text.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import numpy as np

from pipelines import storage
from pipelines.errors import DatasetError
from pipelines.records import ShardFile
from pipelines.training.cache import ShardCache
from pipelines.training.sources import Shard, Source
from pipelines.training.windows import WindowGrid

log = logging.getLogger(__name__)

#: open shards kept per source (memory-mapped: costs a file descriptor each)
MAX_OPEN_MAPPED = 64
#: decoded Parquet shards kept per source (held in memory)
MAX_OPEN_DECODED = 8
_OPEN_ATTEMPTS = 3


class ShardStore:
    """Local paths of shard files; remote ones through the cache."""

    def __init__(self, storage_options: storage.StorageOptions | None,
                 cache: ShardCache | None) -> None:
        self.storage_options = storage_options
        self.cache = cache
        self._checked: set[str] = set()

    def path(self, shard: Shard, file: ShardFile) -> str:
        uri = shard.uri(file)
        if not storage.is_local(uri):
            if self.cache is None:
                raise AssertionError("a remote source needs a cache")
            return self.cache.fetch(uri, file, self.storage_options)
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if path not in self._checked:
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                raise DatasetError(shard.root, [
                    f"{file.path}: missing; the manifest lists it ({file.size:,} bytes), so "
                    "the dataset was changed or partly deleted after it was committed"]) from None
            if size != file.size:
                raise DatasetError(shard.root, [
                    f"{file.path}: {size:,} bytes, the manifest says {file.size:,}: the shard "
                    "is truncated or was overwritten ('tokenyard verify' lists every problem)"])
            self._checked.add(path)
        return path


class OpenShard:
    """One shard's tokens, and its documents' start offsets when first asked."""

    def __init__(self, shard: Shard, store: ShardStore) -> None:
        self.shard = shard
        self._store = store
        self._starts: np.ndarray | None = None
        dtype = np.dtype(shard.dtype).newbyteorder("<")
        if shard.format == "parquet":
            self.tokens, self._lengths = _read_parquet(store.path(shard, shard.data_file), dtype)
        else:
            path = store.path(shard, shard.data_file)
            # a plain ndarray view of the map: slicing a np.memmap costs more per call
            self.tokens = (np.memmap(path, dtype=dtype, mode="r").view(np.ndarray)
                           if shard.data_file.size else np.zeros(0, dtype))
            self._lengths = None
        if len(self.tokens) != shard.tokens:
            raise DatasetError(shard.root, [
                f"{shard.data_file.path}: {len(self.tokens):,} tokens, the manifest says "
                f"{shard.tokens:,}"])

    def doc_starts(self) -> np.ndarray:
        """Offsets (within the shard) of the first token of every document."""
        if self._starts is None:
            lengths = self._lengths
            if lengths is None:
                lengths = self._index_lengths()
            starts = np.zeros(len(lengths), dtype=np.int64)
            np.cumsum(lengths[:-1], out=starts[1:])
            self._starts = starts
        return self._starts

    def _index_lengths(self) -> np.ndarray:
        from pipelines.formats.megatron import parse_index

        index_file = self.shard.index_file
        if index_file is None:
            raise DatasetError(self.shard.root, [
                f"unit {self.shard.unit:06d}: the manifest lists no .idx file"])
        with open(self._store.path(self.shard, index_file), "rb") as f:
            raw = f.read()
        try:
            lengths = parse_index(raw).lengths.astype(np.int64)
        except ValueError as err:
            raise DatasetError(self.shard.root, [f"{index_file.path}: {err}"]) from None
        if int(lengths.sum()) != self.shard.tokens:
            raise DatasetError(self.shard.root, [
                f"{index_file.path}: lengths sum to {int(lengths.sum()):,} tokens, the manifest "
                f"says {self.shard.tokens:,}"])
        return lengths


def _read_parquet(path: str, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["input_ids", "num_tokens"])
    ids = table.column("input_ids").combine_chunks()
    tokens = pc.list_flatten(ids).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    lengths = table.column("num_tokens").to_numpy().astype(np.int64)
    return tokens, lengths


class SourceReader:
    """Copies windows out of one source's shards."""

    def __init__(self, source: Source, grid: WindowGrid, store: ShardStore) -> None:
        self.source = source
        self.shards = source.shards
        self.grid = grid
        self.offsets = grid.token_offsets
        self.seq_len = grid.seq_len
        self.store = store
        parquet = any(s.format == "parquet" for s in self.shards)
        self.max_open = MAX_OPEN_DECODED if parquet else MAX_OPEN_MAPPED
        self._open: OrderedDict[int, OpenShard] = OrderedDict()

    def shard(self, index: int) -> OpenShard:
        found = self._open.get(index)
        if found is not None:
            self._open.move_to_end(index)
            return found
        for attempt in range(1, _OPEN_ATTEMPTS + 1):
            try:
                found = OpenShard(self.shards[index], self.store)
                break
            except FileNotFoundError:  # evicted by another process between fetch and open
                if attempt == _OPEN_ATTEMPTS:
                    raise
                log.debug("shard %d vanished before it was opened; fetching again", index)
        self._open[index] = found
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return found

    def window(self, window: int) -> np.ndarray:
        """The window's ``seq_len + 1`` tokens, as int64."""
        start, stop = self.grid.token_range(window)
        out = np.empty(stop - start, dtype=np.int64)
        s = int(np.searchsorted(self.offsets, start, "right")) - 1
        pos = start
        while pos < stop:
            lo, hi = int(self.offsets[s]), min(stop, int(self.offsets[s + 1]))
            if hi > pos:
                out[pos - start:hi - start] = self.shard(s).tokens[pos - lo:hi - lo]
                pos = hi
            s += 1
        return out

    def doc_starts_in(self, window: int) -> np.ndarray:
        """Offsets ``j`` (``0 < j < seq_len``) in the window where a document starts."""
        start, _ = self.grid.token_range(window)
        end = start + self.seq_len
        found = []
        s = int(np.searchsorted(self.offsets, start, "right")) - 1
        while s < len(self.shards) and int(self.offsets[s]) < end:
            if self.shards[s].tokens:
                starts = self.shard(s).doc_starts() + int(self.offsets[s])
                lo, hi = np.searchsorted(starts, [start + 1, end])
                found.append(starts[lo:hi] - start)
            s += 1
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
