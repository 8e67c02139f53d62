"""Datasets made by the real pipeline, once per session, and an independent oracle.

The oracle reads a committed dataset back with the pipeline's own shard readers
(:func:`pipelines.formats.iter_documents`), concatenates the documents, and cuts the
windows the reader promises: ``tokens[k*L : k*L + L + 1]``. Tests compare what the
reader delivers with it, never with the reader's own bookkeeping.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipelines import catalog, layout, storage
from pipelines.config import parse_job
from pipelines.formats import iter_documents
from pipelines.run import run_job
from pipelines.testing.corpus import write_jsonl
from tests.conftest import make_job

SEQ_LEN = 64


@dataclass
class Built:
    """A committed dataset and what it holds."""

    root: Path
    documents: list[np.ndarray]

    @property
    def uri(self) -> str:
        return str(self.root)

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    @property
    def stream(self) -> np.ndarray:
        return np.concatenate(self.documents).astype(np.int64)

    def windows(self, seq_len: int = SEQ_LEN) -> list[bytes]:
        """Window k's tokens (as int64 bytes), k = 0 .. (T - 1) // L - 1."""
        stream = self.stream
        n = (len(stream) - 1) // seq_len
        return [stream[k * seq_len:k * seq_len + seq_len + 1].tobytes() for k in range(n)]


def build(root: Path, raw: Path, tokenizer: Path, *, fmt: str = "megatron",
          target: int = 24_000) -> Built:
    job = make_job(str(raw), str(tokenizer), str(root),
                   **{"output.format": fmt, "plan.target_unit_bytes": target,
                      "engine.workers": 1, "name": "training-test"})
    run_job(parse_job(job))
    return Built(root, [np.asarray(d) for d in iter_documents(str(root))])


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


def delivered(items) -> Counter:
    """A multiset of delivered windows, as bytes of their int64 tokens."""
    return Counter(np.asarray(x, dtype=np.int64).tobytes() for x in items)


@pytest.fixture(scope="session")
def dataset_wide(tmp_path_factory) -> Built:
    """A dataset made with another tokenizer: 70,000 entries, so int32 shards."""
    from pipelines.testing.corpus import wide_tokenizer_json

    tok = tmp_path_factory.mktemp("tok-wide") / "tokenizer.json"
    tok.write_bytes(wide_tokenizer_json())
    raw = tmp_path_factory.mktemp("raw-wide")
    write_jsonl(raw / "w.jsonl", 20_000, seed=31, id_prefix="w")
    return build(tmp_path_factory.mktemp("ds") / "wide", raw, tok)


def upload(s3, built: Built, prefix: str) -> str:
    """Copy a committed dataset (manifest and shards) to ``s3://prefix``."""
    bucket = prefix.split("/")[0]
    if not s3.fs.exists(bucket):
        s3.bucket(bucket)
    for path in sorted(built.root.rglob("*")):
        rel = str(path.relative_to(built.root))
        if path.is_file() and not rel.startswith(("_runs", "_units", "_plan")):
            s3.put(f"s3://{prefix}/{rel}", path.read_bytes())
    return f"s3://{prefix}"
