"""Samples are the windows the docs promise: GPTDataset's, packed across documents
and shards, the last partial one dropped; boundaries match the documents."""

from __future__ import annotations

import numpy as np

from pipelines.training.dataset import Order, SequenceDataset
from pipelines.training.windows import WindowGrid
from tests.training.helpers import SEQ_LEN


def megatron_samples(sizes: np.ndarray, documents: list[np.ndarray], seq_len: int):
    """Megatron-LM GPTDataset's samples for one epoch over documents in this order
    (document index = identity), following its sample-index algorithm: sample ``i``
    starts at (document, offset) ``idx[i]`` and ends at ``idx[i + 1]`` plus one token."""
    num_samples = (int(sizes.sum()) - 1) // seq_len
    idx = [(0, 0)]
    doc, offset = 0, 0
    for _ in range(num_samples):
        remaining = seq_len + 1
        while remaining:
            length = int(sizes[doc]) - offset
            remaining -= length
            if remaining <= 0:
                offset += remaining + length - 1
                remaining = 0
            else:
                doc, offset = doc + 1, 0
        idx.append((doc, offset))
    samples = []
    for (d0, o0), (d1, o1) in zip(idx, idx[1:]):
        if d0 == d1:
            samples.append(documents[d0][o0:o1 + 1])
        else:
            parts = [documents[d0][o0:]] + documents[d0 + 1:d1] + [documents[d1][:o1 + 1]]
            samples.append(np.concatenate(parts))
    return [s.astype(np.int64) for s in samples]


def test_unshuffled_samples_are_gptdatasets(dataset_a):
    docs = dataset_a.documents
    sizes = np.array([len(d) for d in docs])
    for seq_len in (SEQ_LEN, 37, 500):
        expected = megatron_samples(sizes, docs, seq_len)
        ds = SequenceDataset(dataset_a.uri, seq_len, order=Order(shuffle=False))
        got = list(ds)
        assert len(got) == len(expected) == (sizes.sum() - 1) // seq_len
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
        assert all(len(s) == seq_len + 1 for s in got)
        # consecutive samples share their boundary token
        assert all(a[-1] == b[0] for a, b in zip(got, got[1:]))


def test_windows_run_across_shards_and_only_the_last_partial_is_dropped(dataset_a):
    manifest = dataset_a.manifest
    counts = [s["tokens"] for s in manifest["shards"]]
    assert len(counts) >= 4
    grid = WindowGrid.of(counts, SEQ_LEN)
    total = sum(counts)
    assert grid.windows == (total - 1) // SEQ_LEN
    assert grid.dropped_tokens == (total - 1) % SEQ_LEN < SEQ_LEN
    crossing = [k for k in range(grid.windows) if len(grid.shards_of(np.array([k]))) > 1]
    assert len(crossing) >= len(counts) - 2   # about one window per shard boundary
    ds = SequenceDataset(dataset_a.uri, SEQ_LEN, order=Order(shuffle=False))
    stream = dataset_a.stream
    for k in crossing:
        assert np.array_equal(ds.sample_at(k), stream[k * SEQ_LEN:(k + 1) * SEQ_LEN + 1])
    blocks = grid.block_starts()
    assert blocks[0] == 0 and blocks[-1] == grid.windows and np.all(np.diff(blocks) >= 0)


def test_boundaries_match_the_documents(dataset_a, parquet_a):
    starts = np.cumsum([0] + [len(d) for d in dataset_a.documents])
    for built in (dataset_a, parquet_a):
        ds = SequenceDataset(built.uri, SEQ_LEN, order=Order(shuffle=False), boundaries=True)
        pieces = 0
        for k, item in enumerate(ds):
            lo = k * SEQ_LEN
            inside = starts[(starts > lo) & (starts < lo + SEQ_LEN)] - lo
            assert item["cu_seqlens"].tolist() == [0, *inside.tolist(), SEQ_LEN]
            assert item["cu_seqlens"].dtype == np.int32
            pos = item["position_ids"]
            assert len(pos) == SEQ_LEN and pos[0] == 0
            for a, b in zip(item["cu_seqlens"][:-1], item["cu_seqlens"][1:]):
                assert pos[a:b].tolist() == list(range(b - a))
            pieces += len(item["cu_seqlens"]) - 1
        assert pieces > len(ds) + 20   # windows that hold document boundaries


def test_parquet_shards_read_the_same_windows(dataset_a, parquet_a):
    a = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=3))
    b = list(SequenceDataset(parquet_a.uri, SEQ_LEN, seed=3))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
