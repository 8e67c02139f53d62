"""Output overlapping input, and ``--restart``: output is never read as input, and no
command leaves the user with less than they had without saying so first.

With the output folder inside the input folder, the first run committed, the rerun saw
its own shards as new inputs and refused, and the suggested ``--restart`` deleted the
committed dataset and then failed.
"""

from __future__ import annotations

import json
import os

import dask
import pytest

from pipelines.config import parse_job
from pipelines.errors import ConfigError, PlanMismatchError
from pipelines.progress import Progress
from pipelines.run import run_job
from tests.helpers import make_job, write_jsonl

DOCS = [{"id": i, "text": f"document number {i} of the overlap tests."} for i in range(20)]


@pytest.fixture
def raw(tmp_path):
    write_jsonl(tmp_path / "raw" / "a.jsonl", DOCS[:10])
    write_jsonl(tmp_path / "raw" / "sub" / "b.jsonl", DOCS[10:])
    return tmp_path / "raw"


def job(inp, tokenizer_file, out, **extra):
    return parse_job(make_job(inp if isinstance(inp, list) else str(inp), str(tokenizer_file),
                              str(out), **{"engine.workers": 1, **extra}))


@pytest.mark.parametrize(("inp", "out"), [
    ("raw", "raw/out"),                 # output inside the input folder
    ("raw", "raw"),                     # output is the input
    ("raw/sub", "raw"),                 # input inside the output
    ("raw/**/*.json*", "raw/tok"),      # a glob that matches manifest.json and rejects
    ("raw/**", "raw/tok"),              # a glob that matches everything under raw/
])
def test_overlap_is_refused_before_anything_is_written(tmp_path, raw, tokenizer_file, inp, out):
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as err:
        run_job(job(tmp_path / inp, tokenizer_file, tmp_path / out))
    assert err.value.exit_code == 2 and "input.uri" in str(err.value)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_input_list_entry_inside_the_output_is_refused(tmp_path, raw, tokenizer_file):
    with pytest.raises(ConfigError, match=r"input.uri\[1\]"):
        run_job(job([str(raw / "a.jsonl"), str(tmp_path / "out" / "x.jsonl")], tokenizer_file,
                    tmp_path / "out"))


@pytest.mark.parametrize("out", ["raw/_tokenized", "raw/.tokenized"])
def test_an_output_the_listing_skips_may_sit_inside_the_input(tmp_path, raw, tokenizer_file,
                                                              out):
    first = run_job(job(raw, tokenizer_file, tmp_path / out))
    again = run_job(job(raw, tokenizer_file, tmp_path / out))
    assert first.documents == 20 and again.already_committed


@pytest.mark.parametrize("pattern", ["*.jsonl", "*"])
def test_a_glob_that_cannot_reach_the_output_is_allowed_and_reruns(tmp_path, raw,
                                                                   tokenizer_file, pattern):
    first = run_job(job(raw / pattern, tokenizer_file, raw / "tok"))
    again = run_job(job(raw / pattern, tokenizer_file, raw / "tok"))
    assert first.documents == 10 and again.already_committed


def test_an_input_link_into_the_output_is_refused(tmp_path, raw, tokenizer_file):
    out = tmp_path / "out"
    run_job(job(raw, tokenizer_file, out))
    (raw / "previous").symlink_to(out)
    with pytest.raises(ConfigError, match="lies under output.uri"):
        run_job(job(raw, tokenizer_file, out))


def test_a_linked_output_folder_is_seen_through(tmp_path, raw, tokenizer_file):
    (tmp_path / "elsewhere").symlink_to(raw)
    with pytest.raises(ConfigError, match="lies under input.uri"):
        run_job(job(raw, tokenizer_file, tmp_path / "elsewhere" / "out"))


def test_overlap_on_s3_is_refused_before_any_request(s3, tokenizer_file, tmp_path):
    s3.bucket("raw-bucket")
    s3.put("raw-bucket/books/a.jsonl", json.dumps(DOCS[0]).encode() + b"\n")
    with pytest.raises(ConfigError, match="lies under input.uri"):
        run_job(job("s3://raw-bucket/books/", tokenizer_file, "s3://raw-bucket/books/v1/"))
    assert s3.listing("s3://raw-bucket/books") == {"a.jsonl": s3.fs.cat_file(
        "raw-bucket/books/a.jsonl")}


class Notes(Progress):
    """Records notes, and whether the manifest still existed when each was made."""

    def __init__(self, manifest) -> None:
        self.manifest = manifest
        self.notes: list[tuple[str, bool]] = []

    def note(self, message: str) -> None:
        self.notes.append((message, os.path.exists(self.manifest)))


def test_restart_says_what_it_deletes_before_it_deletes(tmp_path, raw, tokenizer_file):
    out = tmp_path / "out"
    run_job(job(raw, tokenizer_file, out))
    notes = Notes(out / "manifest.json")
    summary = run_job(job(raw, tokenizer_file, out, **{"tokenizer.eos": None}), restart=True,
                      progress=notes)
    said = [(m, present) for m, present in notes.notes if m.startswith("--restart")]
    assert len(said) == 1
    message, manifest_still_there = said[0]
    assert manifest_still_there
    assert "committed dataset of job 'test-job'" in message and "20 documents" in message
    assert summary.documents == 20 and not summary.already_committed


def test_restart_fails_before_deleting_when_the_cluster_is_unreachable(tmp_path, raw,
                                                                      tokenizer_file):
    from pipelines.errors import ClusterError

    out = tmp_path / "out"
    run_job(job(raw, tokenizer_file, out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "_runs" not in str(p)}
    unreachable = job(raw, tokenizer_file, out, **{"engine.kind": "dask",
                                                   "engine.scheduler_address":
                                                       "tcp://127.0.0.1:9"})
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(ClusterError, match="cannot be reached") as err:
            run_job(unreachable, restart=True)
    assert err.value.exit_code == 2 and err.value.transient  # Airflow may retry it
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "_runs" not in str(p)}
    assert after == before


def test_a_mismatch_over_a_committed_dataset_says_restart_would_delete_it(tmp_path, raw,
                                                                         tokenizer_file):
    out = tmp_path / "out"
    run_job(job(raw, tokenizer_file, out))
    with pytest.raises(PlanMismatchError) as err:
        run_job(job(raw, tokenizer_file, out, **{"tokenizer.eos": None}))
    assert "committed dataset" in str(err.value) and "--restart would delete" in str(err.value)


def test_a_nightly_root_inside_its_raw_prefix_is_refused_before_the_watermark(
        tmp_path, raw, tokenizer_file):
    from pipelines.nightly import resolve_night

    base = job(raw, tokenizer_file, raw / "nightly")
    with pytest.raises(ConfigError, match="lies under input.uri"):
        resolve_night(base, "2026-11-21")
    assert not (raw / "nightly").exists()
