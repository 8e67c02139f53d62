"""The order of one source's windows in each epoch: shuffled blocks, then a shuffle window.

For epoch ``e`` of a source with ``N`` windows:

1. the shard-aligned blocks (:meth:`WindowGrid.block_starts`) are permuted by a
   seeded permutation of ``(seed, source, e)``; laying their windows end to end gives
   the *block order* of all ``N`` windows;
2. the block order is cut into chunks of ``window_samples`` consecutive windows
   (the last one shorter), and each chunk is permuted by a permutation of
   ``(seed, source, e, chunk)``.

Position ``p`` of the epoch (``0 <= p < N``) is then a window id; every window has
exactly one position per epoch. A chunk covers about ``window_samples * seq_len``
tokens of a few consecutive (shuffled) shards, so a reader needs only those shards
at a time and reads each of them whole: what object storage is good at.

Nothing here is O(windows) at open: the block permutation is O(shards) per epoch,
and a chunk's windows are computed when first needed (O(window_samples)), a few
kept in memory. With ``shuffle=False`` position ``p`` is window ``p``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from pipelines.training.permute import key_of, permutation
from pipelines.training.windows import WindowGrid

#: chunks (of ``window_samples`` windows) and epochs kept computed per source
_KEPT_CHUNKS = 4
_KEPT_EPOCHS = 2


class SourceOrder:
    """Maps positions of an epoch to window ids for one source."""

    def __init__(self, grid: WindowGrid, *, seed: int, stream: int, shuffle: bool,
                 window_samples: int) -> None:
        if window_samples < 1:
            raise ValueError("window_samples must be at least 1")
        self.grid = grid
        self.windows = grid.windows
        self.seed = seed
        self.stream = stream
        self.shuffle = shuffle
        self.window_samples = window_samples
        starts = grid.block_starts()
        self._block_first = starts[:-1]
        self._block_sizes = np.diff(starts)
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._chunks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _blocks(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(cumulative sizes, first window) of the epoch's permuted blocks."""
        found = self._epochs.get(epoch)
        if found is None:
            perm = permutation(len(self._block_sizes), key_of(self.seed, self.stream, "blocks",
                                                               epoch))
            cum = np.zeros(len(perm) + 1, dtype=np.int64)
            np.cumsum(self._block_sizes[perm], out=cum[1:])
            found = (cum, self._block_first[perm])
            self._epochs[epoch] = found
            while len(self._epochs) > _KEPT_EPOCHS:
                self._epochs.popitem(last=False)
        return found

    def chunk(self, epoch: int, index: int) -> np.ndarray:
        """The window ids at positions ``[index * W, (index + 1) * W)`` of the epoch."""
        key = (epoch, index)
        found = self._chunks.get(key)
        if found is not None:
            self._chunks.move_to_end(key)
            return found
        lo = index * self.window_samples
        hi = min(self.windows, lo + self.window_samples)
        if lo >= hi:
            raise IndexError(f"chunk {index} is past the epoch's {self.windows} windows")
        cum, first = self._blocks(epoch)
        positions = np.arange(lo, hi, dtype=np.int64)
        block = np.searchsorted(cum, positions, "right") - 1
        windows = first[block] + (positions - cum[block])
        windows = windows[permutation(hi - lo, key_of(self.seed, self.stream, "chunk", epoch,
                                                      index))]
        self._chunks[key] = windows
        while len(self._chunks) > _KEPT_CHUNKS:
            self._chunks.popitem(last=False)
        return windows

    def windows_at(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Window ids at the given positions (each ``0 <= p < N``) of an epoch."""
        positions = np.asarray(positions, dtype=np.int64)
        if not self.shuffle:
            return positions.copy()
        out = np.empty_like(positions)
        chunk_of = positions // self.window_samples
        for index in np.unique(chunk_of):
            where = chunk_of == index
            out[where] = self.chunk(epoch, int(index))[positions[where]
                                                       - index * self.window_samples]
        return out
