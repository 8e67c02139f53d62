"""The cost tests' fixtures: a small local corpus with a job file and the AWS reference
data (skipped with a reason when ../shared is absent). Profiles and the in-process
``tokenyard cost`` are in :mod:`tests.cost.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cost.helpers import TRACES, Corpus
from tests.helpers import SHARED


@pytest.fixture(scope="session")
def aws_data() -> Path:
    path = SHARED / "data" / "aws"
    if not path.is_dir():
        pytest.skip(f"the AWS reference data {path} is absent")
    return path


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"the spot traces {TRACES} are absent")
    return TRACES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer_bytes) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("cost-corpus"), tokenizer_bytes)


