"""The Dask dashboard shows the pipeline's own work: unit-named tasks and counters."""

from __future__ import annotations

import urllib.request

from distributed import get_task_stream

from pipelines.config import parse_job
from pipelines.engines.dask import DaskEngine
from pipelines.plan import make_plan
from pipelines.run import read_tokenizer, storage_of, unit_options
from pipelines.testing.corpus import write_jsonl
from tests.helpers import make_job


def test_task_names_and_prometheus_counters(tmp_path, tokenizer_file):
    write_jsonl(tmp_path / "raw" / "a.jsonl", 200_000, seed=7)
    job = parse_job(make_job(str(tmp_path / "raw"), str(tokenizer_file), str(tmp_path / "out"),
                             **{"engine.kind": "dask", "engine.workers": 2}))
    opts = storage_of(job)
    plan = make_plan(job, read_tokenizer(job, opts)[1], opts)
    options = unit_options(job, plan, opts)
    with DaskEngine(job.engine, job_name=job.name) as engine:
        with get_task_stream(engine.client) as stream:
            outcome = engine.run(options, list(plan.units))
        metrics_url = engine.dashboard_link.replace("/status", "/metrics")
        with urllib.request.urlopen(metrics_url, timeout=10) as resp:
            metrics = resp.read().decode()
        prefixes = engine.client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert engine.dashboard_link is None  # closed
    keys = sorted({t["key"] for t in stream.data})
    assert keys == sorted(f"tokenize-{u.name}-{plan.fingerprint[:8]}" for u in plan.units)
    assert "tokenize" in prefixes
    docs = sum(r.documents for r in outcome.results.values())
    tokens = sum(r.tokens for r in outcome.results.values())
    assert f'tokenyard_documents_total{{job="test-job"}} {float(docs)}' in metrics
    assert f'tokenyard_tokens_total{{job="test-job"}} {float(tokens)}' in metrics
    assert f'tokenyard_units_done_total{{job="test-job"}} {float(len(plan.units))}' in metrics
    assert "tokenyard_input_bytes_total" in metrics and "tokenyard_rejected_records_total" in metrics


def test_a_scheduler_without_prometheus_client_says_once_that_metrics_are_off(monkeypatch,
                                                                              caplog):
    """A user's scheduler image without prometheus_client: the run goes on, and the
    scheduler's log says why the dashboard's tokenyard counters stay empty."""
    import sys

    import pipelines.engines.dask as dask_engine
    from pipelines.engines.dask import METRICS_TOPIC, TokenyardMetrics

    monkeypatch.setattr(dask_engine, "_COUNTERS", None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    plugin = TokenyardMetrics()
    with caplog.at_level("WARNING", logger=dask_engine.__name__):
        for _ in range(3):
            plugin.log_event(METRICS_TOPIC, {"job": "j", "documents": 1})
    warnings = [r for r in caplog.records if "prometheus_client" in r.getMessage()]
    assert len(warnings) == 1 and "pip install prometheus-client" in warnings[0].getMessage()
