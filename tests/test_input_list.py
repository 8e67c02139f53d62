"""``input.uri`` as a list of URIs: the explicit objects of one nightly run."""

from __future__ import annotations

import pytest

from tests.helpers import write_jsonl
from pipelines.config import parse_job
from pipelines.errors import ConfigError, StorageNotFoundError
from pipelines.plan import list_inputs
from pipelines.run import run_job, storage_of


def _job(tmp_path, tokenizer_file, uri):
    return parse_job({"name": "listed", "input": {"uri": uri},
                      "tokenizer": {"path": str(tokenizer_file)},
                      "output": {"uri": str(tmp_path / "out")},
                      "engine": {"kind": "local", "workers": 1}}, base_dir=tmp_path)


def test_a_list_names_exactly_its_objects_with_keys_under_their_common_folder(
        tmp_path, tokenizer_file):
    for name in ("a/1.jsonl", "a/2.jsonl", "b/3.jsonl"):
        write_jsonl(tmp_path / "raw" / name, [{"text": f"doc {name}"}])
    job = _job(tmp_path, tokenizer_file, ["raw/b/3.jsonl", "raw/a/1.jsonl"])
    assert job.input.uris == (str(tmp_path / "raw/b/3.jsonl"), str(tmp_path / "raw/a/1.jsonl"))
    files = list_inputs(job, storage_of(job))
    assert [f.key for f in files] == ["a/1.jsonl", "b/3.jsonl"]
    summary = run_job(job)
    assert summary.documents == 2


def test_a_single_uri_is_unchanged(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "x" / "1.jsonl", [{"text": "one"}])
    job = _job(tmp_path, tokenizer_file, "raw/*/*.jsonl")
    assert job.input.uris == (job.input.uri,)
    assert [f.key for f in list_inputs(job, storage_of(job))] == ["x/1.jsonl"]


def test_an_empty_list_is_a_config_error_and_a_list_of_missing_files_is_not_found(
        tmp_path, tokenizer_file):
    with pytest.raises(ConfigError, match="empty list"):
        _job(tmp_path, tokenizer_file, [])
    job = _job(tmp_path, tokenizer_file, ["raw/nope.jsonl", "raw/gone.jsonl"])
    with pytest.raises(StorageNotFoundError, match="and 1 more URIs"):
        list_inputs(job, storage_of(job))
