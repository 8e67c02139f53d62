"""Plain helpers of the cost tests: the shipped profiles, a small corpus with a job file,
and ``tokenyard cost`` run in-process."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import yaml

from pipelines.cli import main
from pipelines.testing.corpus import write_jsonl
from tests.helpers import REPO, SHARED, make_job

COMPUTE = str(REPO / "cluster_specs" / "dask" / "compute-1cpu.yaml")
GENERAL = str(REPO / "cluster_specs" / "dask" / "general-1cpu.yaml")
SPARK = str(REPO / "cluster_specs" / "spark" / "compute-8core.yaml")
TRACES = SHARED / "data" / "spot-traces"


class Corpus:
    """JSONL inputs (plain, .gz, .zst) and a tokenizer under a folder, and a job file."""

    def __init__(self, root: Path, tokenizer_bytes: bytes) -> None:
        self.root = root
        self.raw = root / "raw"
        self.records = 0
        for i, name in enumerate(("a.jsonl", "b.jsonl", "c.jsonl.gz", "d.jsonl.zst")):
            self.records += write_jsonl(self.raw / name, 400_000, seed=i, id_prefix=name)
        self.tokenizer = root / "tokenizer.json"
        self.tokenizer.write_bytes(tokenizer_bytes)
        self.out = root / "out"

    @property
    def input_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.raw.iterdir())

    def job_dict(self, **extra) -> dict:
        return make_job(str(self.raw), str(self.tokenizer), str(self.out),
                        **{"name": "cost-job", "plan.target_unit_bytes": 200_000, **extra})

    def job_file(self, path: Path | None = None, **extra) -> Path:
        path = path or self.root / "job.yaml"
        path.write_text(yaml.safe_dump(self.job_dict(**extra)))
        return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """``tokenyard ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def cost_json(*args: str) -> dict:
    code, out, err = run_cli("cost", *args, "--json")
    assert code == 0, err
    return json.loads(out)
