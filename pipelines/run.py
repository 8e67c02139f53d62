"""The driver: plan a job, run its pending units on an engine, commit the dataset.

``run_job`` is what the CLI and the Airflow DAG call. It is resumable: units whose
markers are valid are skipped; a prefix that holds another job's plan is refused unless
``restart`` is set; a committed dataset reruns as a no-op.

Tokenizer backend. The driver chooses it (:func:`pipelines.identity.choose_backend`)
while the engine's workers start, and says which and why (progress note, log, run
record). The backend is not part of the fingerprint: output bytes are the same
whichever ran, so a run may resume on the other one. When a unit's identity check
finds fastokens disagreeing with HF under ``auto``, the run switches to HF: it records
the switch in ``_backend.json`` (so every later run of this dataset uses HF too),
drops every unit's marker, since the others were made by the same fastokens, and runs
them all again with HF.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import posixpath
import time
import uuid
from dataclasses import dataclass

from pipelines import commit as commit_mod
from pipelines import storage, worker_env
from pipelines.config import JobConfig
from pipelines.engines import get_engine_class
from pipelines.errors import (BackendMismatchError, ConfigError, PlanMismatchError,
                              RunFailedError, StorageNotFoundError, TokenizerError)
from pipelines.identity import BackendChoice, choose_backend
from pipelines.plan import differences, make_plan
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import Plan, UnitOptions, dumps
from pipelines.task import backend_switch_uri

log = logging.getLogger(__name__)

#: units read, and characters taken from them, for the backend's qualification sample
QUALIFY_SAMPLE_UNITS = 8
QUALIFY_SAMPLE_BYTES = 128 * 2**10


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


def unit_options(job: JobConfig, plan: Plan, storage_opts: dict,
                 backend: str = "hf") -> UnitOptions:
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
        backend=backend,
        requested_backend=job.tokenizer.backend,
        split_special_tokens=job.tokenizer.split_special_tokens,
        batch_chars=job.tokenizer.batch_chars,
    )


def choose_job_backend(job: JobConfig, plan: Plan, storage_opts: dict,
                       runner=None) -> BackendChoice:
    """The backend a run of this job uses and why; see :mod:`pipelines.identity`.

    ``runner(fn, *args)`` runs the identity check where the engine says (a local
    worker has both backends loaded already); in this process by default.
    """
    from pipelines.sample import sample_texts

    output_uri = job.output.uri.rstrip("/")
    requested = job.tokenizer.backend
    switched = _backend_switch(output_uri, storage_opts)
    if switched is not None and requested != "hf":
        if requested == "fastokens":
            raise ConfigError(
                f"tokenizer.backend is fastokens, but this dataset switched to hf after "
                f"fastokens disagreed with HF ({switched}).",
                hint="Set tokenizer.backend to auto or hf to finish it, or start over with "
                     "--restart.")
        return BackendChoice(requested, "hf", f"an earlier run of this dataset switched to "
                                              f"hf: {switched}")
    data = storage.read_bytes(job.tokenizer.path, storage_opts)
    options = unit_options(job, plan, storage_opts)
    return choose_backend(
        requested, data.decode("utf-8"), plan.tokenizer["sha256"], name=job.tokenizer.path,
        split_special_tokens=job.tokenizer.split_special_tokens,
        sample=lambda: sample_texts(plan, options, QUALIFY_SAMPLE_BYTES,
                                    max_units=QUALIFY_SAMPLE_UNITS),
        **({"runner": runner} if runner is not None else {}))


def _backend_switch(output_uri: str, storage_opts: dict) -> str | None:
    try:
        raw = storage.read_bytes(backend_switch_uri(output_uri), storage_opts)
    except StorageNotFoundError:
        return None
    try:
        return str(json.loads(raw).get("reason", "a mismatch"))
    except ValueError:
        return "a mismatch"


def plan_job(job: JobConfig) -> Plan:
    """The plan a run would make; touches nothing."""
    storage_opts = storage_of(job)
    _, tokenizer = read_tokenizer(job, storage_opts)
    saved = commit_mod.load_plan(job.output.uri.rstrip("/"), storage_opts)
    return make_plan(_with_saved_unit_size(job, saved), tokenizer, storage_opts)


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
    #: the tokenizer backend that ran, and why (None when no unit ran)
    backend: str | None = None
    backend_reason: str | None = None
    #: seconds the driver spent qualifying the backend, the units spent in workers, and
    #: the units' identity checks spent of that
    qualification_seconds: float = 0.0
    unit_seconds: float = 0.0
    check_seconds: float = 0.0
    checked_documents: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def restart_prefix(output_uri: str, storage_opts: dict) -> None:
    """Delete what a previous job left under the prefix (manifest first)."""
    for name in ("manifest.json", "_plan.json"):
        storage.remove(storage.join(output_uri, name), storage_opts)
    storage.remove(backend_switch_uri(output_uri), storage_opts)
    for sub in ("_units", "shards", "rejects"):
        storage.remove(storage.join(output_uri, sub), storage_opts, recursive=True)


def prepare(job: JobConfig, *, restart: bool = False) -> tuple[Plan, dict, bool]:
    """Plan, check against the saved plan, save it; returns (plan, storage, committed)."""
    storage_opts = storage_of(job)
    output_uri = job.output.uri.rstrip("/")
    _, tokenizer = read_tokenizer(job, storage_opts)
    saved = commit_mod.load_plan(output_uri, storage_opts)
    if saved is not None and restart:
        log.warning("restarting %s: deleting what earlier runs wrote there", output_uri)
        restart_prefix(output_uri, storage_opts)
        saved = None
    job = _with_saved_unit_size(job, saved)
    plan = make_plan(job, tokenizer, storage_opts)
    if saved is not None and saved.fingerprint != plan.fingerprint:
        raise PlanMismatchError(output_uri, differences(saved, plan))
    if saved is None:
        storage.write_bytes(commit_mod.plan_uri(output_uri), plan.to_json(), storage_opts)
    manifest = commit_mod.load_manifest(output_uri, storage_opts)
    committed = manifest is not None and manifest.get("fingerprint") == plan.fingerprint
    return plan, storage_opts, committed


def _with_saved_unit_size(job: JobConfig, saved: Plan | None) -> JobConfig:
    """Under ``target_unit_bytes: auto``, a dataset keeps the unit size it was planned
    with, so that a rerun resumes it even after the input grew or the rule changed."""
    if saved is None or job.plan.target_unit_bytes != "auto":
        return job
    size = saved.options.get("target_unit_bytes")
    return job.with_overrides(**{"plan.target_unit_bytes": size}) if isinstance(size, int) \
        else job


def run_job(job: JobConfig, *, restart: bool = False, progress: Progress = NO_PROGRESS,
            engine_kwargs: dict | None = None) -> RunSummary:
    """Run a job to a committed dataset (or resume it); raises RunFailedError."""
    started = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    output_uri = job.output.uri.rstrip("/")
    # the driver's own encoding (the backend's checks) runs on one thread: the cores are
    # the workers'
    worker_env.apply()
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
    engine_cls = get_engine_class(job.engine.kind)
    kwargs = {"job_name": job.name, **(engine_kwargs or {})}
    if engine_cls.name == "local":
        # workers load the tokenizer while the driver checks the backend
        kwargs.setdefault("preload", unit_options(job, plan, storage_opts))
    stats = _RunStats()
    choice: BackendChoice | None = None
    try:
        if pending:
            with engine_cls(job.engine, progress, **kwargs) as engine:
                choice = choose_job_backend(job, plan, storage_opts,
                                            getattr(engine, "call", None))
                progress.note(f"tokenizer backend: {choice.backend} ({choice.reason})")
                log.info("tokenizer backend %s: %s", choice.backend, choice.reason)
                options = unit_options(job, plan, storage_opts, choice.backend)
                outcome = engine.run(options, pending)
                stats.add(outcome)
                mismatch = _mismatch_of(outcome)
                if mismatch is not None and options.requested_backend == "auto":
                    choice = _switch_to_hf(choice, mismatch, output_uri, storage_opts, progress)
                    done = {}
                    pending = list(plan.units)
                    outcome = engine.run(dataclasses.replace(options, backend="hf"), pending)
                    stats.add(outcome)
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
        seconds=time.monotonic() - started, retries=stats.retries, already_committed=False,
        manifest=manifest, backend=choice.backend if choice else None,
        backend_reason=choice.reason if choice else None,
        qualification_seconds=choice.qualification_seconds if choice else 0.0,
        unit_seconds=stats.unit_seconds, check_seconds=stats.check_seconds,
        checked_documents=stats.checked_documents)
    write_run_record(summary, job, storage_opts)
    return summary


@dataclass
class _RunStats:
    """What the units of this run measured, summed over the engine's runs."""

    retries: int = 0
    unit_seconds: float = 0.0
    check_seconds: float = 0.0
    checked_documents: int = 0

    def add(self, outcome) -> None:
        self.retries += outcome.retries
        for result in outcome.results.values():
            self.unit_seconds += result.seconds
            self.check_seconds += result.check_seconds
            self.checked_documents += result.checked_documents


def _mismatch_of(outcome) -> BackendMismatchError | None:
    found = [e for _, e in sorted(outcome.failures.items())
             if isinstance(e, BackendMismatchError)]
    return found[0] if found else None


def _switch_to_hf(choice: BackendChoice, mismatch: BackendMismatchError, output_uri: str,
                  storage_opts: dict, progress: Progress) -> BackendChoice:
    """Record that this dataset uses HF from now on and drop every unit's marker."""
    reason = mismatch.message.split("; nothing of that unit")[0]
    progress.note(f"switching to the hf backend: {reason}; redoing every unit with hf")
    log.warning("switching %s to the hf backend: %s", output_uri, reason)
    storage.write_bytes(backend_switch_uri(output_uri),
                        dumps({"backend": "hf", "reason": reason}), storage_opts)
    storage.remove(storage.join(output_uri, "_units"), storage_opts, recursive=True)
    return BackendChoice(choice.requested, "hf", f"switched from fastokens: {reason}",
                         choice.qualification_seconds)


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
        "tokenizer_sha256": summary.manifest.get("tokenizer", {}).get("sha256"),
        "backend": summary.backend,
        "backend_reason": summary.backend_reason,
        "unit_seconds": round(summary.unit_seconds, 3),
        "qualification_seconds": round(summary.qualification_seconds, 3),
        "identity_check_seconds": round(summary.check_seconds, 3),
        "checked_documents": summary.checked_documents,
        "input_mb_per_s": round(summary.input_bytes / 1e6 / summary.seconds, 3)
        if summary.seconds else 0.0,
    }
    uri = storage.join(summary.output_uri, "_runs", f"{summary.run_id}.json")
    try:
        storage.write_bytes(uri, dumps(record), storage_opts)
    except Exception:  # a run record is informative; the dataset is committed already
        log.warning("could not write the run record %s", uri, exc_info=True)
