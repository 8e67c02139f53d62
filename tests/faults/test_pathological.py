"""Pathological input: bounded memory, no crash (time is measured in benchmarks/).

CI-sized versions of ``benchmarks/pathological.py``: one huge plain-text document, one
huge JSONL record, a million-line file of tiny documents, and a file split into many
units. Each runs ``tokenyard run`` (engine local) as a user would, while the peak RSS of
its worker process is sampled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.testing.corpus import documents, write_jsonl
from pipelines.testing.measure import PeakRSS
from tests.helpers import REPO

DOC_MB = 20
#: a worker process with everything imported and both tokenizer backends loaded (HF for
#: the identity checks), with fastokens' word cache filled: it stops growing at a bound
WORKER_BASE_MB = 320


def run_measured(tmp_path: Path, inp: Path, tokenizer: Path, workers: int = 1) -> tuple[dict, float]:
    out = tmp_path / "out"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "name": "patho", "input": {"uri": str(inp)}, "tokenizer": {"path": str(tokenizer)},
        "output": {"uri": str(out)}, "plan": {"target_unit_bytes": "16MiB"},
        "engine": {"kind": "local", "workers": workers}}))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(job)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(proc.pid) as rss:
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return json.loads((out / "manifest.json").read_text()), rss.worker_peak_mb()


@pytest.fixture(scope="module")
def huge_text() -> str:
    return "\n\n".join(documents(DOC_MB * 10**6, seed=5))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "jsonl"])
def test_one_huge_document(tmp_path, tokenizer_file, huge_text, kind):
    raw = tmp_path / "raw"
    raw.mkdir()
    if kind == "text":
        (raw / "doc.txt").write_text(huge_text, encoding="utf-8")
    else:
        (raw / "doc.jsonl").write_text(json.dumps({"text": huge_text}) + "\n")
    manifest, peak_mb = run_measured(tmp_path, raw, tokenizer_file)
    assert manifest["totals"]["documents"] == 1
    assert manifest["totals"]["tokens"] > DOC_MB * 10**6 / 8
    # one copy of the text, its tokens and a bounded tokenizer call: a few times the
    # document, never the tokenizer's per-token objects for all of it (gigabytes)
    assert peak_mb < WORKER_BASE_MB + 6 * DOC_MB, peak_mb


def test_a_million_tiny_documents(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    n = 1_000_000
    with open(raw / "tiny.jsonl", "w") as f:
        f.writelines(f'{{"text": "doc {i} says hi"}}\n' for i in range(n))
    manifest, peak_mb = run_measured(tmp_path, raw, tokenizer_file)
    assert manifest["totals"]["documents"] == n and manifest["reconciliation"]["balanced"]
    assert peak_mb < WORKER_BASE_MB, peak_mb


def test_memory_does_not_grow_with_file_size(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    write_jsonl(raw / "big.jsonl", 80 * 10**6, seed=3)
    manifest, peak_mb = run_measured(tmp_path, raw, tokenizer_file, workers=2)
    assert len(manifest["shards"]) >= 5  # the file was split into units
    assert peak_mb < WORKER_BASE_MB, peak_mb
