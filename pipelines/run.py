"""The driver: plan a job, run its pending units on an engine, commit the dataset.

``run_job`` is what the CLI and the Airflow DAG call. It is resumable: units whose
markers are valid are skipped; a prefix that holds another job's plan is refused unless
``restart`` is set; a committed dataset reruns as a no-op.

Tokenizer backend. The driver chooses it (:func:`pipelines.identity.choose_backend`)
while the engine's workers start, and says which and why (progress note, log, run
record). The backend is not part of the fingerprint: output bytes are the same
whichever ran, so a run may resume on the other one. When a unit's identity check
finds fastokens disagreeing with HF under ``auto``, the run switches to HF: it records
the switch under the output prefix (so every later run of this dataset uses HF too),
drops every unit's marker, since the others were made by the same fastokens, and runs
them all again with HF.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import platform
import posixpath
import time
import uuid
from dataclasses import dataclass

from pipelines import commit as commit_mod
from pipelines import layout, storage, worker_env
from pipelines.config import JobConfig
from pipelines.engines import get_engine_class
from pipelines.errors import (
    BackendMismatchError,
    ConfigError,
    PlanMismatchError,
    RunFailedError,
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    TokenizerError,
    TransientStorageError,
)
from pipelines.identity import BackendChoice, choose_backend
from pipelines.plan import check_overlap, differences, make_plan
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.records import Manifest, Plan, TokenizerFacts, UnitOptions

log = logging.getLogger(__name__)

#: units read, and characters taken from them, for the backend's qualification sample
QUALIFY_SAMPLE_UNITS = 8
QUALIFY_SAMPLE_BYTES = 64 * 2**10


def storage_of(job: JobConfig) -> storage.StorageOptions:
    """The job's ``storage:`` section as the options every storage call takes."""
    s = job.storage
    return storage.StorageOptions(endpoint_url=s.endpoint_url, region=s.region, anon=s.anon,
                                  profile=s.profile)


def _tokenizer_folder(path: str, storage_options: storage.StorageOptions) -> TokenizerError:
    inside = storage.join(path, "tokenizer.json")
    hint = (f"Point tokenizer.path at the file inside it: {inside}."
            if storage.exists(inside, storage_options) else
            "Point tokenizer.path at a tokenizers JSON file (tokenizer.json), not its folder.")
    return TokenizerError(f"tokenizer.path {path} is a folder, not a tokenizers JSON file.",
                          hint=hint)


def read_tokenizer(job: JobConfig,
                   storage_options: storage.StorageOptions) -> tuple[bytes, TokenizerFacts]:
    """The tokenizer file's bytes and its description for the plan and manifest.

    A missing file, a folder, or a file tokenizers cannot load is the user's mistake
    (:class:`TokenizerError`, exit 2, naming ``tokenizer.path``); a storage failure keeps
    its class (transient failures stay transient, so they are retried).
    """
    from pipelines.tokenize import get_encoder

    path = job.tokenizer.path
    try:
        data = storage.read_bytes(path, storage_options)
    except (TransientStorageError, StorageAccessError):
        raise
    except StorageError as err:
        if storage.is_folder(path, storage_options):
            raise _tokenizer_folder(path, storage_options) from None
        if not isinstance(err, StorageNotFoundError):
            raise
        raise TokenizerError(
            f"the tokenizer file {path} does not exist.",
            hint="Set tokenizer.path to a tokenizers JSON file (local or s3://), or make one "
                 "with 'tokenyard train-tokenizer'.") from None
    encoder = get_encoder(data, eos=job.tokenizer.eos, bos=job.tokenizer.bos,
                          max_segment_chars=job.tokenizer.max_segment_chars,
                          name=f"tokenizer.path {path}")
    return data, TokenizerFacts(
        name=posixpath.basename(path.rstrip("/")),
        sha256=hashlib.sha256(data).hexdigest(),
        vocab_size=encoder.vocab_size,
        dtype=encoder.dtype.name,
        eos=job.tokenizer.eos,
        eos_id=encoder.eos_id,
        bos=job.tokenizer.bos,
        bos_id=encoder.bos_id,
    )


def unit_options(job: JobConfig, plan: Plan, storage_options: storage.StorageOptions,
                 backend: str = "hf") -> UnitOptions:
    return UnitOptions(
        fingerprint=plan.fingerprint,
        output_uri=job.output.uri.rstrip("/"),
        output_format=job.output.format,
        storage_options=storage_options,
        tokenizer_path=job.tokenizer.path,
        tokenizer_sha256=plan.tokenizer.sha256,
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


def choose_job_backend(job: JobConfig, plan: Plan, storage_options: storage.StorageOptions,
                       runner=None, *,
                       tokenizer_bytes: bytes | None = None,
                       ignore_switch: bool = False) -> BackendChoice:
    """The backend a run of this job uses and why; see :mod:`pipelines.identity`.

    ``runner(fn, *args)`` runs the identity check where the engine says (a worker has
    the backends loaded, or loads them for its units anyway); in this process by
    default. A dataset that switched to HF after a mismatch stays on HF unless
    ``ignore_switch`` (``--restart`` deletes the record of it).
    """
    from pipelines.sample import sample_texts

    output_uri = job.output.uri.rstrip("/")
    requested = job.tokenizer.backend
    switched = None if ignore_switch else layout.read_backend_switch(output_uri,
                                                                     storage_options)
    if switched is not None and requested != "hf":
        if requested == "fastokens":
            raise ConfigError(
                f"tokenizer.backend is fastokens, but this dataset switched to hf after "
                f"fastokens disagreed with HF ({switched}).",
                hint="Set tokenizer.backend to auto or hf to finish it, or start over with "
                     "--restart.")
        return BackendChoice(requested, "hf", f"an earlier run of this dataset switched to "
                                              f"hf: {switched}")
    if tokenizer_bytes is None:
        tokenizer_bytes = storage.read_bytes(job.tokenizer.path, storage_options)
    options = unit_options(job, plan, storage_options)
    return choose_backend(
        requested, tokenizer_bytes.decode("utf-8"), plan.tokenizer.sha256,
        name=job.tokenizer.path, split_special_tokens=job.tokenizer.split_special_tokens,
        sample=lambda: sample_texts(plan, options, QUALIFY_SAMPLE_BYTES,
                                    max_units=QUALIFY_SAMPLE_UNITS),
        **({"runner": runner} if runner is not None else {}))


@dataclass(frozen=True)
class Survey:
    """A job's plan and what its output prefix holds now; made without writing anything."""

    job: JobConfig
    plan: Plan
    storage_options: storage.StorageOptions
    #: the plan saved under the prefix by an earlier run, if any
    saved: Plan | None
    #: the manifest under the prefix, whichever job committed it
    manifest: Manifest | None
    #: the tokenizer file's bytes
    tokenizer_bytes: bytes = b""

    @property
    def output_uri(self) -> str:
        return self.job.output.uri.rstrip("/")

    @property
    def committed(self) -> bool:
        """This very job (same fingerprint) is committed under the prefix."""
        return self.manifest is not None and self.manifest.fingerprint == self.plan.fingerprint

    @property
    def differences(self) -> list[str]:
        """Why the saved plan is another job's; empty when it is this job's or absent."""
        if self.saved is None or self.saved.fingerprint == self.plan.fingerprint:
            return []
        return differences(self.saved, self.plan)

    def mismatch(self) -> PlanMismatchError:
        totals = self.manifest.totals if self.manifest is not None and \
            self.manifest.fingerprint == self.saved.fingerprint else None
        return PlanMismatchError(self.output_uri, self.differences, committed=totals)


def survey(job: JobConfig) -> Survey:
    """Plan the job and read what its output prefix holds; touches nothing.

    Everything a run can check before it writes is checked here: the locations, that
    the output cannot be read back as input (``check_overlap``), that a local output
    is a folder this user may write, the tokenizer, and the inputs.
    """
    storage_options = storage_of(job)
    output_uri = job.output.uri.rstrip("/")
    check_overlap(job)
    storage.check_output_folder(output_uri, storage_options, field="output.uri")
    data, tokenizer = read_tokenizer(job, storage_options)
    saved = layout.read_plan(output_uri, storage_options)
    plan = make_plan(_with_saved_unit_size(job, saved), tokenizer, storage_options)
    return Survey(job, plan, storage_options, saved,
                  layout.read_manifest(output_uri, storage_options), data)


def _with_saved_unit_size(job: JobConfig, saved: Plan | None) -> JobConfig:
    """Under ``target_unit_bytes: auto``, a dataset keeps the unit size it was planned
    with, so that a rerun resumes it even after the input grew or the rule changed."""
    if saved is None or job.plan.target_unit_bytes != "auto":
        return job
    size = saved.options.target_unit_bytes
    return job.with_overrides(**{"plan.target_unit_bytes": size}) if isinstance(size, int) \
        else job


def plan_job(job: JobConfig) -> Plan:
    """The plan a run would make; touches nothing."""
    return survey(job).plan


@dataclass(frozen=True)
class RunSummary:
    """What a run did. Totals (``documents``, ``tokens``, ...) are the whole dataset's,
    units finished by earlier runs included; ``run_*`` counts only this run's units, and
    ``tokens_per_s`` is this run's tokens over this run's ``seconds``."""

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
    manifest: Manifest
    run_documents: int = 0
    run_tokens: int = 0
    run_input_bytes: int = 0
    #: the tokenizer backend that ran, and why (None when no unit ran)
    backend: str | None = None
    backend_reason: str | None = None
    #: seconds the backend's qualification took, the units took in workers, and the
    #: units' identity checks took of that
    qualification_seconds: float = 0.0
    unit_seconds: float = 0.0
    check_seconds: float = 0.0
    checked_documents: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.run_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def input_mb_per_s(self) -> float:
        return self.run_input_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Restart:
    """What ``--restart`` would delete under a prefix, described before it does."""

    output_uri: str
    names: tuple[str, ...]
    manifest: Manifest | None

    def describe(self) -> str:
        shards = sum(1 for n in self.names if n.startswith(layout.SHARDS + "/"))
        markers = sum(1 for n in self.names if n.startswith(layout.MARKERS + "/"))
        what = f"{len(self.names)} file(s) under {self.output_uri}"
        if self.manifest is not None:
            totals = self.manifest.totals
            return (f"--restart: deleting {what}: the committed dataset of job "
                    f"{self.manifest.job!r} ({len(self.manifest.shards)} "
                    f"shards, {totals.documents:,} documents, "
                    f"{totals.tokens:,} tokens) with its plan, markers and rejects")
        return (f"--restart: deleting {what}: an uncommitted run's plan, {markers} unit "
                f"marker(s), {shards} shard file(s) and rejects")


def restart_targets(output_uri: str, storage_options: storage.StorageOptions,
                    manifest: Manifest | None = None) -> Restart | None:
    """What ``--restart`` would delete under the prefix; None when nothing."""
    names = layout.restart_names(output_uri, storage_options)
    return Restart(output_uri, names, manifest) if names else None


def _restart(found: Survey, doomed: Restart, progress: Progress) -> Survey:
    """Say what ``--restart`` deletes, delete it; the survey of the emptied prefix."""
    message = doomed.describe()
    log.warning("%s", message)
    progress.note(message)
    layout.remove_run_outputs(found.output_uri, found.storage_options)
    return dataclasses.replace(found, saved=None, manifest=None)


def prepare(job: JobConfig, *,
            restart: bool = False) -> tuple[Plan, storage.StorageOptions, bool]:
    """Plan, check against the saved plan, save it; returns (plan, storage options,
    committed)."""
    found = survey(job)
    doomed = restart_targets(found.output_uri, found.storage_options, found.manifest) \
        if restart else None
    if doomed is not None:
        found = _restart(found, doomed, NO_PROGRESS)
    saved = found.saved
    if saved is not None and saved.fingerprint != found.plan.fingerprint:
        raise found.mismatch()
    if saved is None:
        layout.write_plan(found.output_uri, found.plan, found.storage_options)
    return found.plan, found.storage_options, found.committed


def new_run_id() -> str:
    """A run's id: its UTC start to the millisecond, then random hex, so that the run
    records sort in the order the runs started."""
    now = time.time()
    return (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-"
            + uuid.uuid4().hex[:8])


def run_job(job: JobConfig, *, restart: bool = False, progress: Progress = NO_PROGRESS,
            engine_kwargs: dict | None = None) -> RunSummary:
    """Run a job to a committed dataset (or resume it); raises RunFailedError.

    Everything that can be checked is checked before the first write: the survey, the
    engine's backend and the engine itself (a cluster started, a scheduler reached), so
    a run never writes, or deletes for ``--restart``, and then fails for a reason it
    could have known.
    """
    started = time.monotonic()
    run_id = new_run_id()
    # the driver's own encoding (the backend's checks) runs on one thread: the cores are
    # the workers'
    worker_env.apply()
    found = survey(job)
    output_uri, storage_options, plan = found.output_uri, found.storage_options, found.plan
    if found.saved is not None and found.differences and not restart:
        raise found.mismatch()
    if found.committed and not restart:
        totals = found.manifest.totals
        progress.note(f"{output_uri} is committed already; nothing to do")
        return RunSummary(output_uri, run_id, job.engine.kind, len(plan.units), 0,
                          len(plan.units), totals.documents, totals.tokens,
                          totals.rejected, totals.records, totals.input_bytes,
                          time.monotonic() - started, 0, True, found.manifest)
    engine_cls = get_engine_class(job.engine.kind)
    kwargs = {"job_name": job.name, **(engine_kwargs or {})}
    if engine_cls.name == "local":
        # its workers load the tokenizer while the driver checks the backend
        kwargs.setdefault("preload", unit_options(job, plan, storage_options))
    doomed = restart_targets(output_uri, storage_options, found.manifest) if restart else None
    done = {} if doomed else commit_mod.done_units(plan, output_uri, storage_options)
    pending = [u for u in plan.units if u.index not in done]
    stats = _RunStats()
    choice: BackendChoice | None = None
    with contextlib.ExitStack() as stack:
        # start or reach the workers and choose the backend before the first write, so
        # that an unreachable scheduler or a backend that cannot run fails a run that has
        # changed nothing
        engine = stack.enter_context(engine_cls(job.engine, progress, **kwargs)) \
            if pending else None
        if pending:
            choice = choose_job_backend(job, plan, storage_options, getattr(engine, "call", None),
                                        tokenizer_bytes=found.tokenizer_bytes,
                                        ignore_switch=doomed is not None)
            progress.note(f"tokenizer backend: {choice.backend} ({choice.reason})")
            log.info("tokenizer backend %s: %s", choice.backend, choice.reason)
        if doomed is not None:
            found = _restart(found, doomed, progress)
        if found.saved is None:
            layout.write_plan(output_uri, plan, storage_options)
        progress.start(plan, len(pending), list(done.values()))
        try:
            if pending:
                options = unit_options(job, plan, storage_options, choice.backend)
                outcome = engine.run(options, pending)
                stats.add(outcome)
                mismatch = _mismatch_of(outcome)
                if mismatch is not None and options.requested_backend == "auto":
                    choice = _switch_to_hf(choice, mismatch, output_uri, storage_options, progress)
                    done, pending = {}, list(plan.units)
                    outcome = engine.run(dataclasses.replace(options, backend="hf"), pending)
                    stats.add(outcome)
                if outcome.failures:
                    first = outcome.failures[min(outcome.failures)]
                    raise RunFailedError(sorted(outcome.failures), first, output_uri) from first
                done.update(outcome.results)
            manifest = commit_mod.commit(plan, output_uri, storage_options, done)
        finally:
            progress.close()
    totals = manifest.totals
    summary = RunSummary(
        output_uri=output_uri, run_id=run_id, engine=job.engine.kind, units=len(plan.units),
        units_run=len(pending), units_skipped=len(plan.units) - len(pending),
        documents=totals.documents, tokens=totals.tokens, rejected=totals.rejected,
        records=totals.records, input_bytes=totals.input_bytes,
        seconds=time.monotonic() - started, retries=stats.retries, already_committed=False,
        manifest=manifest, run_documents=stats.documents, run_tokens=stats.tokens,
        run_input_bytes=stats.input_bytes, backend=choice.backend if choice else None,
        backend_reason=choice.reason if choice else None,
        qualification_seconds=choice.qualification_seconds if choice else 0.0,
        unit_seconds=stats.unit_seconds, check_seconds=stats.check_seconds,
        checked_documents=stats.checked_documents)
    write_run_record(summary, job, storage_options)
    return summary


@dataclass
class _RunStats:
    """What this run's units did and measured, over the engine's runs (a switch to HF
    runs the units again: the last result of each unit counts)."""

    retries: int = 0
    results: dict = dataclasses.field(default_factory=dict)
    unit_seconds: float = 0.0
    check_seconds: float = 0.0
    checked_documents: int = 0

    def add(self, outcome) -> None:
        self.retries += outcome.retries
        self.results.update(outcome.results)
        for result in outcome.results.values():
            self.unit_seconds += result.seconds
            self.check_seconds += result.check_seconds
            self.checked_documents += result.checked_documents

    @property
    def documents(self) -> int:
        return sum(r.documents for r in self.results.values())

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results.values())

    @property
    def input_bytes(self) -> int:
        return sum(r.input_bytes for r in self.results.values())


def _mismatch_of(outcome) -> BackendMismatchError | None:
    found = [e for _, e in sorted(outcome.failures.items())
             if isinstance(e, BackendMismatchError)]
    return found[0] if found else None


def _switch_to_hf(choice: BackendChoice, mismatch: BackendMismatchError, output_uri: str,
                  storage_options: storage.StorageOptions, progress: Progress) -> BackendChoice:
    """Record that this dataset uses HF from now on and drop every unit's marker."""
    reason = mismatch.message.split("; nothing of that unit")[0]
    progress.note(f"switching to the hf backend: {reason}; redoing every unit with hf")
    log.warning("switching %s to the hf backend: %s", output_uri, reason)
    layout.write_backend_switch(output_uri, reason, storage_options)
    layout.remove_markers(output_uri, storage_options)
    return BackendChoice(choice.requested, "hf", f"switched from fastokens: {reason}",
                         choice.qualification_seconds)


def write_run_record(summary: RunSummary, job: JobConfig,
                     storage_options: storage.StorageOptions) -> None:
    """The run's record under its output prefix: when, where, how long; never
    credentials."""
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
        "documents": summary.run_documents,
        "tokens": summary.run_tokens,
        "input_bytes": summary.run_input_bytes,
        "tokens_per_s": round(summary.tokens_per_s, 1),
        "input_mb_per_s": round(summary.input_mb_per_s, 3),
        "dataset_documents": summary.documents,
        "dataset_tokens": summary.tokens,
        "tokenizer_sha256": summary.manifest.tokenizer.sha256,
        "backend": summary.backend,
        "backend_reason": summary.backend_reason,
        "unit_seconds": round(summary.unit_seconds, 3),
        "qualification_seconds": round(summary.qualification_seconds, 3),
        "identity_check_seconds": round(summary.check_seconds, 3),
        "checked_documents": summary.checked_documents,
    }
    try:
        layout.write_run_record(summary.output_uri, summary.run_id, record, storage_options)
    except Exception:  # a run record is informative; the dataset is committed already
        log.warning("could not write the run record %s",
                    layout.run_record_uri(summary.output_uri, summary.run_id), exc_info=True)
