"""The command line as a user meets it: the quickstart, plan, status, errors, training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml

from tests.helpers import REPO


def tokenyard(*args, cwd=REPO, timeout=300):
    """Run the CLI; error paragraphs are wrapped, so stderr comes back with spaces folded."""
    proc = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    proc.stderr = " ".join(proc.stderr.split())
    return proc


def quickstart_copy(tmp_path):
    jobs = tmp_path / "jobs"
    shutil.copytree(REPO / "jobs" / "quickstart", jobs / "quickstart")
    job = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    job["engine"]["dashboard_address"] = "127.0.0.1:0"
    (jobs / "quickstart.yaml").write_text(yaml.safe_dump(job))
    return jobs / "quickstart.yaml"


def test_quickstart_end_to_end(tmp_path):
    job = quickstart_copy(tmp_path)
    proc = tokenyard("run", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "Dask dashboard: http://127.0.0.1:" in proc.stderr
    assert "committed" in proc.stdout and "documents" in proc.stdout and "tokens/s" in proc.stdout
    out = tmp_path / "out" / "quickstart"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reconciliation"]["balanced"] and manifest["totals"]["documents"] > 1000
    assert len(manifest["shards"]) > 3

    status = tokenyard("status", str(out))
    assert status.returncode == 0 and "committed" in status.stdout
    assert f"{len(manifest['shards'])} done, 0 pending" in status.stdout

    again = tokenyard("run", str(job))
    assert again.returncode == 0 and "Nothing to do" in again.stdout


def test_plan_touches_nothing(tmp_path):
    job = quickstart_copy(tmp_path)
    proc = tokenyard("plan", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "units" in proc.stdout and "estimate" in proc.stdout and "part-000.jsonl" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2_with_one_paragraph(tmp_path):
    job = tmp_path / "bad.yaml"
    job.write_text("name: x\ninput: {uri: a, txt_field: t}\ntokenizer: {path: t}\n"
                   "output: {uri: o}\n")
    proc = tokenyard("run", str(job))
    assert proc.returncode == 2
    assert "did you mean 'input.text_field'" in proc.stderr and "Traceback" not in proc.stderr
    missing = tokenyard("run", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_failed_run_exits_1(tmp_path):
    job = quickstart_copy(tmp_path)
    (job.parent / "quickstart" / "raw" / "zz-bad.jsonl").write_text("{oops\n")
    proc = tokenyard("run", str(job), "--engine", "local")
    assert proc.returncode == 1
    assert "zz-bad.jsonl, line 1" in proc.stderr and "--on-error skip" in proc.stderr
    assert "Traceback" not in proc.stderr
    skip = tokenyard("run", str(job), "--engine", "local", "--on-error", "skip")
    assert skip.returncode == 0 and "rejected   1" in skip.stdout


def test_train_tokenizer_to_s3(s3, tmp_path):
    from tokenizers import Tokenizer

    s3.bucket("models")
    job = quickstart_copy(tmp_path)
    proc = tokenyard("train-tokenizer", str(job), "--vocab-size", "600", "--output",
                     "s3://models/qs/tokenizer.json", "--sample-bytes", "300KB")
    assert proc.returncode == 0, proc.stderr
    tok = Tokenizer.from_str(s3.fs.cat_file("models/qs/tokenizer.json").decode())
    assert tok.get_vocab_size() == 600 and tok.token_to_id("<|endoftext|>") == 0
    text = "A sample, with ünïcode and 123 numbers."
    assert tok.decode(tok.encode(text).ids) == text
