"""The fault campaign's corpora, each with its reference run, once per module (the
helpers they use are in :mod:`tests.faults.helpers`)."""

from __future__ import annotations

import pytest

from tests.faults.helpers import Corpus


@pytest.fixture(scope="module")
def corpus48(tmp_path_factory, tokenizer_bytes) -> Corpus:
    """About 48 units of 96 kB each (a few tenths of a second of work each)."""
    return Corpus(tmp_path_factory.mktemp("corpus48"), tokenizer_bytes, files=4,
                  file_bytes=1_100_000, target=96_000)


@pytest.fixture(scope="module")
def corpus12(tmp_path_factory, tokenizer_bytes) -> Corpus:
    """About 12 small units: for campaigns where every request is slow or faulty."""
    return Corpus(tmp_path_factory.mktemp("corpus12"), tokenizer_bytes, files=2,
                  file_bytes=300_000, target=50_000)
