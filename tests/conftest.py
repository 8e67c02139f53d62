"""The test kit: a loopback S3 server, clean AWS environment, corpora and tokenizers.

S3 is moto's real HTTP server on 127.0.0.1 (started once per session, reset per test),
reached through s3fs as in production. Dask and Spark are real local clusters.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from pipelines.testing.s3 import AWS_ENV, AWS_ENV_REMOVED, S3Server
from tests.helpers import REPO, SHARED

# spawned workers (Dask, Spark, the process pool) import the package from the checkout
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# fast-backend verdicts go to a folder of this test session, never to the user's cache
os.environ["TOKENYARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tokenyard-test-cache-")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Fake credentials; nothing that could reach a real account or the metadata service."""
    for key in AWS_ENV_REMOVED:
        monkeypatch.delenv(key, raising=False)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server().start()
    yield server
    server.stop()


class S3Kit:
    """The loopback S3 for one test: endpoint, an s3fs filesystem, helpers."""

    def __init__(self, server: S3Server) -> None:
        self.endpoint = server.endpoint
        self.fs = server.filesystem()

    def bucket(self, name: str) -> str:
        self.fs.mkdir(name)
        return f"s3://{name}"

    def put(self, uri: str, data: bytes) -> None:
        self.fs.pipe_file(uri, data)

    def listing(self, prefix: str) -> dict[str, bytes]:
        """Every object under a prefix, name -> bytes."""
        base = prefix.rstrip("/").replace("s3://", "")
        return {p[len(base) + 1:]: self.fs.cat_file(p) for p in self.fs.find(base)}


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Kit:
    s3_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    return S3Kit(s3_server)


@pytest.fixture(scope="session")
def tokenizer_bytes() -> bytes:
    from pipelines.testing.corpus import tiny_tokenizer_json

    return tiny_tokenizer_json(512)


@pytest.fixture
def tokenizer_file(tmp_path, tokenizer_bytes) -> Path:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(tokenizer_bytes)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared reference folder {SHARED} is absent (schemas, AWS data)")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def quiet_server_logs():
    """moto's HTTP server logs every request; keep test reports readable."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # py4j logs from __del__ at interpreter exit, after pytest closed its streams
    logging.getLogger("py4j").setLevel(logging.WARNING)
