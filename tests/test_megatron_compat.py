"""Megatron-LM's own IndexedDataset reads the shards (where megatron-core is installed).

megatron-core needs PyTorch, which the test extra does not pull in; install both
(``pip install torch megatron-core``) to run this check.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.config import parse_job
from pipelines.formats.megatron import MegatronReader
from pipelines.run import run_job
from pipelines.testing.corpus import write_jsonl
from tests.helpers import make_job


def test_megatron_indexed_dataset_reads_every_document(tmp_path, tokenizer_file):
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset",
                                  reason="megatron-core (and torch) are not installed")
    write_jsonl(tmp_path / "raw" / "a.jsonl", 200_000, seed=11)
    out = tmp_path / "out"
    run_job(parse_job(make_job(str(tmp_path / "raw"), str(tokenizer_file), str(out))))
    manifest = json.loads((out / "manifest.json").read_text())
    for shard in manifest["shards"]:
        base = str(out / shard["files"][0]["path"][: -len(".bin")])
        theirs = indexed.IndexedDataset(base, mmap=True)
        ours = MegatronReader(base)
        assert len(theirs) == len(ours) == shard["documents"]
        assert theirs.document_indices.tolist() == list(range(len(ours) + 1))
        for i in range(len(ours)):
            assert np.array_equal(theirs[i], ours[i])
