"""The storage boundary on the loopback S3 server: multipart, atomicity, translation."""

from __future__ import annotations

import pytest

from pipelines import storage
from pipelines.errors import StorageNotFoundError, TransientStorageError


def test_multipart_parts_stay_under_the_s3_limit(s3):
    s3.bucket("out")
    assert storage.DEFAULT_PART_BYTES * storage.S3_MAX_PARTS >= 600 * 2**30
    data = bytes(range(256)) * (12 * 2**20 // 256)
    with storage.atomic_writer("s3://out/big.bin", part_bytes=5 * 2**20) as w:
        for i in range(0, len(data), 2**20):
            w.write(data[i:i + 2**20])
    assert s3.fs.cat_file("out/big.bin") == data
    head = s3.fs.call_s3("head_object", Bucket="out", Key="big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts, completed as one object


def test_a_failed_write_leaves_nothing_visible(s3, tmp_path):
    s3.bucket("out")
    for uri in ("s3://out/x.bin", str(tmp_path / "x.bin")):
        with pytest.raises(RuntimeError):
            with storage.atomic_writer(uri, part_bytes=5 * 2**20) as w:
                w.write(b"a" * (6 * 2**20))
                raise RuntimeError("killed mid-write")
        assert not storage.exists(uri)
    assert list(tmp_path.iterdir()) == []
    uploads = s3.fs.call_s3("list_multipart_uploads", Bucket="out").get("Uploads", [])
    assert uploads == []


def test_not_found_and_listing(s3):
    s3.bucket("raw")
    with pytest.raises(StorageNotFoundError):
        storage.read_bytes("s3://raw/none.json")
    for key in ("a/1.jsonl", "a/b/2.jsonl", "a/_SUCCESS", "a/.hidden"):
        s3.put(f"raw/{key}", b"{}\n")
    assert [f.key for f in storage.list_files("s3://raw/a")] == ["1.jsonl", "b/2.jsonl"]
    assert [f.key for f in storage.list_files("s3://raw/a/**/*.jsonl")] == ["1.jsonl",
                                                                          "b/2.jsonl"]


def test_throttling_is_retried_with_backoff_then_reported():
    from botocore.exceptions import ClientError

    calls = []

    def throttled():
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your rate"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
        return "ok"

    policy = storage.RetryPolicy(attempts=4, base_delay_s=0.01)
    assert policy.call(throttled, uri="s3://b/k", operation="write") == "ok"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(TransientStorageError) as err:
        storage.RetryPolicy(attempts=2, base_delay_s=0.01).call(
            lambda: throttled() and throttled() and throttled(), uri="s3://b/k",
            operation="write",
            storage_options=storage.StorageOptions(endpoint_url="http://127.0.0.1:9"))
    assert "SlowDown" in str(err.value) and "http://127.0.0.1:9" in str(err.value)


def test_storage_options_are_one_frozen_picklable_hashable_value():
    import pickle

    from pipelines.errors import ConfigError

    opts = storage.StorageOptions(endpoint_url="http://127.0.0.1:9000", region="eu-west-1")
    assert pickle.loads(pickle.dumps(opts)) == opts
    assert {opts: 1}[storage.StorageOptions.of({"endpoint_url": "http://127.0.0.1:9000",
                                                "region": "eu-west-1"})] == 1
    assert storage.StorageOptions.of(None) == storage.StorageOptions()
    assert storage.StorageOptions.of(opts) is opts
    with pytest.raises(ConfigError, match="unknown storage option 'aws_secret_access_key'"):
        storage.StorageOptions.of({"aws_secret_access_key": "x"})
    with pytest.raises(AttributeError):
        opts.anon = True  # type: ignore[misc]


def test_the_request_settings_stay_as_written_after_clients_use_them(s3):
    """botocore rewrites the retries dict it is given (max_attempts into
    total_max_attempts); each filesystem gets its own copy, so S3_CONFIG keeps saying
    what the retry-stack table was computed from."""
    import copy

    before = copy.deepcopy(storage.S3_CONFIG)
    s3.bucket("cfg")
    storage.write_bytes("s3://cfg/x", b"x")
    assert storage.read_bytes("s3://cfg/x") == b"x"
    assert storage.S3_CONFIG == before
