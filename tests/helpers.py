"""Plain helpers of the tests: the checkout's paths, job mappings, JSONL files and
output trees. Fixtures live in conftest.py; tests import these from here."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TOKENYARD_SHARED_DIR", REPO.parent / "shared"))


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def make_job(inp: str, tok: str, out: str, **extra) -> dict:
    """A job mapping for tests; ``extra`` sets dotted keys, e.g. ``{"engine.kind": "dask"}``."""
    job = {
        "name": "test-job",
        "input": {"uri": inp, "id_field": "id"},
        "tokenizer": {"path": tok},
        "output": {"uri": out},
        "plan": {"target_unit_bytes": "64KiB"},
        "engine": {"kind": "local", "workers": 2, "dashboard_address": "127.0.0.1:0"},
    }
    for key, value in extra.items():
        node = job
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return job


def local_tree(root: Path) -> dict[str, bytes]:
    """Every file under a local output prefix, except run records."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith("_runs")}


def set_spark_env(mp, endpoint: str) -> None:
    """What a Spark JVM and its Python workers must inherit (on ``mp``, a MonkeyPatch)
    before the session starts: the fake AWS chain, the loopback S3 endpoint, a loopback
    bind address. The JVM outlives its session, so every Spark test sets the same."""
    from pipelines.testing.s3 import AWS_ENV, AWS_ENV_REMOVED

    for key in AWS_ENV_REMOVED:
        mp.delenv(key, raising=False)
    for key, value in AWS_ENV.items():
        mp.setenv(key, value)
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
