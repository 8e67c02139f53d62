"""Every kind of bad input, under on_error fail and skip: clear errors, nothing lost."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import parse_job
from pipelines.errors import (
    InputError,
    RunFailedError,
    StorageAccessError,
    StorageNotFoundError,
    TokenizerError,
)
from pipelines.run import run_job
from tests.helpers import REPO, write_jsonl
from tests.helpers import make_job

GOOD = [{"id": i, "text": f"good document number {i}."} for i in range(5)]


def bad_jsonl(tmp: Path, name: str, bad_line: str) -> Path:
    """A file of good records with one bad line, line 4."""
    lines = [json.dumps(r) for r in GOOD[:3]] + [bad_line] + [json.dumps(r) for r in GOOD[3:]]
    return write_jsonl(tmp / "raw" / name, lines)


CASES = {
    "not-json": ("a.jsonl", lambda t: bad_jsonl(t, "a.jsonl", "{this is not json"),
                 "line 4", "not valid JSON"),
    "no-text-field": ("a.jsonl", lambda t: bad_jsonl(t, "a.jsonl", '{"id": 9, "body": "x"}'),
                      "line 4", "no 'text' field"),
    "text-not-string": ("a.jsonl", lambda t: bad_jsonl(t, "a.jsonl", '{"id": 9, "text": 42}'),
                        "line 4", "not a string"),
    "surrogate": ("a.jsonl", lambda t: bad_jsonl(t, "a.jsonl", '{"id": 9, "text": "x\\ud800y"}'),
                  "line 4", "unpaired surrogate"),
}


def invalid_utf8(tmp: Path) -> Path:
    path = bad_jsonl(tmp, "a.jsonl", "PLACEHOLDER")
    path.write_bytes(path.read_bytes().replace(b"PLACEHOLDER", b'{"text": "caf\xe9"}'))
    return path


def empty_file(tmp: Path) -> Path:
    write_jsonl(tmp / "raw" / "a.jsonl", GOOD)
    (tmp / "raw" / "b.jsonl").write_bytes(b"")
    return tmp / "raw" / "b.jsonl"


def truncated_gzip(tmp: Path) -> Path:
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in GOOD * 200).encode(), mtime=0)
    path = tmp / "raw" / "a.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def parquet_without_column(tmp: Path) -> Path:
    write_jsonl(tmp / "raw" / "a.jsonl", GOOD)
    path = tmp / "raw" / "b.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "body": ["x", "y", "z"]}), path)
    return path


FILE_CASES = {
    "invalid-utf8": (invalid_utf8, "a.jsonl", "line 4", "invalid UTF-8", 1),
    "empty-file": (empty_file, "b.jsonl", "b.jsonl", "the file is empty", 1),
    "truncated-gzip": (truncated_gzip, "a.jsonl.gz", "line", "truncated or corrupt", 1),
    "parquet-no-column": (parquet_without_column, "b.parquet", "row 0", "no column 'text'", 3),
}


def run(tmp: Path, tokenizer_file: Path, on_error: str):
    job = parse_job(make_job(str(tmp / "raw"), str(tokenizer_file), str(tmp / "out"),
                             on_error=on_error, **{"engine.workers": 1}))
    return run_job(job)


def rejects_of(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "rejects").glob("*.jsonl"))
            for line in p.read_text().splitlines()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_fails_with_file_line_and_fix(tmp_path, tokenizer_file, case):
    name, make, where, what = CASES[case]
    make(tmp_path)
    with pytest.raises(RunFailedError) as err:
        run(tmp_path, tokenizer_file, "fail")
    first = err.value.first
    assert isinstance(first, InputError)
    message = str(err.value)
    assert f"{name}, {where}" in message and what in message
    assert "on_error: skip" in message and "--on-error skip" in message
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_is_rejected_with_reason_under_skip(tmp_path, tokenizer_file, case):
    name, make, where, what = CASES[case]
    make(tmp_path)
    summary = run(tmp_path, tokenizer_file, "skip")
    assert summary.documents == len(GOOD) and summary.rejected == 1
    [reject] = rejects_of(tmp_path / "out")
    assert reject["source"] == name and reject["line"] == 4 and what in reject["reason"]
    recon = summary.manifest.reconciliation
    assert recon.records_in == recon.documents_out + recon.rejected == len(GOOD) + 1


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_under_both_modes(tmp_path, tokenizer_file, case):
    make, name, where, what, records = FILE_CASES[case]
    make(tmp_path)
    with pytest.raises(RunFailedError) as err:
        run(tmp_path, tokenizer_file, "fail")
    assert name in str(err.value) and what in str(err.value) and where in str(err.value)
    summary = run(tmp_path, tokenizer_file, "skip")  # resumes the same prefix: same plan
    rejects = rejects_of(tmp_path / "out")
    assert [r["source"] for r in rejects] == [name]
    assert what in rejects[0]["reason"] and rejects[0]["records"] == records
    recon = summary.manifest.reconciliation
    assert recon.balanced and recon.rejected == records
    assert recon.records_in == recon.documents_out + recon.rejected


def test_missing_input_prefix(tmp_path, tokenizer_file):
    with pytest.raises(StorageNotFoundError) as err:
        run(tmp_path, tokenizer_file, "fail")
    assert "no input files match" in str(err.value) and "input.uri" in str(err.value)


def test_missing_tokenizer_file(tmp_path):
    write_jsonl(tmp_path / "raw" / "a.jsonl", GOOD)
    with pytest.raises(TokenizerError) as err:
        run(tmp_path, tmp_path / "nope.json", "fail")
    assert "nope.json does not exist" in str(err.value) and "tokenizer.path" in str(err.value)


def test_eos_missing_from_vocabulary(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "a.jsonl", GOOD)
    job = parse_job(make_job(str(tmp_path / "raw"), str(tokenizer_file), str(tmp_path / "o"),
                             **{"tokenizer.eos": "</s>"}))
    with pytest.raises(TokenizerError) as err:
        run_job(job)
    assert "</s>" in str(err.value)


@pytest.mark.timeout(60)  # a hang guard: access denied is never retried
def test_s3_access_denied_is_clear_and_quick(s3, tmp_path, tokenizer_file, monkeypatch):
    """moto enforces no IAM; a bucket policy that denies everything does the same job."""
    s3.bucket("locked")
    s3.put("locked/a.jsonl", b'{"text": "x"}\n')
    s3.fs.call_s3("put_bucket_policy", Bucket="locked", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                       "Resource": ["arn:aws:s3:::locked", "arn:aws:s3:::locked/*"]}]}))
    monkeypatch.setenv("MOTO_S3_DEFAULT_BUCKET_POLICY_ENFORCED", "true")
    job = parse_job(make_job("s3://locked/", str(tokenizer_file), str(tmp_path / "out")))
    with pytest.raises((StorageAccessError, RunFailedError)) as err:
        run_job(job)
    cause = getattr(err.value, "first", err.value)
    assert isinstance(cause, StorageAccessError)
    assert "s3://locked" in str(err.value) and s3.endpoint in str(err.value)
    assert "access denied" in str(err.value)


@pytest.mark.timeout(90)  # a hang guard: no credentials is never retried
def test_s3_without_credentials_is_clear_and_quick(s3, tmp_path, tokenizer_file, monkeypatch):
    s3.bucket("raw")
    s3.put("raw/a.jsonl", b'{"text": "x"}\n')
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code = (
        "import sys\n"
        "from pipelines.cli import main\n"
        f"sys.exit(main(['run', {str(tmp_path / 'job.yaml')!r}]))\n")
    import yaml

    (tmp_path / "job.yaml").write_text(yaml.safe_dump(
        make_job("s3://raw/", str(tokenizer_file), str(tmp_path / "out"))))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=80)
    stderr = " ".join(proc.stderr.split())
    assert proc.returncode == 2, stderr
    assert "no AWS credentials were found" in stderr and "s3://raw" in stderr
    assert "Traceback" not in stderr
