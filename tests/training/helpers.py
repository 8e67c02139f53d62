"""Plain helpers of the training-reader tests: datasets made by the real pipeline and
the oracle that cuts the windows the reader promises."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.config import parse_job
from pipelines.formats import iter_documents
from pipelines.run import run_job
from tests.helpers import make_job

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


def delivered(items) -> Counter:
    """A multiset of delivered windows, as bytes of their int64 tokens."""
    return Counter(np.asarray(x, dtype=np.int64).tobytes() for x in items)


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
