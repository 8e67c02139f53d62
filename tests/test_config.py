"""The job file: defaults, unknown keys with the nearest valid one, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import auto_unit_bytes, load_job, parse_job
from pipelines.errors import ConfigError

MINIMAL = {"name": "j", "input": {"uri": "s3://raw/x/"}, "tokenizer": {"path": "t.json"},
           "output": {"uri": "s3://out/x/"}}


def test_defaults_are_documented_values():
    job = parse_job(MINIMAL)
    assert job.engine.kind == "dask" and job.output.format == "megatron"
    assert job.on_error == "fail" and job.input.format == "auto"
    assert job.plan.target_unit_bytes == "auto"
    assert job.tokenizer.eos == "<|endoftext|>"
    assert job.tokenizer.backend == "auto" and job.tokenizer.split_special_tokens is True


def test_auto_unit_size_follows_the_input_within_bounds():
    mib = 2**20
    assert auto_unit_bytes(1) == 8 * mib
    assert auto_unit_bytes(96 * mib) == 8 * mib
    assert auto_unit_bytes(4 * 1024 * mib) == 32 * mib
    assert auto_unit_bytes(2**40) == 256 * mib
    sizes = [auto_unit_bytes(n * 2**30) for n in range(1, 100)]
    assert sizes == sorted(sizes)


def test_unit_size_and_backend_values():
    job = parse_job({**MINIMAL, "plan": {"target_unit_bytes": "64MiB"},
                     "tokenizer": {"path": "t.json", "backend": "hf"}})
    assert job.plan.target_unit_bytes == 64 * 2**20 and job.tokenizer.backend == "hf"
    with pytest.raises(ConfigError, match="plan.target_unit_bytes"):
        parse_job({**MINIMAL, "plan": {"target_unit_bytes": "lots"}})
    with pytest.raises(ConfigError, match="tokenizer.backend"):
        parse_job({**MINIMAL, "tokenizer": {"path": "t.json", "backend": "fast"}})


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError) as err:
        parse_job({**MINIMAL, "input": {"uri": "x", "text_feild": "body"}}, source="job.yaml")
    msg = str(err.value)
    assert msg.startswith("job.yaml: ") and "unknown key 'input.text_feild'" in msg
    assert "did you mean 'input.text_field'" in msg


def test_missing_and_wrong_values_are_named():
    with pytest.raises(ConfigError) as err:
        parse_job({"name": "j", "input": {"uri": "x"}, "tokenizer": {"path": "t"},
                   "output": {"uri": "o", "format": "tfrecord"}})
    assert "output.format" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_job({"name": "j", "input": {"uri": "x"}, "output": {"uri": "o"}})
    assert "'tokenizer' is required" in str(err.value)


def test_sizes_accept_units():
    job = parse_job({**MINIMAL, "plan": {"target_unit_bytes": "64MiB"}})
    assert job.plan.target_unit_bytes == 64 * 2**20
    with pytest.raises(ConfigError):
        parse_job({**MINIMAL, "plan": {"target_unit_bytes": "lots"}})


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path):
    (tmp_path / "jobs").mkdir()
    path = tmp_path / "jobs" / "j.yaml"
    path.write_text("name: j\ninput: {uri: raw/*.jsonl}\ntokenizer: {path: ../t.json}\n"
                    "output: {uri: s3://out/x/}\n")
    job = load_job(path)
    assert job.input.uri == str(tmp_path / "jobs" / "raw" / "*.jsonl")
    assert job.tokenizer.path == str(tmp_path / "t.json")
    assert job.output.uri == "s3://out/x/"


def test_bad_yaml_names_line(tmp_path: Path):
    path = tmp_path / "j.yaml"
    path.write_text("name: j\ninput: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert "line" in str(err.value) and "YAML" in str(err.value)


def test_shipped_job_files_parse():
    for path in sorted(Path(__file__).parent.parent.joinpath("jobs").glob("*.yaml")):
        load_job(path)
