"""No credential reaches a log, marker, manifest, run record or error message; input
keys cannot steer output outside the output prefix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.config import parse_job
from pipelines.run import run_job
from pipelines.testing.s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from tests.faults.helpers import assert_verifies, make_job

SECRETS = (FAKE_ACCESS_KEY, FAKE_SECRET_KEY)


def _cli(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", "--debug", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=dict(os.environ))


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a credential leaked into {where}"


def test_no_credentials_in_outputs_logs_or_errors(corpus12, s3, tmp_path):
    assert os.environ["AWS_ACCESS_KEY_ID"] == FAKE_ACCESS_KEY
    s3.bucket("out")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(corpus12.job("s3://out/ds", kind="dask", workers=2)))
    runs = [
        _cli(["run", str(job_file)], tmp_path),                        # success
        _cli(["run", str(job_file)], tmp_path),                        # committed already
        _cli(["status", "s3://out/ds"], tmp_path),
        _cli(["verify", "s3://out/ds"], tmp_path),
        _cli(["run", str(job_file), "--output", "s3://no-such-bucket/x"], tmp_path),  # fails
        _cli(["verify", "s3://no-such-bucket/x"], tmp_path),
    ]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    assert runs[4].returncode != 0
    for i, proc in enumerate(runs):
        _assert_clean(proc.stdout + proc.stderr, f"the output of command {i}")
    assert "DEBUG" in runs[0].stderr  # debug logging was on
    for name, data in s3.listing("s3://out/ds").items():
        _assert_clean(data.decode("utf-8", "replace"), name)
    # the error of an unreachable endpoint names the endpoint, not the keys
    bad = parse_job(corpus12.job("s3://out/other", **{"storage.endpoint_url":
                                                      "http://127.0.0.1:9"}))
    try:
        run_job(bad)
    except Exception as err:  # any failure will do; its text is what matters
        _assert_clean(repr(err) + str(err), "an error message")
        assert "127.0.0.1:9" in str(err)
    else:
        raise AssertionError("a run with a dead output endpoint succeeded")


def test_hostile_input_keys_stay_inside_the_output_prefix(s3, tokenizer_file, tmp_path):
    bucket = s3.bucket("raw")
    keys = ["in/a file with spaces.jsonl", "in/ünïcödé-日本語.jsonl", "in/x/../y.jsonl",
            "in/" + "long" * 200 + ".jsonl", "in/..jsonl", "in/%2e%2e/escape.jsonl"]
    for i, key in enumerate(keys):
        body = f'{{"text": "document {i} from {key}"}}\nnot json {i}\n'.encode()
        s3.put(f"{bucket}/{key}", body)
    s3.bucket("out")
    job = make_job(f"{bucket}/in/", str(tokenizer_file), "s3://out/prefix/ds",
                   target=1_000_000, on_error="skip")
    summary = run_job(parse_job(job))
    # S3 and moto may normalise some of these keys; every record is accounted for
    assert summary.documents >= 1 and summary.records == summary.documents + summary.rejected
    everything = s3.fs.find("out")
    assert everything and all(p.startswith("out/prefix/ds/") for p in everything), everything
    names = [p[len("out/prefix/ds/"):] for p in everything]
    allowed = ("_plan.json", "manifest.json", "_units/", "shards/", "rejects/", "_runs/")
    assert all(n.startswith(allowed) and ".." not in n.split("/") for n in names), names
    assert_verifies("s3://out/prefix/ds")
    # local output too
    out = tmp_path / "local-out"
    run_job(parse_job(make_job(f"{bucket}/in/", str(tokenizer_file), str(out),
                               target=1_000_000, on_error="skip")))
    inside = [p for p in Path(tmp_path).rglob("*") if p.is_file()
              and not p.is_relative_to(out) and p.name != "tokenizer.json"]
    assert inside == []
