"""Datasets made by the real pipeline, once per session; the independent oracle and the
builders are in :mod:`tests.training.helpers`.

The oracle reads a committed dataset back with the pipeline's own shard readers
(:func:`pipelines.formats.iter_documents`), concatenates the documents, and cuts the
windows the reader promises: ``tokens[k*L : k*L + L + 1]``. Tests compare what the
reader delivers with it, never with the reader's own bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import catalog, layout, storage
from pipelines.testing.corpus import write_jsonl
from tests.training.helpers import Built, build


@pytest.fixture(scope="session")
def tok_path(tmp_path_factory, tokenizer_bytes) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_bytes(tokenizer_bytes)
    return path


@pytest.fixture(scope="session")
def raw_a(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw-a")
    write_jsonl(raw / "a.jsonl", 70_000, seed=11, id_prefix="a")
    write_jsonl(raw / "b.jsonl", 50_000, seed=12, id_prefix="b")
    return raw


@pytest.fixture(scope="session")
def dataset_a(tmp_path_factory, raw_a, tok_path) -> Built:
    """About 6 Megatron shards, ~50k tokens: ~750 windows of 64."""
    return build(tmp_path_factory.mktemp("ds") / "a", raw_a, tok_path)


@pytest.fixture(scope="session")
def dataset_b(tmp_path_factory, tok_path) -> Built:
    """Other documents, same tokenizer: the second source of a mixture."""
    raw = tmp_path_factory.mktemp("raw-b")
    write_jsonl(raw / "c.jsonl", 40_000, seed=21, id_prefix="c")
    return build(tmp_path_factory.mktemp("ds") / "b", raw, tok_path)


@pytest.fixture(scope="session")
def parquet_a(tmp_path_factory, raw_a, tok_path) -> Built:
    return build(tmp_path_factory.mktemp("ds") / "a-parquet", raw_a, tok_path, fmt="parquet")


@pytest.fixture(scope="session")
def catalog_root(tmp_path_factory, tok_path) -> tuple[Path, dict[str, Built]]:
    """A nightly-style root with two versions and its catalog.json."""
    root = tmp_path_factory.mktemp("nightly")
    built = {}
    for i, version in enumerate(["v=2026-11-20", "v=2026-11-21"]):
        raw = tmp_path_factory.mktemp(f"raw-n{i}")
        write_jsonl(raw / "n.jsonl", 30_000, seed=40 + i, id_prefix=f"n{i}")
        built[version] = build(root / version, raw, tok_path)
        manifest = layout.read_manifest(built[version].uri, storage.StorageOptions())
        catalog.add_version(str(root), catalog.entry_of(version, version[2:], manifest, 1),
                            manifest, storage.StorageOptions())
    return root, built


@pytest.fixture(scope="session")
def dataset_wide(tmp_path_factory) -> Built:
    """A dataset made with another tokenizer: 70,000 entries, so int32 shards."""
    from pipelines.testing.corpus import wide_tokenizer_json

    tok = tmp_path_factory.mktemp("tok-wide") / "tokenizer.json"
    tok.write_bytes(wide_tokenizer_json())
    raw = tmp_path_factory.mktemp("raw-wide")
    write_jsonl(raw / "w.jsonl", 20_000, seed=31, id_prefix="w")
    return build(tmp_path_factory.mktemp("ds") / "wide", raw, tok)


