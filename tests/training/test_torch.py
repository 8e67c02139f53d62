"""PyTorch: a DataLoader with worker processes (persistent or not, fork or spawn) delivers
the global order, its state is what the loop received, and resumes exactly."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from tests.helpers import REPO
from tests.training.helpers import SEQ_LEN, delivered

torch = pytest.importorskip("torch")

from pipelines.errors import ConfigError  # noqa: E402
from pipelines.training import SequenceDataset, SequenceLoader  # noqa: E402
from pipelines.training.dataset import Order  # noqa: E402
from pipelines.training.dataset import SequenceDataset as CoreDataset  # noqa: E402

SEED = 13
BATCH = 8


def rows(batches) -> list[np.ndarray]:
    return [row for batch in batches for row in batch.numpy()]


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_package_entry_is_a_torch_iterable_dataset(dataset_a):
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN)
    assert isinstance(ds, torch.utils.data.IterableDataset)
    assert isinstance(ds, CoreDataset)


def test_persistent_workers_deliver_each_epoch_once_in_the_global_order(dataset_a):
    reference = CoreDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    epochs = [list(reference), list(reference)]
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    loader = SequenceLoader(ds, batch_size=BATCH, num_workers=2, persistent_workers=True)
    assert len(loader) == -(-ds.samples_per_epoch // BATCH)
    for epoch, expected in enumerate(epochs):
        got = rows(loader)
        assert delivered(got) == Counter(dataset_a.windows())
        assert same(got, expected)
        assert ds.state_dict()["epoch"] == epoch + 1 and ds.state_dict()["sample"] == 0


def test_state_is_what_the_loop_received_not_what_workers_prefetched(dataset_a):
    order = list(CoreDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    loader = SequenceLoader(ds, batch_size=BATCH, num_workers=2, persistent_workers=True,
                            prefetch_factor=4)
    got = []
    for step, batch in enumerate(loader, start=1):
        got += list(batch.numpy())
        assert ds.state_dict()["sample"] == step * BATCH   # workers are 8 batches ahead
        if step == 5:
            break
    state = ds.state_dict()
    got += rows(loader)   # the same persistent loader continues where the loop stopped
    assert same(got, order)
    # a fresh reader on 2 ranks x 2 workers continues exactly from the saved state
    rest = []
    for rank in range(2):
        other = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED, rank=rank, world_size=2)
        other.load_state_dict(state)
        rest.append(rows(SequenceLoader(other, batch_size=3, num_workers=2)))
    merged = [x for pair in itertools.zip_longest(*rest) for x in pair if x is not None]
    assert same(merged, order[5 * BATCH:])


def test_two_ranks_save_resume_on_one_rank_with_other_workers(dataset_a):
    order = list(CoreDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    ranks = [SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED, rank=r, world_size=2)
             for r in range(2)]
    loaders = [iter(SequenceLoader(ds, batch_size=BATCH, num_workers=2)) for ds in ranks]
    head = []
    for _ in range(7):   # seven synchronous steps
        batches = [next(it).numpy() for it in loaders]
        for pair in zip(*batches):
            head += list(pair)
    states = [ds.state_dict() for ds in ranks]
    assert states[0] == states[1] and states[0]["sample"] == 7 * BATCH * 2
    for it in loaders:
        it.close()
    resumed = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    resumed.load_state_dict(states[0])
    tail = rows(SequenceLoader(resumed, batch_size=5, num_workers=1))
    assert same(head + tail, order)


def test_spawned_workers_and_boundaries(dataset_a):
    order = list(CoreDataset(dataset_a.uri, SEQ_LEN, seed=SEED, boundaries=True))
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED, boundaries=True)
    loader = SequenceLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn",
                            persistent_workers=True)
    batch = next(iter(loader))
    assert batch["tokens"].shape == (4, SEQ_LEN + 1) and batch["tokens"].dtype == torch.int64
    assert batch["position_ids"].shape == (4, SEQ_LEN)
    cu = batch["cu_seqlens"]
    expected = [0]
    for i, item in enumerate(order[:4]):
        expected += (item["cu_seqlens"][1:] + i * SEQ_LEN).tolist()
    assert cu.dtype == torch.int32 and cu.tolist() == expected
    assert batch["max_seqlen"] == max(int(np.diff(x["cu_seqlens"]).max()) for x in order[:4])
    assert ds.state_dict()["sample"] == 4


def test_a_plain_dataloader_with_workers_is_refused_clearly(dataset_a):
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1)
    with pytest.raises(ConfigError, match="not through SequenceLoader") as info:
        next(iter(loader))
    assert "SequenceLoader(dataset" in str(info.value)


def test_a_plain_dataloader_without_workers_counts_what_it_yields(dataset_a):
    order = list(CoreDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    loader = torch.utils.data.DataLoader(ds, batch_size=6)
    it = iter(loader)
    for _ in range(3):
        next(it)
    assert ds.state_dict()["sample"] == 18
    again = SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED)
    again.load_state_dict(ds.state_dict())
    assert same(list(again), order[18:])


def test_loader_refuses_what_would_break_the_order(dataset_a):
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN)
    with pytest.raises(ConfigError, match="last batch"):
        SequenceLoader(ds, batch_size=4, drop_last=True)
    with pytest.raises(ConfigError, match="in_order"):
        SequenceLoader(ds, batch_size=4, num_workers=1, in_order=False)
    endless = SequenceDataset(dataset_a.uri, SEQ_LEN, order=Order(epochs=None))
    with pytest.raises(TypeError, match="no length"):
        len(endless)


def test_import_without_torch_and_package_import_stays_light():
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked")
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name == "torch" else f(name, *a))(
    importlib.util.find_spec)
import pipelines, pipelines.training
from pipelines.training import SequenceDataset
from pipelines.training.dataset import SequenceDataset as Core
assert SequenceDataset is Core, SequenceDataset
assert "torch" not in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    light = subprocess.run([sys.executable, "-c", "import sys, pipelines, pipelines.training; "
                            "print('torch' in sys.modules)"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert light.stdout.strip() == "False", light.stderr
