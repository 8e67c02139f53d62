"""Samples as windows over one token stream, and their shard-aligned blocks.

A *source* is one or more committed datasets read as a single stream: every shard's
tokens, in manifest order (catalog order across versions), concatenated. Documents
are already eos-terminated in the shards, so the stream is documents packed end to
end. With ``L = seq_len`` and ``T`` tokens in the stream:

* there are ``N = (T - 1) // L`` windows, and window ``k`` is the tokens
  ``[k*L, k*L + L + 1)``: ``L + 1`` tokens, inputs ``[:-1]`` and labels ``[1:]``;
* consecutive windows share one boundary token (the last of ``k`` is the first of
  ``k + 1``), so every token but the first is a label exactly once per epoch;
* windows run across document and shard boundaries;
* the last partial window (the final ``(T - 1) % L`` tokens, fewer than ``L`` new
  labels) is dropped, every epoch: at most ``L`` tokens of a whole source are never
  trained on, never one partial window per shard.

This is exactly Megatron-LM's ``GPTDataset`` sample index for one epoch with
``add_extra_token_to_sequence`` and ``drop_last_partial_sequence`` (its defaults), built
over the same documents in the same order: its sample ``k`` is our window ``k``
(``(T - 1) // L`` samples, each ``L + 1`` tokens, overlapping by one). GPTDataset
shuffles its *document* order before cutting (so its windows differ between seeds and
epochs) and treats every ``.bin``/``.idx`` prefix of a blend as a separate dataset; the
reader cuts once, over all shards of a source in manifest order, and shuffles the
windows instead (see :mod:`pipelines.training.order`). With ``shuffle=False`` the reader
yields GPTDataset's samples in order, as if its document shuffle were the identity
and the shards were one merged ``.bin``/``.idx`` pair.

A *block* is the set of windows that start inside one shard; blocks are what the
shuffle permutes, so that reads stay within few shards at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class WindowGrid:
    """The windows of one source: computed from per-shard token counts, O(shards)."""

    seq_len: int
    #: start of every shard in the stream, and the total at the end (int64, shards + 1)
    token_offsets: np.ndarray

    @classmethod
    def of(cls, shard_tokens: np.ndarray | list[int], seq_len: int) -> "WindowGrid":
        counts = np.asarray(shard_tokens, dtype=np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(seq_len, offsets)

    @property
    def tokens(self) -> int:
        return int(self.token_offsets[-1])

    @property
    def windows(self) -> int:
        return max(0, (self.tokens - 1) // self.seq_len)

    @property
    def dropped_tokens(self) -> int:
        """Tokens after the last whole window (never a label in any epoch)."""
        return max(0, self.tokens - 1 - self.windows * self.seq_len) if self.tokens else 0

    def block_starts(self) -> np.ndarray:
        """First window starting in each shard, and ``N`` at the end (int64, shards + 1).

        Block ``s`` is windows ``[starts[s], starts[s + 1])``; it may be empty (a shard
        shorter than ``L`` in which no window starts).
        """
        starts = -(-self.token_offsets // self.seq_len)  # ceil division
        return np.minimum(starts, self.windows)

    def token_range(self, window: int) -> tuple[int, int]:
        start = int(window) * self.seq_len
        return start, start + self.seq_len + 1

    def shards_of(self, windows: np.ndarray) -> np.ndarray:
        """The shards that the given windows read from, in order of first need."""
        windows = np.asarray(windows, dtype=np.int64)
        if not len(windows):
            return np.zeros(0, dtype=np.int64)
        first = np.searchsorted(self.token_offsets, windows * self.seq_len, "right") - 1
        last = np.searchsorted(self.token_offsets, windows * self.seq_len + self.seq_len,
                               "right") - 1
        wide = last - first > 1  # windows that cross shards shorter than a window
        between = [np.arange(a + 1, b) for a, b in zip(first[wide], last[wide])]
        ordered = np.concatenate([np.stack([first, last], 1).ravel(), *between])
        _, index = np.unique(ordered, return_index=True)
        return ordered[np.sort(index)]
