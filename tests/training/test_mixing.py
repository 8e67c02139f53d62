"""Mixtures by weight and catalogs: proportions, determinism, exact token accounting,
each source's epochs exactly once, and what is refused."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pipelines.errors import ConfigError, DatasetError
from pipelines.training.dataset import Order, SequenceDataset
from tests.training.helpers import SEQ_LEN, delivered


def source_of(item: np.ndarray, a: set, b: set) -> str:
    key = item.tobytes()
    assert (key in a) != (key in b)
    return "a" if key in a else "b"


def test_weights_are_delivered_exactly_and_accounted(dataset_a, dataset_b):
    a, b = set(dataset_a.windows()), set(dataset_b.windows())
    weights = {dataset_a.uri: 3.0, dataset_b.uri: 1.0}
    ds = SequenceDataset(weights, SEQ_LEN, seed=4, order=Order(samples_per_epoch=10_000))
    items = list(ds)
    sources = [source_of(x, a, b) for x in items]
    chunk = ds._mixture.plan.chunk_samples
    whole = 2 * chunk
    assert Counter(sources[:whole])["a"] == 2 * ds._mixture.plan.counts[0]
    assert abs(ds._mixture.plan.realized[0] - 0.75) < 1 / chunk
    for n in (300, 1000, 5000, 10_000):   # every prefix is close to the weights
        assert abs(Counter(sources[:n])["a"] / n - 0.75) < 0.05, n
    # usage() is exact at any consumed position
    probe = SequenceDataset(weights, SEQ_LEN, seed=4, order=Order(samples_per_epoch=10_000))
    it = iter(probe)
    for _ in range(1234):
        next(it)
    usage = {u.source: u for u in probe.usage()}
    counted = Counter(sources[:1234])
    assert usage[dataset_a.uri].samples == counted["a"]
    assert usage[dataset_b.uri].samples == counted["b"]
    assert usage[dataset_a.uri].tokens == counted["a"] * SEQ_LEN
    windows_b = len(dataset_b.windows())
    assert usage[dataset_b.uri].epochs == pytest.approx(counted["b"] / windows_b)
    # within each of its own epochs, a source gives every window once
    of_b = [x for x, s in zip(items, sources) if s == "b"]
    assert len(of_b) > 2 * windows_b
    for e in range(2):
        assert delivered(of_b[e * windows_b:(e + 1) * windows_b]) == Counter(dataset_b.windows())


def test_mixtures_are_deterministic_and_resume_exactly(dataset_a, dataset_b):
    weights = {dataset_a.uri: 1.0, dataset_b.uri: 2.0}
    first = list(SequenceDataset(weights, SEQ_LEN, seed=8))
    again = list(SequenceDataset(weights, SEQ_LEN, seed=8))
    other = list(SequenceDataset(weights, SEQ_LEN, seed=9))
    assert len(first) == len(dataset_a.windows()) + len(dataset_b.windows())
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert sum(np.array_equal(x, y) for x, y in zip(first, other)) < len(first) // 10
    reader = SequenceDataset(weights, SEQ_LEN, seed=8)
    it = iter(reader)
    for _ in range(777):
        next(it)
    state = reader.state_dict()
    rest = []
    for rank in range(3):
        ds = SequenceDataset(weights, SEQ_LEN, seed=8, rank=rank, world_size=3)
        ds.load_state_dict(state)
        rest.append(list(ds))
    merged = [x for j in range(len(rest[0])) for r in range(3) if j < len(rest[r])
              for x in [rest[r][j]]]
    assert all(np.array_equal(x, y) for x, y in zip(merged, first[777:]))
    assert len(merged) == len(first) - 777
    changed = SequenceDataset({dataset_a.uri: 1.0, dataset_b.uri: 3.0}, SEQ_LEN, seed=8)
    with pytest.raises(ConfigError, match="mixture weights"):
        changed.load_state_dict(state)


def test_catalog_versions_as_one_stream_a_list_or_a_mixture(catalog_root):
    root, built = catalog_root
    names = sorted(built)
    stream = np.concatenate([built[v].stream for v in names])
    everything = SequenceDataset(str(root), SEQ_LEN, order=Order(shuffle=False))
    assert [s.label for s in everything.sources] == [str(root)]
    n = (len(stream) - 1) // SEQ_LEN
    got = list(everything)
    assert len(got) == n
    assert all(np.array_equal(x, stream[k * SEQ_LEN:(k + 1) * SEQ_LEN + 1])
               for k, x in enumerate(got))
    via_file = SequenceDataset(str(root / "catalog.json"), SEQ_LEN)
    assert via_file.fingerprint == everything.fingerprint
    one = SequenceDataset(str(root), SEQ_LEN, versions=[names[1]])
    assert one.fingerprint == built[names[1]].manifest["fingerprint"]
    assert delivered(one) == Counter(built[names[1]].windows())
    mixed = SequenceDataset(str(root), SEQ_LEN, versions={names[0]: 1, names[1]: 1})
    assert len(mixed.sources) == 2 and len(list(mixed)) == mixed.samples_per_epoch
    listed = SequenceDataset([built[v].uri for v in names], SEQ_LEN, order=Order(shuffle=False))
    assert all(np.array_equal(x, y) for x, y in zip(listed, got))
    with pytest.raises(ConfigError, match="no version 'v=2030-01-01'.*v=2026-11-20"):
        SequenceDataset(str(root), SEQ_LEN, versions=["v=2030-01-01"])


def test_a_catalog_entry_whose_data_changed_is_refused(catalog_root, tmp_path):
    root, built = catalog_root
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    catalog = json.loads((copy / "catalog.json").read_text())
    catalog["versions"][0]["fingerprint"] = "0" * 64
    (copy / "catalog.json").write_text(json.dumps(catalog))
    with pytest.raises(DatasetError, match="changed after it was published"):
        SequenceDataset(str(copy), SEQ_LEN)


def test_sources_of_different_tokenizers_or_bad_weights_are_refused(dataset_a, dataset_wide):
    with pytest.raises(ConfigError, match="two vocabularies"):
        SequenceDataset({dataset_a.uri: 1, dataset_wide.uri: 1}, SEQ_LEN)
    with pytest.raises(ConfigError, match="two vocabularies"):
        SequenceDataset([dataset_a.uri, dataset_wide.uri], SEQ_LEN)
    with pytest.raises(ConfigError, match="positive numbers"):
        SequenceDataset({dataset_a.uri: 1, dataset_a.uri + "/": 0}, SEQ_LEN)
    with pytest.raises(ConfigError, match="too small"):
        SequenceDataset({dataset_a.uri: 1, dataset_a.uri + "/": 1e-9}, SEQ_LEN)
    wide = list(SequenceDataset(dataset_wide.uri, SEQ_LEN, order=Order(shuffle=False)))
    assert dataset_wide.manifest["dtype"] == "int32"
    assert delivered(wide) == Counter(dataset_wide.windows())
