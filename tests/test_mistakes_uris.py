"""Locations that are not what they look like: a usage error (exit 2), before any write.

``s3:/bucket/x`` (one slash short) or ``s3://`` (an empty variable) once wrote to a local
folder named ``s3:`` and reported "committed". Every location a user gives is checked
where it enters: the job file's URIs (and each entry of a list), the tokenizer path,
``--output``, the arguments of status and verify, endpoints and cluster addresses.
"""

from __future__ import annotations

import pytest
import yaml

from pipelines.cli import main
from pipelines.config import parse_job
from pipelines.errors import ConfigError
from tests.helpers import make_job, write_jsonl

#: values that look like URIs but are not valid, supported ones, with a word of the reason
BAD = {
    "s3:/bucket/x/": "must be followed by '//'",
    "s3:bucket/x": "must be followed by '//'",
    "s3:": "must be followed by '//'",
    "s3://": "names no bucket",
    "s3:///key/x": "names no bucket",
    "s3://${BUCKET}/x": "never expanded",
    "s3://b/x": "not a valid S3 bucket name",
    "s3://my bucket/x": "not a valid S3 bucket name",
    "s3://bucket//x/": "empty, '.' or '..' segment",
    "s3://bucket/a/../x": "empty, '.' or '..' segment",
    "file:/data/x": "must be followed by '//'",
    "file://relative/x": "without an absolute path",
    "gs://bucket/x": "does not support",
    "hdfs://namenode/x": "does not support",
    "http://host/x": "does not support",
    "C:/data/x": "looks like a URI",
    "s3//bucket/x": "without its colon",
    "S3://bucket/x": "schemes are lowercase",
    "data:v1/x": "looks like a URI",
    "": "is empty",
    " s3://bucket/x": "whitespace",
    "s3://bucket/x\n": "whitespace",
}

GOOD = ["s3://raw-bucket/books/", "s3a://raw-bucket/books", "file:///data/raw", "raw/x",
        "/abs/raw", "./data:v1/x", "s3://raw-bucket/books/**/x.jsonl"]


def job_with(tmp_path, **changes) -> dict:
    return make_job(str(tmp_path / "raw"), str(tmp_path / "tok.json"), str(tmp_path / "out"),
                    **changes)


@pytest.mark.parametrize("value", sorted(BAD))
@pytest.mark.parametrize("field", ["output.uri", "input.uri", "tokenizer.path"])
def test_bad_locations_in_the_job_file_are_usage_errors(tmp_path, field, value):
    with pytest.raises(ConfigError) as err:
        parse_job(job_with(tmp_path, **{field: value}), source="job.yaml")
    assert err.value.exit_code == 2
    text = str(err.value)
    assert text.startswith("job.yaml: ") and field in text and BAD[value] in text


@pytest.mark.parametrize("value", GOOD)
def test_valid_locations_are_accepted(tmp_path, value):
    job = parse_job(job_with(tmp_path, **{"input.uri": value}))
    assert job.input.uris


def test_every_entry_of_an_input_list_is_checked_and_all_problems_are_listed(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_job(job_with(tmp_path, **{"input.uri": ["s3://raw-bucket/a", "s3:/raw-bucket/b"],
                                        "output.uri": "s3://", "tokenizr": {}}))
    text = str(err.value)
    assert "input.uri[1] 's3:/raw-bucket/b'" in text and "output.uri 's3://'" in text
    assert "unknown key 'tokenizr'" in text  # a bad location does not hide other problems


@pytest.mark.parametrize("field", ["output.uri", "tokenizer.path"])
def test_outputs_and_the_tokenizer_take_no_globs(tmp_path, field):
    with pytest.raises(ConfigError, match="glob"):
        parse_job(job_with(tmp_path, **{field: "s3://out-bucket/x/*"}))
    with pytest.raises(ConfigError, match=r"'\*\*' inside a path segment"):
        parse_job(job_with(tmp_path, **{"input.uri": "raw/a**.jsonl"}))


@pytest.mark.parametrize(("key", "value", "said"), [
    ("storage.endpoint_url", "localhost:9000", "not an http:// or https:// URL"),
    ("storage.endpoint_url", "http://", "names no host"),
    ("storage.endpoint_url", "http://host:99999", "port"),
    ("engine.scheduler_address", "tcp//host:8786", "not a Dask scheduler address"),
    ("engine.scheduler_address", "http://host:8786", "does not speak"),
    ("engine.scheduler_address", "tcp://host:port", "port"),
    ("engine.spark_master", "locl[2]", "not a Spark master URL"),
    ("engine.spark_master", "spark://", "not a Spark master URL"),
    ("engine.dashboard_address", "8787", "not host:port"),
    ("engine.memory_per_worker", "lots", "not a size"),
])
def test_addresses_and_option_values_are_checked(tmp_path, key, value, said):
    with pytest.raises(ConfigError) as err:
        parse_job(job_with(tmp_path, **{key: value}))
    assert said in str(err.value) and err.value.exit_code == 2


@pytest.fixture
def runnable(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "a.jsonl", [{"id": 1, "text": "one document"}])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make_job(str(tmp_path / "raw"), str(tokenizer_file),
                                            str(tmp_path / "out"))))
    return path


@pytest.mark.parametrize("output", ["s3:/bucket/x/", "s3://", "s3:", "gs://bucket/x", ""])
def test_a_bad_output_flag_writes_nothing_anywhere(runnable, tmp_path, monkeypatch, capsys,
                                                   output):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(runnable), "--output", output]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--output {output!r}" in err or (not output and "--output is empty" in err)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no s3: folder, no out/


@pytest.mark.parametrize("argv", [
    ["status", "s3:/bucket/x"], ["status", "gs://bucket/x"], ["verify", "s3://"],
    ["verify", "s3://out-bucket/x", "--endpoint-url", "localhost:9000"],
])
def test_status_and_verify_arguments_are_checked(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err


def test_status_of_a_file_is_a_usage_error(runnable, capsys):
    assert main(["status", str(runnable)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_bad_endpoint_variable_is_named(tmp_path, tokenizer_file, monkeypatch, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make_job("s3://raw-bucket/x/", str(tokenizer_file),
                                            str(tmp_path / "out"))))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:9000")
    assert main(["run", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the environment variable AWS_ENDPOINT_URL 'localhost:9000'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "said"), [
    (["--scheduler", "tcp//host"], "--scheduler 'tcp//host'"),
    (["--engine", "spark", "--master", "locl[2]"], "--master 'locl[2]'"),
])
def test_cluster_address_flags_are_checked(runnable, capsys, argv, said):
    assert main(["run", str(runnable), *argv]) == 2
    assert said in " ".join(capsys.readouterr().err.split())


def test_train_tokenizer_output_is_checked(runnable, capsys):
    assert main(["train-tokenizer", str(runnable), "--vocab-size", "300",
                 "--output", "s3:/models/t.json"]) == 2
    assert "--output 's3:/models/t.json'" in " ".join(capsys.readouterr().err.split())


def test_location_keys_compare_s3_spellings_and_resolve_local_links(tmp_path):
    from pipelines import uris

    assert uris.location_key("s3a://b-1/x/").contains(uris.location_key("s3://b-1/x/y"))
    assert not uris.location_key("s3://b-1/x").contains(uris.location_key("s3://b-1/xy"))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert uris.location_key(str(tmp_path / "real")).contains(
        uris.location_key(str(tmp_path / "link" / "out")))
