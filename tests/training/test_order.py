"""The global order: exactly once per epoch in any rank x worker layout, deterministic by
seed and epoch, shuffled, and local to a few shards at a time."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipelines.training.dataset import Order, SequenceDataset
from tests.training.helpers import SEQ_LEN, delivered

SEED = 5
BATCH = 4
#: torch warns when a loader has more workers than the machine has cores
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def read_rank(uri: str, rank: int, ranks: int, workers: int) -> list[np.ndarray]:
    """One epoch of one rank: through a real DataLoader with ``workers`` worker
    processes, or read in this process for ``workers`` = 0."""
    if workers == 0:
        return list(SequenceDataset(uri, SEQ_LEN, seed=SEED, rank=rank, world_size=ranks))
    pytest.importorskip("torch")
    from pipelines.training.pytorch import SequenceDataset as TorchSequenceDataset
    from pipelines.training.pytorch import SequenceLoader

    ds = TorchSequenceDataset(uri, SEQ_LEN, seed=SEED, rank=rank, world_size=ranks)
    loader = SequenceLoader(ds, batch_size=BATCH, num_workers=workers)
    return [row for batch in loader for row in batch.numpy()]


@pytest.mark.parametrize("ranks,workers", [(1, 0), (1, 1), (2, 2), (4, 1), (1, 3)])
def test_every_window_exactly_once_in_the_global_order(dataset_a, ranks, workers):
    expected = dataset_a.windows()
    order = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    per_rank = [read_rank(dataset_a.uri, r, ranks, workers) for r in range(ranks)]
    everything = [x for got in per_rank for x in got]
    assert delivered(everything) == Counter(expected)
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1
    for r, got in enumerate(per_rank):   # rank r takes positions r, r + world, ...
        mine = order[r::ranks]
        assert len(got) == len(mine) and all(np.array_equal(a, b) for a, b in zip(got, mine))


def test_order_is_a_function_of_seed_and_epoch(dataset_a):
    first = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=1)
    e0, e1 = list(first), list(first)           # two epochs of one reader
    again = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=1))
    other = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=2))
    plain = list(SequenceDataset(dataset_a.uri, SEQ_LEN, order=Order(shuffle=False)))
    assert delivered(e0) == delivered(e1) == delivered(other) == Counter(dataset_a.windows())
    assert all(np.array_equal(a, b) for a, b in zip(e0, again))
    for a, b in ((e0, e1), (e0, other), (e0, plain)):
        same = sum(np.array_equal(x, y) for x, y in zip(a, b))
        assert same < len(a) // 10
    assert first.state_dict()["epoch"] == 2


def test_each_shuffle_window_reads_few_shards(dataset_a):
    shards = len(dataset_a.manifest["shards"])
    window = 40
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=9, order=Order(window_samples=window))
    n = ds.samples_per_epoch
    touched = []
    for lo in range(0, n, window):
        files = {f for p in range(lo, min(n, lo + window)) for f in ds.locate(p).files}
        touched.append(len(files))
    assert max(touched) <= 3 < shards        # a chunk sits within consecutive blocks
    first_windows = [ds.locate(p).window for p in range(window)]
    assert sorted(first_windows) != first_windows   # shuffled inside the chunk
    assert sorted(ds.locate(p).window for p in range(n)) == list(range(n))
