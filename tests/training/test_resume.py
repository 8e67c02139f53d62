"""Exact resume: from every position of a short epoch, into the same or another layout,
the continuation is the rest of the global order; states of other data are refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.errors import ReaderStateError
from pipelines.training.dataset import Order, SequenceDataset

SEQ_LEN = 512   # a short epoch: some 30 windows
SEED = 7


def interleave(per_rank: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Ranks' samples back in global order (rank r holds positions r, r + world, ...)."""
    out = []
    for row in itertools.zip_longest(*per_rank):
        out += [x for x in row if x is not None]
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def resumed(uri: str, state: dict, world: int) -> list[np.ndarray]:
    per_rank = []
    for rank in range(world):
        ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, rank=rank, world_size=world)
        ds.load_state_dict(state)
        per_rank.append(list(ds))
    return interleave(per_rank)


def test_resume_at_every_position_continues_exactly_in_any_layout(dataset_b):
    reference = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED)
    order, next_epoch = list(reference), list(reference)
    n = len(order)
    assert 20 <= n <= 80
    for p in range(n + 1):
        reader = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED)
        for _ in itertools.islice(reader, p):   # the loop consumed p samples
            pass
        state = reader.state_dict()
        assert (state["epoch"], state["sample"]) == ((0, p) if p < n else (1, 0))
        if p == n:
            assert same(resumed(dataset_b.uri, state, 2), next_epoch)
            continue
        for world in (1, 2, 3):
            assert same(resumed(dataset_b.uri, state, world), order[p:]), (p, world)


def test_states_saved_by_any_layout_resume_into_any_other(dataset_b):
    order = list(SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED))
    for world_a, steps in ((2, 3), (3, 5), (4, 2)):
        datasets = []
        consumed = []
        for rank in range(world_a):   # every rank consumes `steps` samples (lockstep)
            ds = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED, rank=rank,
                                 world_size=world_a)
            it = iter(ds)
            consumed += [(rank, j, next(it)) for j in range(steps)]
            datasets.append(ds)
        states = [ds.state_dict() for ds in datasets]
        assert all(s == states[0] for s in states)   # every rank saves the same state
        assert states[0]["sample"] == world_a * steps
        head = interleave([[x for r, _, x in consumed if r == rank] for rank in range(world_a)])
        assert same(head, order[:world_a * steps])
        for world_b in (1, 2, 5):
            assert same(resumed(dataset_b.uri, states[0], world_b), order[world_a * steps:])


def test_the_end_of_an_epoch_is_the_start_of_the_next(dataset_b):
    """A rank that consumed its whole share reports the epoch's end, even when the
    shares differ by one."""
    n = SequenceDataset(dataset_b.uri, SEQ_LEN).samples_per_epoch
    world = next(w for w in (3, 6, 7, 9) if n % w)   # uneven shares
    for rank in range(world):
        ds = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED, rank=rank, world_size=world)
        share = len(ds)
        got = list(itertools.islice(ds, share))   # no StopIteration seen yet
        assert len(got) == share
        assert ds.state_dict()["epoch"] == 1 and ds.state_dict()["sample"] == 0


def test_endless_reading_crosses_epochs_in_lockstep(dataset_b):
    n = SequenceDataset(dataset_b.uri, SEQ_LEN).samples_per_epoch
    flat = list(SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED, order=Order(epochs=3)))
    assert len(flat) == 3 * n
    world = 3
    per_rank = []
    for rank in range(world):
        ds = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED, rank=rank, world_size=world,
                             order=Order(epochs=None))
        per_rank.append(list(itertools.islice(ds, n)))
        state = ds.state_dict()   # n samples on each of 3 ranks: 3 epochs
        assert (state["epoch"], state["sample"]) == (world, 0)
    assert same(interleave(per_rank), flat[:world * n])


def test_states_of_other_data_or_order_are_refused(dataset_a, dataset_b):
    state = SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED).state_dict()
    cases = {
        "fingerprint": SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED),
        "seed": SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED + 1),
        "seq_len": SequenceDataset(dataset_b.uri, SEQ_LEN // 2, seed=SEED),
        "order settings": SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED,
                                          order=Order(window_samples=8)),
    }
    for what, reader in cases.items():
        with pytest.raises(ReaderStateError) as info:
            reader.load_state_dict(state)
        message = str(info.value)
        assert what in message and "refused" in message, message
        assert info.value.exit_code == 2
    with pytest.raises(ReaderStateError, match="not a tokenyard reader state"):
        cases["seed"].load_state_dict({"epoch": 1})
    broken = dict(state, sample="many")
    with pytest.raises(ReaderStateError, match="lacks or mangles"):
        SequenceDataset(dataset_b.uri, SEQ_LEN, seed=SEED).load_state_dict(broken)
