"""Inputs as users have them: symbolic links, hidden names, folders where files belong."""

from __future__ import annotations

import pytest

from pipelines import storage
from pipelines.config import parse_job
from pipelines.errors import ConfigError, StorageNotFoundError, TokenizerError
from pipelines.run import run_job
from tests.helpers import make_job, write_jsonl

DOCS = [{"id": i, "text": f"linked document {i}"} for i in range(6)]


def job(inp, tokenizer, out, **extra):
    return parse_job(make_job(str(inp), str(tokenizer), str(out),
                              **{"engine.workers": 1, **extra}))


@pytest.fixture
def linked(tmp_path):
    """raw/ holds a plain file, a link to a file elsewhere and a link to a folder."""
    write_jsonl(tmp_path / "elsewhere" / "b.jsonl", DOCS[2:4])
    write_jsonl(tmp_path / "shelf" / "c.jsonl", DOCS[4:])
    write_jsonl(tmp_path / "raw" / "a.jsonl", DOCS[:2])
    (tmp_path / "raw" / "b.jsonl").symlink_to(tmp_path / "elsewhere" / "b.jsonl")
    (tmp_path / "raw" / "shelf").symlink_to(tmp_path / "shelf")
    return tmp_path / "raw"


@pytest.mark.parametrize("pattern", ["", "**/*.jsonl", "*.jsonl"])
def test_symlinked_files_and_folders_are_listed(linked, pattern):
    keys = [f.key for f in storage.list_files(str(linked / pattern) if pattern else str(linked))]
    expected = ["a.jsonl", "b.jsonl", "shelf/c.jsonl"]
    assert keys == (expected[:2] if pattern == "*.jsonl" else expected)


def test_a_run_over_linked_inputs_tokenizes_them_all(linked, tmp_path, tokenizer_file):
    summary = run_job(job(linked, tokenizer_file, tmp_path / "out"))
    assert summary.documents == len(DOCS)


def test_a_link_cycle_and_a_second_name_read_nothing_twice(linked, tmp_path):
    (linked / "shelf" / "loop").symlink_to(linked)          # back to an ancestor
    (linked / "again.jsonl").symlink_to(linked / "a.jsonl")  # the same file, another name
    keys = [f.key for f in storage.list_files(str(linked))]
    assert keys == ["a.jsonl", "b.jsonl", "shelf/c.jsonl"]


def test_a_broken_link_is_named(linked, tmp_path, tokenizer_file):
    (linked / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    with pytest.raises(ConfigError) as err:
        run_job(job(linked, tokenizer_file, tmp_path / "out"))
    assert "gone.jsonl is a symbolic link to" in str(err.value) and err.value.exit_code == 2


def test_a_hidden_broken_link_is_skipped_like_any_hidden_file(linked, tmp_path):
    (linked / ".#a.jsonl").symlink_to("user@host.1234")  # an editor's lock file
    assert [f.key for f in storage.list_files(str(linked))][0] == "a.jsonl"


def test_a_folder_of_hidden_files_says_they_were_skipped(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "_part-0.jsonl", DOCS)
    write_jsonl(tmp_path / "raw" / ".part-1.jsonl", DOCS)
    with pytest.raises(StorageNotFoundError) as err:
        run_job(job(tmp_path / "raw", tokenizer_file, tmp_path / "out"))
    text = str(err.value)
    assert "no input files match" in text and "2 file(s) were skipped" in text
    assert "_part-0.jsonl" in text and "'.' or '_'" in text and "Rename" in text


def test_hidden_files_are_skipped_and_counted_on_s3(s3):
    s3.bucket("raw-bucket")
    for key in ("a/_SUCCESS", "a/_tmp/x.jsonl", "a/x.jsonl"):
        s3.put(f"raw-bucket/{key}", b"{}\n")
    listing = storage.scan("s3://raw-bucket/a")
    assert [f.key for f in listing.files] == ["x.jsonl"]
    assert sorted(listing.hidden) == ["_SUCCESS", "_tmp/x.jsonl"]


def test_a_tokenizer_path_that_is_a_folder(tmp_path, tokenizer_file, linked):
    with pytest.raises(TokenizerError) as err:
        run_job(job(linked, tokenizer_file.parent, tmp_path / "out"))
    text = str(err.value)
    assert "is a folder" in text and "tokenizer.json" in text and err.value.exit_code == 2


def test_a_tokenizer_prefix_on_s3_is_a_folder_too(s3, tmp_path, tokenizer_bytes, linked):
    s3.bucket("models")
    s3.put("models/gpt/tokenizer.json", tokenizer_bytes)
    with pytest.raises(TokenizerError) as err:
        run_job(job(linked, "s3://models/gpt/", tmp_path / "out"))
    assert "is a folder" in str(err.value) and "s3://models/gpt/tokenizer.json" in str(err.value)


def test_a_file_that_is_not_a_tokenizer_is_named_by_its_key(tmp_path, linked):
    bad = tmp_path / "tok.json"
    bad.write_text("not json")
    with pytest.raises(TokenizerError) as err:
        run_job(job(linked, bad, tmp_path / "out"))
    assert f"tokenizer.path {bad}" in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_output_that_is_or_lies_in_a_file(tmp_path, tokenizer_file, linked, where):
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    out = target if where == "file" else target / "out"
    with pytest.raises(ConfigError) as err:
        run_job(job(linked, tokenizer_file, out))
    assert "is a file" in str(err.value) and err.value.exit_code == 2
    assert target.read_text() == "mine"
