"""``tokenyard verify``: a committed dataset passes; every kind of damage is reported."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipelines.config import parse_job
from pipelines.errors import DatasetError
from pipelines.formats.megatron import index_header
from pipelines.run import run_job
from pipelines.testing.corpus import write_jsonl
from pipelines.verify import check, verify


def _job(tmp_path, tokenizer_file, out: str, fmt: str = "megatron", **storage) -> dict:
    raw = tmp_path / "raw"
    if not raw.exists():
        write_jsonl(raw / "a.jsonl", 60_000, seed=1)
        write_jsonl(raw / "b.jsonl", 60_000, seed=2)
        (raw / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n{"other": 1}\n')
    job = {"name": "verify-job", "input": {"uri": str(raw)},
           "tokenizer": {"path": str(tokenizer_file)}, "output": {"uri": out, "format": fmt},
           "plan": {"target_unit_bytes": 40_000}, "on_error": "skip",
           "engine": {"kind": "local", "workers": 1}}
    if storage:
        job["storage"] = storage
    return job


@pytest.fixture(params=["megatron", "parquet"])
def dataset(request, tmp_path, tokenizer_file):
    out = tmp_path / "out"
    run_job(parse_job(_job(tmp_path, tokenizer_file, str(out), request.param)))
    return out, request.param


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", "verify", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_committed_dataset_verifies(dataset):
    out, _ = dataset
    report = check(str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert report.documents == manifest["totals"]["documents"]
    assert report.tokens == manifest["totals"]["tokens"]
    assert manifest["totals"]["rejected"] == 2
    proc = _cli(str(out))
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def _shard(out, fmt, suffix=None):
    pattern = "*.bin" if fmt == "megatron" and suffix is None else f"*.{suffix or 'parquet'}"
    return sorted((out / "shards").glob(pattern))[1]


def test_corrupt_deleted_and_truncated_shards_are_all_reported(dataset):
    out, fmt = dataset
    shards = sorted(p for p in (out / "shards").iterdir())
    corrupt, deleted, truncated = shards[0], shards[2], shards[-1]
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:-7])
    report = verify(str(out))
    text = "\n".join(report.problems)
    assert f"{corrupt.name}: sha256" in text
    assert f"{deleted.name}: missing" in text
    assert f"{truncated.name}: " in text and "bytes, the manifest says" in text
    with pytest.raises(DatasetError):
        check(str(out))
    proc = _cli(str(out))
    assert proc.returncode == 1
    for name in (corrupt.name, deleted.name, truncated.name):
        assert name in proc.stderr


def test_megatron_index_inconsistent_with_its_bin(tmp_path, tokenizer_file):
    out = tmp_path / "out"
    run_job(parse_job(_job(tmp_path, tokenizer_file, str(out))))
    manifest = json.loads((out / "manifest.json").read_text())
    shard = manifest["shards"][0]
    idx_meta = next(f for f in shard["files"] if f["path"].endswith(".idx"))
    idx = out / idx_meta["path"]
    raw = bytearray(idx.read_bytes())
    n = shard["documents"]
    # a length off by one: pointers and the .bin size no longer agree with it
    lengths = np.frombuffer(bytes(raw[34:34 + 4 * n]), "<i4").copy()
    lengths[0] += 1
    raw[34:34 + 4 * n] = lengths.tobytes()
    idx.write_bytes(bytes(raw))
    # keep the manifest's checksums in step, so only the structure is wrong
    import hashlib
    idx_meta["size"], idx_meta["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = "\n".join(verify(str(out)).problems)
    assert "pointer 1 is" in problems
    assert "lengths sum to" in problems
    assert index_header(np.uint16, n) == bytes(raw[:34])


def test_tokens_outside_the_vocabulary_and_bad_counts(tmp_path, tokenizer_file):
    out = tmp_path / "out"
    run_job(parse_job(_job(tmp_path, tokenizer_file, str(out))))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["tokenizer"]["vocab_size"] = 100
    manifest["totals"]["records"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = "\n".join(verify(str(out)).problems)
    assert "outside the vocabulary (size 100)" in problems
    assert "reconciliation: records in" in problems


def test_rejects_file_must_match(tmp_path, tokenizer_file):
    out = tmp_path / "out"
    run_job(parse_job(_job(tmp_path, tokenizer_file, str(out))))
    rejects = next((out / "rejects").iterdir())
    rejects.write_text(rejects.read_text().splitlines()[0] + "\n")
    problems = "\n".join(verify(str(out)).problems)
    assert f"{rejects.name}: " in problems


def test_no_manifest_is_a_problem(tmp_path):
    report = verify(str(tmp_path / "nothing"))
    assert not report.ok and "manifest.json is missing" in report.problems[0]
    assert _cli(str(tmp_path / "nothing")).returncode == 1


def test_on_s3_damage_is_reported(tmp_path, tokenizer_file, s3):
    out = s3.bucket("out") + "/ds"
    run_job(parse_job(_job(tmp_path, tokenizer_file, out)))
    assert verify(out).ok
    names = sorted(n for n in s3.listing(out) if n.startswith("shards/"))
    s3.fs.rm(f"{out}/{names[0]}")
    s3.put(f"{out}/{names[1]}", s3.fs.cat_file(f"{out}/{names[1]}")[:-5])
    data = bytearray(s3.fs.cat_file(f"{out}/{names[2]}"))
    data[0] ^= 1
    s3.put(f"{out}/{names[2]}", bytes(data))
    problems = "\n".join(verify(out).problems)
    assert f"{names[0]}: missing" in problems
    assert f"{names[1]}: " in problems
    assert f"{names[2]}: sha256" in problems
    proc = _cli(out, "--endpoint-url", s3.endpoint)
    assert proc.returncode == 1 and names[0] in proc.stderr
