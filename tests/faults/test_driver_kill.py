"""The driver SIGKILLed during planning, mid-units and during the commit, repeatedly:
a manifest is never visible for an incomplete dataset, and a rerun always finishes
with the same bytes."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import yaml

from tests.faults.helpers import assert_verifies, local_tree
from tests.faults.kit import kill_tree, start_cli, wait_until


def _names(out: Path, sub: str) -> list[str]:
    d = out / sub
    return [p.name for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []


def _kill_when(out: Path, units: int, point: str, rng: random.Random):
    """A predicate that says when to kill for a kill point."""
    if point == "planning":
        delay = rng.uniform(0.2, 2.5)  # interpreter start, imports, listing, planning
        t0 = time.monotonic()
        return lambda: time.monotonic() - t0 > delay or (out / "_plan.json").exists()
    if point == "units":
        k = rng.randint(1, max(1, units - 2))
        have = len(_names(out, "_units"))
        return lambda: len(_names(out, "_units")) >= min(units, have + k)
    # the commit: every marker is there, the manifest is not yet
    return lambda: len(_names(out, "_units")) >= units


@pytest.mark.slow
def test_driver_killed_at_random_points_then_rerun(corpus48, tmp_path):
    out = tmp_path / "out"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(corpus48.job(str(out), kind="local", workers=2)))
    rng = random.Random(11)
    points = ["planning", "units", "units", "commit", "planning", "units", "commit", "units"]
    kills, manifest_seen = 0, 0
    for point in points:
        proc = start_cli(["run", str(job_file)], env=dict(os.environ),
                         log_path=tmp_path / "driver.log")
        due = _kill_when(out, corpus48.units, point, rng)
        hit = wait_until(lambda: due() or proc.poll() is not None, timeout_s=120)
        finished = proc.poll() is not None
        kill_tree(proc)
        kills += not finished
        assert hit
        # the reader's view at the kill point
        if (out / "manifest.json").exists():
            manifest_seen += 1
            assert_verifies(str(out))
        if finished:
            break
    print(f"\ndriver kills {kills}, manifests seen at kill points {manifest_seen}")
    assert kills >= 5
    proc = start_cli(["run", str(job_file)], env=dict(os.environ),
                     log_path=tmp_path / "driver.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    assert local_tree(out) == corpus48.tree
    assert_verifies(str(out))
