"""Races: a zombie attempt writing after the commit, two runs of one job at once, and a
different job pointed at a committed prefix."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from pipelines.config import parse_job
from pipelines.run import prepare, run_job, unit_options
from pipelines.task import run_unit
from pipelines import layout, storage
from tests.faults.helpers import assert_verifies, local_tree
from tests.faults.kit import start_cli


def test_zombie_attempt_after_commit_changes_nothing(corpus48, tmp_path):
    out = tmp_path / "out"
    job = parse_job(corpus48.job(str(out)))
    run_job(job)
    plan, opts, committed = prepare(job)
    assert committed
    options = unit_options(job, plan, opts)
    for unit in (plan.units[0], plan.units[len(plan.units) // 2], plan.units[-1]):
        # a late attempt that started before the marker existed: it writes everything again
        storage.remove(layout.marker_uri(str(out), unit.index), opts)
        run_unit(options, unit)
        # and one that sees the marker
        run_unit(options, unit)
    assert local_tree(out) == corpus48.tree
    assert_verifies(str(out))


def test_zombie_attempt_after_commit_on_s3(corpus48, s3, tmp_path):
    out = s3.bucket("out") + "/ds"
    job = parse_job(corpus48.job(out))
    run_job(job)
    before = s3.listing(out)
    plan, opts, _ = prepare(job)
    options = unit_options(job, plan, opts)
    unit = plan.units[3]
    s3.fs.rm(layout.marker_uri(out, unit.index))
    run_unit(options, unit)
    after = s3.listing(out)
    assert {k: v for k, v in after.items() if not k.startswith("_runs")} == \
        {k: v for k, v in before.items() if not k.startswith("_runs")}
    assert_verifies(out)


def test_two_runs_of_one_job_at_once_converge(corpus48, s3, tmp_path):
    out = s3.bucket("out") + "/ds"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(corpus48.job(out, kind="local", workers=1)))
    procs = [start_cli(["run", str(job_file)], env=dict(os.environ),
                       log_path=tmp_path / f"run{i}.log") for i in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], [(tmp_path / f"run{i}.log").read_text()[-2000:] for i in range(2)]
    got = {k: v for k, v in s3.listing(out).items() if not k.startswith("_runs")}
    assert got == corpus48.tree
    assert_verifies(out)


def test_a_different_job_is_refused_at_a_committed_prefix(corpus48, tmp_path):
    out = tmp_path / "out"
    run_job(parse_job(corpus48.job(str(out))))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(corpus48.job(str(out), **{"tokenizer.eos": None})))
    proc = subprocess.run([sys.executable, "-m", "pipelines", "run", str(other)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    said = " ".join(proc.stderr.split())
    assert "different job's plan" in said and "option eos" in said, said
    assert local_tree(out) == corpus48.tree
