"""Large plain-text documents are streamed: same bytes as holding them whole."""

from __future__ import annotations

import json

import pytest

from pipelines import read
from pipelines.config import parse_job
from pipelines.plan import make_plan
from pipelines.run import read_tokenizer, storage_of, unit_options
from pipelines.task import run_unit
from pipelines.testing.corpus import documents
from tests.helpers import local_tree
from tests.helpers import make_job

TEXT = "\n\n".join(documents(600_000, seed=21)) + "\n  trailing  spaces \n"


def run_in_process(tmp_path, tokenizer_file, out: str, fmt: str = "megatron",
                   on_error: str = "fail"):
    job = parse_job(make_job(str(tmp_path / "raw"), str(tokenizer_file), str(tmp_path / out),
                             on_error=on_error, **{"output.format": fmt}))
    opts = storage_of(job)
    plan = make_plan(job, read_tokenizer(job, opts)[1], opts)
    options = unit_options(job, plan, opts)
    return [run_unit(options, u) for u in plan.units]


@pytest.mark.parametrize("fmt", ["megatron", "parquet"])
def test_streamed_document_gives_the_same_bytes(tmp_path, tokenizer_file, monkeypatch, fmt):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "book.txt").write_text(TEXT + "emoji \U0001f600 at the end")
    whole = run_in_process(tmp_path, tokenizer_file, "whole", fmt)
    monkeypatch.setattr(read, "STREAM_TEXT_BYTES", 10_000)
    monkeypatch.setattr(read, "STREAM_CHUNK_BYTES", 4_099)  # cuts through characters
    streamed = run_in_process(tmp_path, tokenizer_file, "streamed", fmt)
    assert [r.tokens for r in streamed] == [r.tokens for r in whole]
    assert streamed[0].documents == 1 and streamed[0].tokens > 100_000
    assert local_tree(tmp_path / "streamed") == local_tree(tmp_path / "whole")


def test_invalid_utf8_deep_in_a_streamed_file_is_rejected_with_offset_and_line(
        tmp_path, tokenizer_file, monkeypatch):
    (tmp_path / "raw").mkdir()
    data = TEXT.encode()
    at = len(data) - 1000
    at = data.index(b" ", at)
    (tmp_path / "raw" / "book.txt").write_bytes(data[:at] + b"\xff" + data[at:])
    monkeypatch.setattr(read, "STREAM_TEXT_BYTES", 10_000)
    monkeypatch.setattr(read, "STREAM_CHUNK_BYTES", 4_099)
    [result] = run_in_process(tmp_path, tokenizer_file, "out", on_error="skip")
    assert (result.records, result.documents, result.rejected) == (1, 0, 1)
    [reject] = [json.loads(x) for x in
                (tmp_path / "out" / "rejects" / "000000.jsonl").read_text().splitlines()]
    assert reject["reason"] == f"invalid UTF-8 (byte 0xff at offset {at})"
    assert reject["line"] == data[:at].count(b"\n") + 1
