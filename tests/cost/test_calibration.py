"""Calibration on the job's own inputs through run_unit, and reuse of run records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import parse_job
from pipelines.cost import calibration
from pipelines.cost.sampling import sample_units
from pipelines.cost.workload import from_plan, unit_target
from pipelines.run import plan_job, run_job, storage_of
from pipelines.testing.corpus import documents, write_jsonl
from tests.helpers import make_job
from tests.cost.helpers import COMPUTE, cost_json, run_cli


def _rates(job_dict: dict, sample_bytes: int):
    job = parse_job(job_dict)
    plan = plan_job(job)
    options, _ = calibration.run_options(job, plan, storage_of(job))
    rates = calibration.calibrate(plan, options, sample_bytes=sample_bytes)
    return job, plan, rates


@pytest.fixture(scope="module")
def reference(corpus):
    """The corpus tokenized for real: its manifest totals."""
    summary = run_job(parse_job(corpus.job_dict(**{"output.uri": str(corpus.root / "ref")})))
    return summary


def test_a_sample_of_everything_counts_the_real_tokens(corpus, reference):
    job, plan, rates = _rates(corpus.job_dict(), sample_bytes=10**9)
    assert rates.source == "sample" and rates.measured_units == len(plan.units)
    workload = from_plan(plan, rates, unit_target(job, plan))
    assert round(workload.tokens) == reference.tokens
    assert rates.peak_rss_bytes > 0 and rates.measured_cpu_seconds > 0
    assert not corpus.out.exists()  # the job's output prefix was never written


def test_a_partial_sample_estimates_the_tokens_closely(corpus, reference):
    job, plan, rates = _rates(corpus.job_dict(), sample_bytes=corpus.input_bytes // 4)
    assert rates.measured_bytes < corpus.input_bytes / 2
    workload = from_plan(plan, rates, unit_target(job, plan))
    assert workload.tokens == pytest.approx(reference.tokens, rel=0.08)


def test_sampling_is_deterministic(corpus):
    _, _, a = _rates(corpus.job_dict(), sample_bytes=200_000)
    _, _, b = _rates(corpus.job_dict(), sample_bytes=200_000)
    assert (a.measured_bytes, a.measured_tokens) == (b.measured_bytes, b.measured_tokens)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tokenizer_bytes):
    """A large .zst, a large plain-text file and a Parquet file of many row groups."""
    root = tmp_path_factory.mktemp("mixed")
    write_jsonl(root / "raw" / "big.jsonl.zst", 3_000_000, seed=3)
    text = "\n\n".join(documents(1_500_000, seed=4))
    (root / "raw" / "book.txt").write_text(text, encoding="utf-8")
    docs = list(documents(1_500_000, seed=5))
    table = pa.table({"text": docs, "id": [f"p{i}" for i in range(len(docs))]})
    pq.write_table(table, root / "raw" / "rows.parquet", row_group_size=200)
    (root / "tok.json").write_bytes(tokenizer_bytes)
    job = make_job(str(root / "raw"), str(root / "tok.json"), str(root / "out"),
                   **{"plan.target_unit_bytes": 1_000_000, "input.id_field": None})
    truth = run_job(parse_job({**job, "output": {"uri": str(root / "ref")}}))
    return job, truth


def test_compressed_text_and_parquet_inputs_are_sampled_in_place(mixed):
    job_dict, truth = mixed
    job, plan, rates = _rates(job_dict, sample_bytes=600_000)
    assert rates.measured_units >= 3
    workload = from_plan(plan, rates, unit_target(job, plan))
    assert workload.tokens == pytest.approx(truth.tokens, rel=0.2)


def test_each_input_kind_gets_its_own_sample(mixed, tmp_path):
    job_dict, _ = mixed
    plan = plan_job(parse_job(job_dict))
    sources = [s.source for s in sample_units(plan, 600_000, tmp_path, {}, "text")]
    assert any("decompressed" in s for s in sources)
    assert any("book.txt[first" in s for s in sources)
    assert any("row group" in s for s in sources)


# -- run records ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran_once(corpus, tmp_path_factory) -> Path:
    """A real run of the corpus job, with its run record under _runs/."""
    out = tmp_path_factory.mktemp("ran") / "out"
    run_job(parse_job(corpus.job_dict(**{"output.uri": str(out)})))
    return out


@pytest.fixture
def ran(corpus, ran_once, tmp_path):
    """A copy of that run's output for one test, and a job file pointing at it."""
    out = tmp_path / "out"
    shutil.copytree(ran_once, out)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(corpus.job_dict(**{"output.uri": str(out)})))
    [record] = list((out / "_runs").glob("*.json"))
    return path, record


def test_a_run_record_is_reused_automatically(ran):
    job_file, record = ran
    saved = json.loads(record.read_text())
    assert saved["tokenizer_sha256"] and saved["backend"] and saved["unit_seconds"] > 0
    data = cost_json(job_file, "--profile", COMPUTE)
    calib = data["calibration"]
    assert calib["source"] == "run record" and calib["run_id"] == record.stem
    assert "unit_seconds" in calib["description"] and calib["notes"] == []
    assert calib["backend"] == saved["backend"]
    assert data["tokens"] == pytest.approx(saved["tokens"], rel=0.01)
    forced = cost_json(job_file, "--profile", COMPUTE, "--calibrate")
    assert forced["calibration"]["source"] == "sample"


def _record_edited(record, drop=(), **fields) -> None:
    data = json.loads(record.read_text())
    data.update(fields)
    for key in drop:
        data.pop(key, None)
    record.write_text(json.dumps(data))


def test_an_older_record_is_used_only_when_asked_and_says_what_it_lacks(ran):
    job_file, record = ran
    _record_edited(record, drop=("tokenizer_sha256", "backend", "unit_seconds"), workers=2)
    assert cost_json(job_file, "--profile", COMPUTE)["calibration"]["source"] == "sample"
    data = cost_json(job_file, "--profile", COMPUTE, "--from-run", record.stem)
    calib = data["calibration"]
    assert calib["source"] == "run record" and calib["run_id"] == record.stem
    notes = " ".join(calib["notes"])
    assert "tokenizer" in notes and "backend" in notes and "seconds x" in notes
    assert calib["tokens_per_cpu_second"] > 0


def test_a_record_of_another_backend_is_not_reused(ran):
    job_file, record = ran
    saved = json.loads(record.read_text())
    other = "hf" if saved["backend"] != "hf" else "fastokens"
    _record_edited(record, backend=other)
    assert cost_json(job_file, "--profile", COMPUTE)["calibration"]["source"] == "sample"
    code, out, err = run_cli("cost", job_file, "--profile", COMPUTE, "--from-run", record.stem)
    assert code == 2 and "backend" in err


def test_a_record_of_another_tokenizer_is_not_reused(ran):
    job_file, record = ran
    _record_edited(record, tokenizer_sha256="0" * 64)
    assert cost_json(job_file, "--profile", COMPUTE)["calibration"]["source"] == "sample"
    code, out, err = run_cli("cost", job_file, "--profile", COMPUTE, "--from-run", record.stem)
    assert code == 2 and "another tokenizer" in err


def test_an_earlier_cost_report_gives_its_calibration_again(corpus, tmp_path):
    first = cost_json(corpus.job_file(), "--profile", COMPUTE, "--calibrate")
    report = tmp_path / "report.json"
    report.write_text(json.dumps(first))
    again = cost_json(corpus.job_file(), "--profile", COMPUTE, "--from-run", report)
    assert again["calibration"]["source"] == "cost report"
    for key in ("tokens", "cpu_seconds", "wall_seconds", "usd"):
        assert again[key] == pytest.approx(first[key], rel=1e-4), key
    first["calibration"]["tokenizer_sha256"] = "0" * 64
    report.write_text(json.dumps(first))
    code, _, err = run_cli("cost", corpus.job_file(), "--profile", COMPUTE, "--from-run", report)
    assert code == 2 and "another tokenizer" in err


def test_an_unknown_run_is_one_clear_error(ran):
    job_file, record = ran
    code, out, err = run_cli("cost", job_file, "--profile", COMPUTE, "--from-run", "nope")
    assert code == 2 and out == ""
    assert "no such run record" in err and record.stem in err


def test_cost_on_s3_reads_inputs_and_writes_nothing(s3, corpus):
    s3.bucket("raw")
    s3.bucket("out")
    for path in corpus.raw.iterdir():
        s3.put(f"s3://raw/corpus/{path.name}", path.read_bytes())
    s3.put("s3://raw/tokenizer.json", corpus.tokenizer.read_bytes())
    job = make_job("s3://raw/corpus/", "s3://raw/tokenizer.json", "s3://out/tokens/v1/",
                   **{"plan.target_unit_bytes": 200_000})
    path = corpus.root / "s3-job.yaml"
    path.write_text(yaml.safe_dump(job))
    data = cost_json(path, "--profile", COMPUTE, "--sample-bytes", "300KB")
    assert data["tokens"] > 0 and data["calibration"]["source"] == "sample"
    assert s3.listing("s3://out/") == {}
