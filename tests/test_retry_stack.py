"""The retry stack's table (storage package docstring, README) against the constants.

Every figure is computed here from the constant it comes from: botocore's settings and
backoff, s3fs's retries and sleeps, the storage layer's RetryPolicy, the engines' unit
attempts and consecutive-failure stop, the worker-loss limits, and the nightly DAG's
Airflow retries (read from the DAG file without importing Airflow). Change one and
this fails until the table says the new numbers.
"""

from __future__ import annotations

import ast
import inspect
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines import storage
from pipelines.config import EngineConfig
from pipelines.engines import limits

REPO = Path(__file__).resolve().parent.parent
NIGHTLY_DAG = REPO / "jobs" / "airflow" / "tokenyard_nightly.py"
LAYERS = ("botocore", "s3fs", "RetryPolicy", "engine", "worker loss", "Airflow")


def _dag_retries(path: Path) -> tuple[int, float]:
    """(retries, retry_delay in seconds) of a DAG file's ``default_args``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if "retries" in keys and "retry_delay" in keys:
                values = dict(zip(keys, node.values))
                delay = values["retry_delay"]
                assert isinstance(delay, ast.Call) and delay.func.id == "timedelta"
                kwargs = {k.arg: ast.literal_eval(k.value) for k in delay.keywords}
                return ast.literal_eval(values["retries"]), timedelta(**kwargs).total_seconds()
    raise AssertionError(f"{path} sets no default_args retries")


def _botocore_backoff() -> tuple[int, int]:
    from botocore.retries.standard import ExponentialBackoff

    return ExponentialBackoff._BASE, ExponentialBackoff._MAX_BACKOFF


def stack() -> dict[str, float]:
    """Each layer's worst case in seconds, from the constants."""
    botocore_tries = storage.S3_CONFIG["retries"]["max_attempts"] + 1  # it counts retries
    per_try = storage.S3_CONFIG["connect_timeout"] + storage.S3_CONFIG["read_timeout"]
    base, cap = _botocore_backoff()
    botocore = botocore_tries * per_try + sum(min(base ** (n - 1), cap)
                                              for n in range(1, botocore_tries))
    # s3fs._error_wrapper sleeps min(1.7**i * 0.1, 15) after each failed call i
    s3fs = storage.S3FS_RETRIES * botocore + sum(min(1.7 ** i * 0.1, 15)
                                                 for i in range(storage.S3FS_RETRIES))
    policy = storage.DEFAULT_RETRY.worst_case_s(s3fs)
    engine = limits.MAX_CONSECUTIVE_TRANSIENT * policy
    retries, delay = _dag_retries(NIGHTLY_DAG)
    airflow = (retries + 1) * engine + retries * delay
    return {"botocore": botocore, "s3fs": s3fs, "RetryPolicy": policy, "engine": engine,
            "Airflow": airflow}


def _figure(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".") + " s"


def _docstring_rows() -> dict[str, str]:
    """Layer -> the text of its rows in the storage package docstring's table."""
    doc = storage.__doc__
    table = doc[doc.index("    layer        tries"):].split("\n\n", 1)[0].splitlines()[2:]
    rows: dict[str, str] = {}
    for line in table:
        name = next((layer for layer in LAYERS if line[4:].startswith(layer)), None)
        if name is not None:
            current = name
            rows[current] = line
        else:
            rows[current] += " " + line.strip()
    return rows


def _readme_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### The retry stack"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("*") in LAYERS:
            rows[cells[0].strip("*")] = cells
    return rows


def test_the_constants_give_the_figures_the_tables_show():
    figures = stack()
    assert figures == pytest.approx({"botocore": 140, "s3fs": 280.27, "RetryPolicy": 310.27,
                                     "engine": 1861.62, "Airflow": 6184.86})
    doc, readme = _docstring_rows(), _readme_rows()
    assert set(doc) == set(readme) == set(LAYERS)
    for layer, seconds in figures.items():
        assert doc[layer].rstrip().endswith(_figure(seconds)), (layer, doc[layer])
        assert readme[layer][-1] == _figure(seconds), (layer, readme[layer])
    assert doc["worker loss"].split()[-2:] == ["no", "waits"]
    assert readme["worker loss"][-1] == "no waits"


def test_the_tables_name_the_tries_each_constant_allows():
    retries, delay = _dag_retries(NIGHTLY_DAG)
    botocore_tries = storage.S3_CONFIG["retries"]["max_attempts"] + 1
    per_try = storage.S3_CONFIG["connect_timeout"] + storage.S3_CONFIG["read_timeout"]
    policy, unit_tries = storage.DEFAULT_RETRY, EngineConfig.model_fields["max_attempts"].default
    in_a_row = limits.MAX_CONSECUTIVE_TRANSIENT
    dask, spark, local = (limits.DASK_ALLOWED_FAILURES, limits.SPARK_TASK_MAX_FAILURES,
                          limits.LOCAL_POOL_RESTARTS)
    short = {  # the docstring's one-line rows
        "botocore": [f"{botocore_tries} per request, {per_try} s each"],
        "s3fs": [f"{storage.S3FS_RETRIES} per call"],
        "RetryPolicy": [f"{policy.attempts} per operation, until {policy.deadline_s:g} s"],
        "engine": [f"{unit_tries} per unit, {in_a_row} in a row"],
        "worker loss": [f"{dask} Dask, {spark} Spark, {local} local"],
        "Airflow": [f"{retries + 1} per task (retries: {retries})",
                    f"{delay / 60:g} + {delay / 60:g} min"],
    }
    long = {  # the README's
        "botocore": [f"{botocore_tries} per request", f"`max_attempts` {botocore_tries - 1}",
                     f"{storage.S3_CONFIG['connect_timeout']} s to connect",
                     f"{storage.S3_CONFIG['read_timeout']} s of read timeout"],
        "s3fs": [f"{storage.S3FS_RETRIES} per call"],
        "RetryPolicy": [f"{policy.attempts} per operation",
                        f"deadline_s = {policy.deadline_s:g} s"],
        "engine": [f"{unit_tries} per unit", f"after {in_a_row} transient failures in a row"],
        "worker loss": [f"{dask} Dask worker deaths, {spark} Spark task failures, "
                        f"{local} local pool breaks"],
        "Airflow": [f"{retries + 1} per task (retries: {retries})"],
    }
    doc, readme = _docstring_rows(), _readme_rows()
    for layer in LAYERS:
        for text in short[layer]:
            assert text in doc[layer], (layer, text, doc[layer])
        for text in long[layer]:
            assert text in readme[layer][1], (layer, text, readme[layer][1])
    assert f"{delay / 60:g} + {delay / 60:g} min" in readme["Airflow"][2]


def test_the_backoff_formulas_are_the_libraries_own():
    """The table's sleeps are what botocore and s3fs do, in the versions installed."""
    import s3fs.core
    from botocore.configprovider import NEW_RETRIES_ENABLED

    assert _botocore_backoff() == (2, 20) and not NEW_RETRIES_ENABLED
    source = inspect.getsource(s3fs.core._error_wrapper)
    assert "for i in range(retries)" in source and "min(1.7**i * 0.1, 15)" in source


def test_botocore_max_attempts_counts_retries(monkeypatch):
    """S3_CONFIG's max_attempts 4 means 5 tries of a request (on a refused connection)."""
    import botocore.config
    import botocore.session
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = botocore.config.Config(**{k: dict(v) if isinstance(v, dict) else v
                                       for k, v in storage.S3_CONFIG.items()})
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", config=config)
    sent = []
    client.meta.events.register("before-send.s3.*", lambda **kw: sent.append(1))
    with pytest.raises(Exception, match="Could not connect"):
        client.head_object(Bucket="b", Key="k")
    assert len(sent) == storage.S3_CONFIG["retries"]["max_attempts"] + 1


def test_retry_policy_worst_case_is_the_deadline_plus_one_try():
    policy = storage.RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=8, deadline_s=30)
    assert policy.worst_case_s(1.0) == 4 * 1.0 + 0.5 + 1 + 2  # the deadline is not reached
    assert policy.worst_case_s(100.0) == 30 + 100.0
    assert [policy.delay_s(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 8]


def test_figures_read_as_the_tables_write_them():
    assert [_figure(s) for s in (140, 280.27, 6184.86, 0.5)] == \
        ["140 s", "280.27 s", "6184.86 s", "0.5 s"]
    assert re.fullmatch(r"\d+(\.\d+)? s", _figure(1861.62))
