"""Plain helpers of the fault campaign: its job defaults, a corpus with its reference run, a
census of documents, and the verify check."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from pipelines.config import parse_job
from pipelines.formats import iter_documents
from pipelines.run import run_job
from pipelines.storage import StorageOptions
from pipelines.testing.corpus import write_jsonl
from pipelines.verify import verify
from tests.helpers import local_tree
from tests.helpers import make_job as base_job

__all__ = ["census", "make_job", "local_tree", "assert_verifies", "Corpus"]


def make_job(inp: str, tok: str, out: str, *, kind: str = "local", workers: int = 2,
             target: int = 48_000, **extra) -> dict:
    """The test kit's job with the campaign's defaults: small units, patient retries, and
    the hf backend, whose units last long enough (tenths of a second) for kills and
    retirements to land inside them; fastokens finishes them in milliseconds."""
    return base_job(inp, tok, out, **{"name": "fault-job", "engine.kind": kind,
                                      "engine.workers": workers,
                                      "plan.target_unit_bytes": target,
                                      "engine.max_attempts": 8,
                                      "tokenizer.backend": "hf", **extra})


def census(output_uri: str, storage_options: StorageOptions | None = None) -> Counter:
    """How many times each distinct document (its token sequence) is in a dataset."""
    return Counter(hashlib.sha256(doc.tobytes()).hexdigest()
                   for doc in iter_documents(output_uri, storage_options))


def lost_and_duplicated(reference: Counter, found: Counter) -> tuple[int, int]:
    lost = sum((reference - found).values())
    duplicated = sum((found - reference).values())
    return lost, duplicated


def assert_verifies(output_uri: str, storage_options: StorageOptions | None = None) -> None:
    report = verify(output_uri, storage_options)
    assert report.ok, report.problems


class Corpus:
    """JSONL inputs and a tokenizer under a folder, and the reference output."""

    def __init__(self, root: Path, tokenizer_bytes: bytes, *, files: int, file_bytes: int,
                 target: int) -> None:
        self.root = root
        self.raw = root / "raw"
        self.tokenizer = root / "tokenizer.json"
        self.tokenizer.write_bytes(tokenizer_bytes)
        self.records = sum(write_jsonl(self.raw / f"part-{i:02d}.jsonl", file_bytes, seed=i,
                                       id_prefix=f"p{i}") for i in range(files))
        self.target = target
        self.reference = root / "reference"
        summary = run_job(parse_job(self.job(str(self.reference))))
        self.units = summary.units
        self.tree = local_tree(self.reference)
        self.census = census(str(self.reference))
        assert sum(self.census.values()) == summary.documents == self.records

    def job(self, out: str, **kw) -> dict:
        kw.setdefault("target", self.target)
        return make_job(str(self.raw), str(self.tokenizer), out, **kw)

    def manifest(self) -> dict:
        return json.loads(self.tree["manifest.json"])
