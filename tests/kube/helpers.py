"""Plain helpers of the Kubernetes tests: paths, the test job file, the distinctive fake
credentials that must never leak, and golden-file comparison."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.testing.s3 import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
JOB_FILE = Path(__file__).parent / "jobs" / "books.yaml"
FAKE_KEY_ID = FAKE_ACCESS_KEY
FAKE_SECRET = FAKE_SECRET_KEY


def _shared(name: str) -> Path | None:
    env = os.environ.get("TOKENYARD_SCHEMA_DIR") if name == "schemas" else None
    path = Path(env) if env else REPO.parent / "shared" / name
    return path if path.is_dir() else None


def check_golden(name: str, text: str) -> None:
    """Compare with tests/kube/golden/NAME; TOKENYARD_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("TOKENYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with TOKENYARD_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if the change is intended, rerun with "
        "TOKENYARD_UPDATE_GOLDEN=1 and review the diff")


def assert_no_credentials(text: str) -> None:
    for secret in (FAKE_KEY_ID, FAKE_SECRET, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_SESSION_TOKEN", "aws_secret", "AKIA"):
        assert secret not in text
