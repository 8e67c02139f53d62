"""The command line as users get it wrong: one paragraph and the right exit status, never a
traceback (``--debug`` shows it, and changes nothing else); options that do nothing are
refused; what a run did is told truthfully."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import re
import tempfile
from pathlib import Path

import pytest
import yaml

import pipelines
from pipelines.cli import build_parser, main
from pipelines.testing.corpus import write_jsonl as write_corpus
from tests.helpers import REPO, make_job, write_jsonl

DOCS = [{"id": i, "text": f"command line document {i}. " * 20} for i in range(12)]


@pytest.fixture
def job_file(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "a.jsonl", DOCS[:6])
    write_jsonl(tmp_path / "raw" / "b.jsonl", DOCS[6:])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make_job(str(tmp_path / "raw"), str(tokenizer_file),
                                            str(tmp_path / "out"),
                                            **{"plan.target_unit_bytes": 1024})))
    return path


def cli(*args, cwd=REPO, env=None, timeout=300, **kw):
    proc = subprocess.run([sys.executable, "-m", "pipelines", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)
    proc.stderr = " ".join(proc.stderr.split())
    return proc


# -- the command line itself --------------------------------------------------------


def test_version_flag_prints_the_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tokenyard {pipelines.__version__}"
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared and declared.group(1) == pipelines.__version__


def test_every_argument_has_help_text():
    missing = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "tokenyard")
    assert missing == []


def test_restart_help_says_what_it_deletes():
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["run"]
                    .format_help().split())
    assert "even a committed dataset" in text and "saying what it deletes first" in text


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_goes_anywhere_and_keeps_the_exit_status(tmp_path, capsys, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: {uri: raw}\ntokenizer: {path: t}\noutput: {uri: 's3:/x'}\n")
    assert main(["run", str(bad)]) == 2
    plain = capsys.readouterr().err
    assert "Traceback" not in plain and "output.uri 's3:/x'" in " ".join(plain.split())
    argv = ["--debug", "run", str(bad)] if where == "before" else ["run", str(bad), "--debug"]
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_says_it_is_one_and_shows_its_traceback_only_with_debug(capsys, monkeypatch):
    import pipelines.cli.status as status

    def broken(args):
        return {}["fingerprint"]

    monkeypatch.setattr(status, "handle", broken)
    assert main(["status", "out"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "internal error in tokenyard (KeyError: 'fingerprint')" in err
    assert "Traceback" not in err and "--debug" in err
    assert main(["status", "out", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_bad_log_level_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("TOKENYARD_LOGGING_LEVEL", "LOUD")
    assert main(["status", "out"]) == 2
    assert "TOKENYARD_LOGGING_LEVEL 'LOUD' is not a log level" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["run", "JOB", "--workers", "0"], ["run", "JOB", "--workers", "two"],
    ["plan", "JOB", "--units", "-1"],
    ["train-tokenizer", "JOB", "--vocab-size", "0", "--output", "t.json"],
    ["train-tokenizer", "JOB", "--vocab-size", "300", "--output", "t.json",
     "--min-frequency", "-2"],
])
def test_invalid_option_values_are_usage_errors(job_file, capsys, argv):
    with pytest.raises(SystemExit) as done:
        main([str(job_file) if a == "JOB" else a for a in argv])
    assert done.value.code == 2 and "Traceback" not in capsys.readouterr().err


# -- options that do not apply ------------------------------------------------------


@pytest.mark.parametrize(("argv", "said"), [
    (["--engine", "local", "--scheduler", "tcp://127.0.0.1:8786"],
     "--scheduler is for engine dask"),
    (["--engine", "dask", "--master", "local[2]"], "--master is for engine spark"),
    (["--engine", "local", "--master", "local[2]"], "--master is for engine spark"),
    (["--profile", "cluster_specs/dask/general-1cpu.yaml"], "--profile is used only with"),
    (["--keep-cluster"], "--keep-cluster is used only with"),
    (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "3"],
     "--workers sizes an embedded cluster"),
    (["--engine", "spark", "--cluster", "kubernetes", "--profile", "p.yaml"],
     "--cluster kubernetes works with engine dask"),
])
def test_options_for_another_engine_are_refused(job_file, capsys, argv, said):
    assert main(["run", str(job_file), *argv]) == 2
    assert said in " ".join(capsys.readouterr().err.split())
    assert not (job_file.parent / "out").exists()


def test_job_file_settings_the_engine_ignores_are_warned_about(job_file, capsys):
    data = yaml.safe_load(job_file.read_text())
    data["engine"]["spark_master"] = "local[2]"
    data["engine"]["memory_per_worker"] = "2GiB"
    job_file.write_text(yaml.safe_dump(data))
    assert main(["run", str(job_file)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "does not use engine.spark_master" in err
    assert "engine.memory_per_worker (an embedded Dask LocalCluster only)" in err


# -- what plan and run say ----------------------------------------------------------


def test_plan_says_when_the_output_is_committed_or_another_jobs(job_file, capsys):
    assert main(["plan", str(job_file)]) == 0
    assert "empty: a run starts here" in capsys.readouterr().out
    assert main(["run", str(job_file)]) == 0
    capsys.readouterr()
    assert main(["plan", str(job_file)]) == 0
    assert "committed already (12 documents" in capsys.readouterr().out
    (job_file.parent / "out" / "manifest.json").unlink()
    shutil.rmtree(job_file.parent / "out" / "_units")
    assert main(["plan", str(job_file)]) == 0
    assert "0 of 8 units done: a run resumes" in capsys.readouterr().out
    assert main(["plan", str(job_file), "--on-error", "skip"]) == 0  # not output-shaping
    data = yaml.safe_load(job_file.read_text())
    data["tokenizer"]["eos"] = None
    job_file.write_text(yaml.safe_dump(data))
    assert main(["plan", str(job_file)]) == 0
    assert "holds another job's plan (option eos" in capsys.readouterr().out


def test_a_resumed_run_counts_only_its_own_tokens_as_throughput(job_file, capsys):
    out = job_file.parent / "out"
    assert main(["run", str(job_file)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    redo = manifest["shards"][1]
    (out / "manifest.json").unlink()
    (out / "_units" / f"{redo['unit']:06d}.json").unlink()
    assert main(["run", str(job_file)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    total = manifest["totals"]["tokens"]
    assert f"tokens {total:,}" in printed
    assert f"1 run now, {len(manifest['shards']) - 1} done before" in printed
    assert f"this run 1 unit(s), {redo['tokens']:,} tokens" in printed
    [record] = [json.loads(p.read_text()) for p in sorted((out / "_runs").glob("*.json"))][-1:]
    assert record["tokens"] == redo["tokens"] and record["dataset_tokens"] == total
    # the record keeps seconds to the millisecond, so a run of a tenth of a second can be a
    # few percent off; counting every unit's tokens would be off by the number of units
    assert record["tokens_per_s"] == pytest.approx(redo["tokens"] / record["seconds"], rel=0.1)
    assert len(manifest["shards"]) >= 3


def test_train_tokenizer_never_replaces_a_tokenizer_silently(job_file, tokenizer_file, capsys):
    before = tokenizer_file.read_bytes()
    assert main(["train-tokenizer", str(job_file), "--vocab-size", "300",
                 "--output", str(tokenizer_file)]) == 2
    assert "exists already" in " ".join(capsys.readouterr().err.split())
    assert tokenizer_file.read_bytes() == before


# -- clusters and engines -----------------------------------------------------------


def test_an_unreachable_scheduler_is_one_paragraph(job_file, capsys, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    assert main(["run", str(job_file), "--engine", "dask",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the Dask scheduler tcp://127.0.0.1:9" in err and "cannot be reached" in err
    assert "Traceback" not in err and not (job_file.parent / "out").exists()


def test_kubernetes_without_a_kubeconfig_is_one_paragraph(tmp_path, tokenizer_file):
    if importlib.util.find_spec("dask_kubernetes") is None:
        pytest.skip("needs dask-kubernetes: pip install 'tokenyard[kubernetes]'")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(make_job("s3://raw-bucket/x/", "s3://models/t.json",
                                           "s3://out-bucket/x/")))
    proc = cli("run", job, "--cluster", "kubernetes", "--profile",
               REPO / "cluster_specs/dask/general-1cpu.yaml", "--engine", "dask",
               env={"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")})
    assert proc.returncode == 2, proc.stderr
    assert "no usable Kubernetes credentials" in proc.stderr and "KUBECONFIG" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dask_task_failures_do_not_bury_the_message(job_file):
    (job_file.parent / "raw" / "zz.jsonl").write_text("{oops\n")
    proc = cli("run", job_file, "--engine", "dask")
    assert proc.returncode == 1
    assert "zz.jsonl, line 1: not valid JSON" in proc.stderr
    assert "Compute Failed" not in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_on_dask_prints_one_message(tmp_path, tokenizer_file):
    for i in range(8):
        write_corpus(tmp_path / "raw" / f"part-{i}.jsonl", 1_000_000, seed=i)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(make_job(str(tmp_path / "raw"), str(tokenizer_file),
                                           str(tmp_path / "out"),
                                           **{"engine.kind": "dask",
                                              "plan.target_unit_bytes": "200KiB",
                                              # units slow enough to be interrupted
                                              "tokenizer.backend": "hf"})))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", str(job)], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        for line in proc.stderr:  # wait until units are finishing, then press Ctrl-C
            seen.append(line)
            if line.startswith("unit "):
                break
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "interrupted: finished units are kept" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def _unprivileged(fn) -> int:
    """``fn()``'s exit status, run as an unprivileged user when the tests run as root (root
    may write anywhere): in a forked child that drops its privileges first (it can import
    nothing new from root's folders, so the caller loads what ``fn`` needs beforehand)."""
    if os.geteuid() != 0:
        return fn()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_read_only_output_folder_is_a_usage_error(tokenizer_bytes, capfd):
    root = Path(tempfile.mkdtemp(prefix="tokenyard-ro-"))
    try:
        root.chmod(0o755)
        write_jsonl(root / "raw" / "a.jsonl", DOCS)
        (root / "tokenizer.json").write_bytes(tokenizer_bytes)
        (root / "locked").mkdir()
        job = root / "job.yaml"
        job.write_text(yaml.safe_dump(make_job(str(root / "raw"), str(root / "tokenizer.json"),
                                               str(root / "locked" / "out"))))
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        assert main(["plan", str(job)]) == 0  # loads every module the run needs first
        (root / "locked").chmod(0o555)
        assert _unprivileged(lambda: main(["run", str(job)])) == 2
        err = " ".join(capfd.readouterr().err.split())
        assert "is not writable" in err and "Traceback" not in err
        assert list((root / "locked").iterdir()) == []
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)


@pytest.mark.spark
def test_spark_without_java_is_one_paragraph(job_file, tmp_path):
    proc = cli("run", job_file, "--engine", "spark", env={"JAVA_HOME": str(tmp_path / "none")})
    assert proc.returncode == 2, proc.stderr
    assert "a Spark session on local[2] could not be started" in proc.stderr
    assert "Java 17" in proc.stderr and "Traceback" not in proc.stderr
    assert not (job_file.parent / "out").exists()
