"""Shared fixtures of the Kubernetes tests: the upstream schemas and AWS reference data
(skipped with a reason when ../shared is absent), a job with remote URIs, the shipped
profiles, golden files, and distinctive fake credentials that must never leak."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.config import load_job
from pipelines.kube.capacity.profiles import load_profile
from pipelines.testing.s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
JOB_FILE = Path(__file__).parent / "jobs" / "books.yaml"
FAKE_KEY_ID = FAKE_ACCESS_KEY
FAKE_SECRET = FAKE_SECRET_KEY


def _shared(name: str) -> Path | None:
    env = os.environ.get("TOKENYARD_SCHEMA_DIR") if name == "schemas" else None
    path = Path(env) if env else REPO.parent / "shared" / name
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    path = _shared("schemas")
    if path is None:
        pytest.skip("upstream schemas not found at ../shared/schemas (or TOKENYARD_SCHEMA_DIR)")
    return path


@pytest.fixture(scope="session")
def schemas(schema_dir):
    from pipelines.kube.checks.validate import load_schemas

    return load_schemas(schema_dir)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _shared("data")
    if path is None or not (path / "aws").is_dir():
        pytest.skip("AWS reference data not found at ../shared/data/aws")
    return path / "aws"


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_SECRET + "token")


@pytest.fixture(scope="session")
def job():
    return load_job(JOB_FILE)


@pytest.fixture(scope="session")
def dask_profile():
    return load_profile(REPO / "cluster_specs" / "dask" / "general-1cpu.yaml")


@pytest.fixture(scope="session")
def spark_profile():
    return load_profile(REPO / "cluster_specs" / "spark" / "general-4core.yaml")


def check_golden(name: str, text: str) -> None:
    """Compare with tests/kube/golden/NAME; TOKENYARD_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("TOKENYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with TOKENYARD_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if the change is intended, rerun with "
        "TOKENYARD_UPDATE_GOLDEN=1 and review the diff")


def assert_no_credentials(text: str) -> None:
    for secret in (FAKE_KEY_ID, FAKE_SECRET, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_SESSION_TOKEN", "aws_secret", "AKIA"):
        assert secret not in text
