"""Shared fixtures of the Kubernetes tests: the upstream schemas and AWS reference data
(skipped with a reason when ../shared is absent), a job with remote URIs, the shipped
profiles, golden files, and distinctive fake credentials that must never leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_job
from pipelines.kube.capacity.profiles import load_profile
from tests.kube.helpers import FAKE_KEY_ID, FAKE_SECRET, JOB_FILE, REPO, _shared


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


