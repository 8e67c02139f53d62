"""The driver: plan a job, run its pending units on an engine, commit the dataset.

``run_job`` is what the CLI and the Airflow DAG call. It is resumable: units whose
markers are valid are skipped; a prefix that holds another job's plan is refused unless
``restart`` is set; a committed dataset reruns as a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import posixpath
import time
import uuid
from dataclasses import dataclass

from pipelines import commit as commit_mod
from pipelines import storage
from pipelines.config import JobConfig
from pipelines.engines import get_engine_class
from pipelines.errors import PlanMismatchError, RunFailedError, StorageNotFoundError, TokenizerError
from pipelines.plan import differences, make_plan
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import Plan, UnitOptions, dumps

log = logging.getLogger(__name__)


def storage_of(job: JobConfig) -> dict:
    s = job.storage
    return storage.storage_options(s.endpoint_url, s.region, s.anon, s.profile)


def read_tokenizer(job: JobConfig, storage_opts: dict) -> tuple[bytes, dict]:
    """The tokenizer file's bytes and its description for the plan and manifest."""
    from pipelines.tokenize import get_encoder

    path = job.tokenizer.path
    try:
        data = storage.read_bytes(path, storage_opts)
    except StorageNotFoundError:
        raise TokenizerError(
            f"the tokenizer file {path} does not exist.",
            hint="Set tokenizer.path to a tokenizers JSON file (local or s3://), or make one "
                 "with 'tokenyard train-tokenizer'.") from None
    encoder = get_encoder(data, eos=job.tokenizer.eos, bos=job.tokenizer.bos,
                          max_segment_chars=job.tokenizer.max_segment_chars)
    return data, {
        "name": posixpath.basename(path.rstrip("/")),
        "sha256": hashlib.sha256(data).hexdigest(),
        "vocab_size": encoder.vocab_size,
        "dtype": encoder.dtype.name,
        "eos": job.tokenizer.eos,
        "eos_id": encoder.eos_id,
        "bos": job.tokenizer.bos,
        "bos_id": encoder.bos_id,
    }


def unit_options(job: JobConfig, plan: Plan, storage_opts: dict) -> UnitOptions:
    return UnitOptions(
        fingerprint=plan.fingerprint,
        output_uri=job.output.uri.rstrip("/"),
        output_format=job.output.format,
        storage=storage_opts,
        tokenizer_path=job.tokenizer.path,
        tokenizer_sha256=plan.tokenizer["sha256"],
        eos=job.tokenizer.eos,
        bos=job.tokenizer.bos,
        text_field=job.input.text_field,
        id_field=job.input.id_field,
        batch_documents=job.tokenizer.batch_documents,
        max_segment_chars=job.tokenizer.max_segment_chars,
        on_error=job.on_error,
    )


def plan_job(job: JobConfig) -> Plan:
    """The plan a run would make; touches nothing."""
    storage_opts = storage_of(job)
    _, tokenizer = read_tokenizer(job, storage_opts)
    return make_plan(job, tokenizer, storage_opts)


@dataclass(frozen=True)
class RunSummary:
    output_uri: str
    run_id: str
    engine: str
    units: int
    units_run: int
    units_skipped: int
    documents: int
    tokens: int
    rejected: int
    records: int
    input_bytes: int
    seconds: float
    retries: int
    already_committed: bool
    manifest: dict

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def restart_prefix(output_uri: str, storage_opts: dict) -> None:
    """Delete what a previous job left under the prefix (manifest first)."""
    for name in ("manifest.json", "_plan.json"):
        storage.remove(storage.join(output_uri, name), storage_opts)
    for sub in ("_units", "shards", "rejects"):
        storage.remove(storage.join(output_uri, sub), storage_opts, recursive=True)


def prepare(job: JobConfig, *, restart: bool = False) -> tuple[Plan, dict, bool]:
    """Plan, check against the saved plan, save it; returns (plan, storage, committed)."""
    storage_opts = storage_of(job)
    output_uri = job.output.uri.rstrip("/")
    _, tokenizer = read_tokenizer(job, storage_opts)
    plan = make_plan(job, tokenizer, storage_opts)
    saved = commit_mod.load_plan(output_uri, storage_opts)
    if saved is not None and restart:
        log.warning("restarting %s: deleting what earlier runs wrote there", output_uri)
        restart_prefix(output_uri, storage_opts)
        saved = None
    if saved is not None and saved.fingerprint != plan.fingerprint:
        raise PlanMismatchError(output_uri, differences(saved, plan))
    if saved is None:
        storage.write_bytes(commit_mod.plan_uri(output_uri), plan.to_json(), storage_opts)
    manifest = commit_mod.load_manifest(output_uri, storage_opts)
    committed = manifest is not None and manifest.get("fingerprint") == plan.fingerprint
    return plan, storage_opts, committed


def run_job(job: JobConfig, *, restart: bool = False, progress: Progress = NO_PROGRESS,
            engine_kwargs: dict | None = None) -> RunSummary:
    """Run a job to a committed dataset (or resume it); raises RunFailedError."""
    started = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    output_uri = job.output.uri.rstrip("/")
    plan, storage_opts, committed = prepare(job, restart=restart)
    if committed:
        manifest = commit_mod.load_manifest(output_uri, storage_opts)
        totals = manifest["totals"]
        progress.note(f"{output_uri} is committed already; nothing to do")
        return RunSummary(output_uri, run_id, job.engine.kind, len(plan.units), 0,
                          len(plan.units), totals["documents"], totals["tokens"],
                          totals["rejected"], totals["records"], totals["input_bytes"],
                          time.monotonic() - started, 0, True, manifest)
    done = commit_mod.done_units(plan, output_uri, storage_opts)
    pending = [u for u in plan.units if u.index not in done]
    progress.start(plan, len(pending), list(done.values()))
    options = unit_options(job, plan, storage_opts)
    engine_cls = get_engine_class(job.engine.kind)
    kwargs = {"job_name": job.name, **(engine_kwargs or {})}
    retries = 0
    try:
        if pending:
            with engine_cls(job.engine, progress, **kwargs) as engine:
                outcome = engine.run(options, pending)
            retries = outcome.retries
            if outcome.failures:
                first = outcome.failures[min(outcome.failures)]
                raise RunFailedError(sorted(outcome.failures), first, output_uri)
            done.update(outcome.results)
        manifest = commit_mod.commit(plan, output_uri, storage_opts, done)
    finally:
        progress.close()
    totals = manifest["totals"]
    summary = RunSummary(
        output_uri=output_uri, run_id=run_id, engine=job.engine.kind, units=len(plan.units),
        units_run=len(pending), units_skipped=len(plan.units) - len(pending),
        documents=totals["documents"], tokens=totals["tokens"], rejected=totals["rejected"],
        records=totals["records"], input_bytes=totals["input_bytes"],
        seconds=time.monotonic() - started, retries=retries, already_committed=False,
        manifest=manifest)
    write_run_record(summary, job, storage_opts)
    return summary


def write_run_record(summary: RunSummary, job: JobConfig, storage_opts: dict) -> None:
    """``_runs/<run-id>.json``: when, where, how long; never credentials."""
    record = {
        "run_id": summary.run_id,
        "job": job.name,
        "engine": summary.engine,
        "workers": job.engine.workers,
        "host": platform.node(),
        "pid": os.getpid(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(summary.seconds, 3),
        "units_run": summary.units_run,
        "units_skipped": summary.units_skipped,
        "retries": summary.retries,
        "documents": summary.documents,
        "tokens": summary.tokens,
        "tokens_per_s": round(summary.tokens_per_s, 1),
        "input_mb_per_s": round(summary.input_bytes / 1e6 / summary.seconds, 3)
        if summary.seconds else 0.0,
    }
    uri = storage.join(summary.output_uri, "_runs", f"{summary.run_id}.json")
    try:
        storage.write_bytes(uri, dumps(record), storage_opts)
    except Exception:  # a run record is informative; the dataset is committed already
        log.warning("could not write the run record %s", uri, exc_info=True)
