"""The fast path end to end: same bytes on both backends, and what happens when they differ.

Runs the real pipeline (process pool, Dask, S3 on loopback). A planted mismatch needs the
patched backend inside the workers, so those runs use a Dask cluster whose workers are
threads of this process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from distributed import LocalCluster

from pipelines.backends import FastokensBackend
from pipelines.config import parse_job
from pipelines.errors import RunFailedError, TokenizerError
from pipelines.plan import make_plan
from pipelines.progress import NO_PROGRESS
from pipelines.records import TokenizerFacts, UnitOptions
from pipelines.run import plan_job, prepare, run_job, storage_of, unit_options
from pipelines.task import run_unit
from pipelines.testing.corpus import write_jsonl
from tests.helpers import REPO, local_tree, make_job
from tests.tokenizer_families import tokenizer_json


@pytest.fixture(autouse=True)
def verdict_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENYARD_CACHE_DIR", str(tmp_path / "verdicts"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", 400_000, seed=21, id_prefix="a")
    write_jsonl(raw / "b.jsonl.gz", 80_000, seed=22, id_prefix="b")
    write_jsonl(raw / "c.jsonl.zst", 80_000, seed=23, id_prefix="c")
    return raw


def _job(corpus: Path, tok: Path, out, backend: str, **extra):
    return parse_job(make_job(str(corpus), str(tok), str(out),
                              **{"tokenizer.backend": backend, **extra}))


class Notes:
    """A progress sink that keeps the driver's notes."""

    def __init__(self):
        self.notes: list[str] = []

    def __getattr__(self, name):
        return getattr(NO_PROGRESS, name)

    def note(self, text: str) -> None:
        self.notes.append(text)


@pytest.mark.parametrize("fmt", ["megatron", "parquet"])
def test_quickstart_gives_the_same_bytes_on_both_backends(tmp_path, fmt):
    quickstart = REPO / "jobs" / "quickstart"
    trees = {}
    for backend in ("hf", "fastokens", "auto"):
        out = tmp_path / backend
        summary = run_job(parse_job(make_job(
            str(quickstart / "raw"), str(quickstart / "tokenizer.json"), str(out),
            **{"tokenizer.backend": backend, "output.format": fmt, "plan.target_unit_bytes":
               "auto"})))
        assert summary.backend == ("hf" if backend == "hf" else "fastokens")
        trees[backend] = local_tree(out)
    assert trees["hf"] == trees["fastokens"] == trees["auto"]
    record = json.loads(next((tmp_path / "auto" / "_runs").glob("*.json")).read_text())
    assert record["backend"] == "fastokens" and "gave HF's ids" in record["backend_reason"]
    assert record["checked_documents"] >= summary.units and record["identity_check_seconds"] >= 0


def test_s3_round_trip_gives_the_same_bytes_on_both_backends(s3, corpus, tmp_path):
    s3.bucket("raw")
    s3.bucket("out")
    for path in corpus.iterdir():
        s3.put(f"raw/books/{path.name}", path.read_bytes())
    s3.put("raw/tok/tokenizer.json", tokenizer_json("llama3"))
    for backend in ("hf", "fastokens"):
        run_job(parse_job(make_job("s3://raw/books/*", "s3://raw/tok/tokenizer.json",
                                   f"s3://out/{backend}", **{"tokenizer.backend": backend})))
    hf = {k: v for k, v in s3.listing("s3://out/hf").items() if not k.startswith("_runs")}
    fast = {k: v for k, v in s3.listing("s3://out/fastokens").items()
            if not k.startswith("_runs")}
    assert hf == fast and any(k.startswith("shards/") for k in hf)


def test_a_run_resumes_on_the_other_backend(corpus, tmp_path):
    tok = tmp_path / "tok.json"
    tok.write_bytes(tokenizer_json("gpt2"))
    reference = tmp_path / "reference"
    run_job(_job(corpus, tok, reference, "hf"))
    out = tmp_path / "mixed"
    job = _job(corpus, tok, out, "hf")
    plan, opts, _ = prepare(job)
    assert len(plan.units) >= 3
    options = unit_options(job, plan, opts, "hf")
    run_unit(options, plan.units[0])  # a first run did one unit on hf, then stopped
    summary = run_job(_job(corpus, tok, out, "fastokens"))
    assert summary.units_skipped == 1 and summary.backend == "fastokens"
    assert local_tree(out) == local_tree(reference)


@pytest.mark.parametrize("family", ["metaspace", "wordpiece"])
def test_a_tokenizer_fastokens_refuses_runs_on_hf_or_fails_before_any_unit(corpus, tmp_path,
                                                                          family):
    tok = tmp_path / "tok.json"
    tok.write_bytes(tokenizer_json(family))
    eos = {"tokenizer.eos": "<|endoftext|>"}
    summary = run_job(_job(corpus, tok, tmp_path / "auto", "auto", **eos))
    assert summary.backend == "hf" and "does not support" in summary.backend_reason
    with pytest.raises(TokenizerError, match="tokenizer.backend is fastokens") as info:
        run_job(_job(corpus, tok, tmp_path / "fast", "fastokens", **eos))
    assert info.value.exit_code == 2
    assert not (tmp_path / "fast" / "_units").exists()
    assert not (tmp_path / "fast" / "shards").exists()


# -- a planted mismatch ------------------------------------------------------------------


@pytest.fixture(scope="module")
def thread_cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture
def planted(monkeypatch):
    """fastokens made wrong on any batch holding a digit 7, after it passed qualification."""
    real = FastokensBackend.encode_flat
    state = {"armed": False}

    def wrong(self, texts):
        ids, lengths = real(self, texts)
        if state["armed"] and any("7" in t for t in texts) and len(ids):
            ids = ids.copy()
            ids[0] = (int(ids[0]) + 1) % 500
        return ids, lengths

    monkeypatch.setattr(FastokensBackend, "encode_flat", wrong)
    return state


def _dask_job(corpus, tok, out, backend):
    return _job(corpus, tok, out, backend, **{"engine.kind": "dask"})


def test_a_mismatch_fails_the_run_under_fastokens(corpus, tmp_path, thread_cluster, planted):
    tok = tmp_path / "tok.json"
    tok.write_bytes(tokenizer_json("gpt2"))
    job = _dask_job(corpus, tok, tmp_path / "out", "fastokens")
    choose_first = plan_job(job)  # qualification passes: the backend is still right here
    assert choose_first.units
    planted["armed"] = False
    from pipelines.run import choose_job_backend

    assert choose_job_backend(job, choose_first, storage_of(job)).backend == "fastokens"
    planted["armed"] = True
    with pytest.raises(RunFailedError) as info:
        run_job(job, engine_kwargs={"cluster": thread_cluster})
    message = str(info.value)
    assert "fastokens and HF tokenizers disagree on document" in message
    assert "first difference at token 0" in message and "tokenizer.backend to hf" in message
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_mismatch_under_auto_switches_the_run_to_hf(corpus, tmp_path, thread_cluster,
                                                      planted):
    tok = tmp_path / "tok.json"
    tok.write_bytes(tokenizer_json("gpt2"))
    reference = tmp_path / "reference"
    run_job(_job(corpus, tok, reference, "hf"))
    out = tmp_path / "out"
    planted["armed"] = False
    plan = plan_job(_dask_job(corpus, tok, out, "auto"))
    from pipelines.run import choose_job_backend

    job = _dask_job(corpus, tok, out, "auto")
    assert choose_job_backend(job, plan, storage_of(job)).backend == "fastokens"  # cached now
    planted["armed"] = True
    notes = Notes()
    summary = run_job(job, progress=notes, engine_kwargs={"cluster": thread_cluster})
    assert summary.backend == "hf" and "switched from fastokens" in summary.backend_reason
    assert any("switching to the hf backend" in n for n in notes.notes)
    switch = json.loads((out / "_backend.json").read_text())
    assert switch["backend"] == "hf" and "first difference" in switch["reason"]
    tree = local_tree(out)
    tree.pop("_backend.json")
    assert tree == local_tree(reference)
    # the dataset stays on hf: a later run that has work to do says why, and backend
    # fastokens is refused
    planted["armed"] = False
    (out / "manifest.json").unlink()
    (out / "_units" / "000001.json").unlink()
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="switched to hf"):
        run_job(_dask_job(corpus, tok, out, "fastokens"),
                engine_kwargs={"cluster": thread_cluster})
    again = Notes()
    resumed = run_job(job, progress=again, engine_kwargs={"cluster": thread_cluster})
    assert resumed.units_run == 1 and resumed.backend == "hf"
    assert "an earlier run of this dataset switched to hf" in resumed.backend_reason
    tree = local_tree(out)
    tree.pop("_backend.json")
    assert tree == local_tree(reference)


# -- units that keep every worker busy --------------------------------------------------------


def test_96_mib_in_8_files_plans_enough_units_for_two_workers(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(8):
        with open(raw / f"part-{i}.jsonl", "wb") as f:  # sizes are all planning reads
            f.truncate(12 * 2**20)
    job = parse_job(make_job(str(raw), str(tokenizer_file), str(tmp_path / "out"),
                             **{"plan.target_unit_bytes": "auto"}))
    facts = TokenizerFacts("t.json", "0" * 64, 512, "uint16", None, None, None, None)
    plan = make_plan(job, facts, storage_of(job))
    assert plan.options.target_unit_bytes == 8 * 2**20
    assert len(plan.units) >= 8
    biggest = max(u.input_bytes for u in plan.units)
    assert biggest <= plan.input_bytes / 8  # no worker of two waits on one big unit


def test_an_auto_unit_size_is_kept_by_the_dataset(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", 50_000, seed=1)
    out = tmp_path / "out"
    job = parse_job(make_job(str(raw), str(tokenizer_file), str(out),
                             **{"plan.target_unit_bytes": "auto"}))
    run_job(job)
    saved = json.loads((out / "_plan.json").read_text())["options"]["target_unit_bytes"]
    assert isinstance(saved, int)
    # the rule could change, or the file grow by a record: the saved size is used still
    plan = plan_job(job)
    assert plan.options.target_unit_bytes == saved
    assert run_job(job).already_committed


def test_unit_options_carry_the_backend_and_special_token_rule(corpus, tmp_path):
    tok = tmp_path / "tok.json"
    tok.write_bytes(tokenizer_json("gpt2"))
    job = _job(corpus, tok, tmp_path / "o", "auto",
               **{"tokenizer.split_special_tokens": False})
    plan = plan_job(job)
    options: UnitOptions = unit_options(job, plan, storage_of(job), "fastokens")
    assert options.backend == "fastokens" and options.requested_backend == "auto"
    assert options.split_special_tokens is False
    assert "split_special_tokens" not in plan.options.to_dict()  # as plans before the option
    assert os.environ.get("TOKENYARD_CACHE_DIR")
