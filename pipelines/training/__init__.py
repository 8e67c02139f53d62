"""Reading tokenyard datasets for training: packed windows, exact resume, any layout.

``SequenceDataset(uri, seq_len, seed=..., rank=..., world_size=...)`` opens a committed
dataset (its ``manifest.json``), a nightly catalog, a list of either (one stream) or a
mapping of them to weights (a mixture), and iterates one epoch of this rank's samples:
numpy arrays of ``seq_len + 1`` token ids, documents packed across boundaries as
Megatron's ``GPTDataset`` packs them. Its ``state_dict()`` is the global position the
training loop consumed, so ``load_state_dict()`` resumes exactly, with any number of
ranks and dataloader workers. Remote shards go through a node-shared, bounded disk
cache with prefetch driven by the known order.

The core is numpy only. With PyTorch installed, ``SequenceDataset`` is the subclass in
:mod:`pipelines.training.pytorch`, a ``torch.utils.data.IterableDataset`` that splits
the rank's share across dataloader workers; use it with
:class:`~pipelines.training.pytorch.SequenceLoader`. Importing this package never
imports torch; the first use of ``SequenceDataset`` does, when it is installed
(``pip install 'tokenyard[training]'``).

Modules: ``sources`` (manifests, catalogs), ``tokenizer`` (the model's tokenizer
check), ``windows`` (samples as windows; the GPTDataset relation), ``order``
(shuffle), ``mixture`` (weights), ``state`` (the resume state), ``shards`` (reading
tokens), ``cache`` and ``prefetch`` (object storage), ``boundaries`` (position ids,
``cu_seqlens``), ``dataset`` (the numpy core), ``pytorch`` (the torch wrapper).
"""

from __future__ import annotations

import importlib.util

from pipelines.training.cache import CacheSettings
from pipelines.training.dataset import Order, SampleLocation, SourceUsage
from pipelines.training.tokenizer import TokenizerSpec

__all__ = ["SequenceDataset", "SequenceLoader", "CacheSettings", "Order", "SampleLocation",
           "SourceUsage", "TokenizerSpec", "torch_available"]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def __getattr__(name: str):
    if name == "SequenceDataset":
        if torch_available():
            from pipelines.training.pytorch import SequenceDataset
        else:
            from pipelines.training.dataset import SequenceDataset
        return SequenceDataset
    if name == "SequenceLoader":
        from pipelines.training.pytorch import SequenceLoader

        return SequenceLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
