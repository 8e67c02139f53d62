"""PyTorch: the dataset as an ``IterableDataset``, a loader whose state is what the loop
consumed, and a collate function for packed samples. The only module that imports torch.

:class:`SequenceDataset` splits its rank's share across the ``DataLoader``'s workers
itself (``get_worker_info``): worker ``w`` of ``n`` builds the rank's batches
``w, w + n, ...`` (see :mod:`pipelines.training.dataset`), which is the order in which
the ``DataLoader`` yields them.

:class:`SequenceLoader` is a ``DataLoader`` (same arguments) that tells the dataset
its batch size and counts the batches it yields: a worker prefetching batches ahead
never moves ``dataset.state_dict()`` past what the loop received. With persistent
workers, each new iteration starts where the loop stopped: the loader publishes the
starting position to its workers through a small shared-memory array before they
start the iteration. Reading a ``SequenceDataset`` with a plain ``DataLoader`` and
workers is refused with an explanation, since its state could not be kept exact;
without workers a plain ``DataLoader`` is fine (the dataset counts what it yields).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import get_spawning_popen

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from pipelines.errors import ConfigError
from pipelines.training import dataset as core

#: shared slots: iteration start, end (-1: none), this rank's share (-1: endless)
_SHARED_SLOTS = 3


class SequenceDataset(core.SequenceDataset, IterableDataset):
    """:class:`pipelines.training.dataset.SequenceDataset` as a torch ``IterableDataset``."""

    _shared = None

    def _worker_slot(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _iteration_span(self):
        if get_worker_info() is None:
            return super()._iteration_span()
        if self._shared is None:
            raise ConfigError(
                "a SequenceDataset is being read by DataLoader worker processes, but not "
                "through SequenceLoader; the dataset object in the training process cannot see "
                "what the workers read, so its state_dict() would not match what the loop "
                "consumed and a resume would skip or repeat samples.",
                hint="Use pipelines.training.SequenceLoader(dataset, batch_size=..., "
                     "num_workers=..., persistent_workers=...): it takes DataLoader's "
                     "arguments and keeps the state exact.")
        start, end, share = (int(v) for v in self._shared)
        return (start, None if end < 0 else end, None if share < 0 else share), False

    def _bind_loader(self, block: int, context) -> None:
        self._block = block
        self._shared = context.RawArray("q", _SHARED_SLOTS)

    def _publish(self, span: tuple[int, int | None, int | None]) -> None:
        start, end, share = span
        self._shared[0] = start
        self._shared[1] = -1 if end is None else end
        self._shared[2] = -1 if share is None else share

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if get_spawning_popen() is None:  # shared memory travels only to new workers
            state["_shared"] = None
        return state


def collate(samples: list):
    """Stack token arrays into an int64 tensor ``(batch, seq_len + 1)``.

    Samples with boundaries become a dict: ``tokens`` and ``position_ids`` stacked,
    ``cu_seqlens`` (int32) of the batch's inputs flattened to ``batch * seq_len``
    tokens, and ``max_seqlen``, as FlashAttention's varlen functions take them.
    """
    first = samples[0]
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(samples))
    if isinstance(first, dict) and "cu_seqlens" in first:
        seq_len = len(first["position_ids"])
        parts = [np.zeros(1, np.int32)]
        parts += [s["cu_seqlens"][1:] + i * seq_len for i, s in enumerate(samples)]
        return {
            "tokens": torch.from_numpy(np.stack([s["tokens"] for s in samples])),
            "position_ids": torch.from_numpy(np.stack([s["position_ids"] for s in samples])),
            "cu_seqlens": torch.from_numpy(np.concatenate(parts).astype(np.int32)),
            "max_seqlen": int(max(np.diff(s["cu_seqlens"]).max() for s in samples)),
        }
    return default_collate(samples)


class SequenceLoader(DataLoader):
    """A ``DataLoader`` over a :class:`SequenceDataset` whose state matches the loop.

    Takes ``DataLoader``'s arguments. ``state_dict()``/``load_state_dict()`` are the
    dataset's (call them between steps: after the loop received a batch, the state
    counts it). ``drop_last`` and ``in_order=False`` are refused: the first would skip
    the end of each epoch, the second would break the order the state relies on.
    """

    def __init__(self, dataset: SequenceDataset, batch_size: int | None = 1, **kwargs) -> None:
        if not isinstance(dataset, SequenceDataset):
            raise ConfigError(f"SequenceLoader reads a pipelines.training.SequenceDataset, not "
                              f"{type(dataset).__name__}.")
        if kwargs.get("drop_last"):
            raise ConfigError(
                "SequenceLoader does not drop the last batch: that would skip samples at every "
                "epoch's end.", hint="For the same number of steps on every rank, read "
                "without epoch ends (Order(epochs=None)) and train for a number of steps.")
        if kwargs.get("in_order") is False:
            raise ConfigError("SequenceLoader keeps batches in order (in_order=True): the "
                              "reader state relies on it.")
        if batch_size is not None:
            kwargs.setdefault("collate_fn", collate)
        context = kwargs.get("multiprocessing_context")
        if isinstance(context, str):
            context = multiprocessing.get_context(context)
        dataset._bind_loader(batch_size or 1, context or multiprocessing)
        super().__init__(dataset, batch_size=batch_size, **kwargs)

    def __iter__(self):
        dataset: SequenceDataset = self.dataset
        if self.num_workers == 0:  # the dataset's own generator counts what it yields
            yield from super().__iter__()
            return
        span = dataset._begin()
        dataset._publish(span)
        share = span[2]
        block = self.batch_size or 1
        for batches, batch in enumerate(super().__iter__(), start=1):
            consumed = batches * block
            dataset._rank_consumed = consumed if share is None else min(consumed, share)
            yield batch
        dataset._finish()

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
