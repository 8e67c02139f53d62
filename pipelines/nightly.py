"""Nightly, incremental runs of a job: one dataset version per logical date.

The Airflow DAG in ``jobs/airflow/`` is a thin shell over this module; anything else
(cron, a test, a notebook) can call :func:`run_night` the same way.

A *base job* is an ordinary job file whose ``output.uri`` is the *root* of a nightly
dataset. Night ``ds`` (the logical date, ``YYYY-MM-DD``) writes the version
``<root>/v=<ds>/`` with the core pipeline (``run_job``) and, once its manifest is
committed, adds it to the root's catalog (see :mod:`pipelines.catalog`). A night
reads only the raw objects that are new, in one of two modes:

``partition``
    ``input.uri`` holds placeholders (``{ds}``, ``{ds_nodash}``, ``{yyyy}``, ``{mm}``,
    ``{dd}``), e.g. ``s3://raw/books/dt={ds}/*.jsonl``: the night reads its own
    partition. Chosen by ``auto`` when a placeholder is present.
``watermark``
    ``input.uri`` lists a growing prefix. The root's watermark records every raw
    object (URI and ETag) that a night took, and for which version; the night's input
    is the listed objects minus those taken by other versions, given to the pipeline
    as an explicit list of URIs. An object rewritten with new content (new ETag) is new
    again. Chosen by ``auto`` when ``input.uri`` has no placeholder.

A night is decided once: :func:`resolve_night` lists the inputs, reads the tokenizer and
checks the catalog, and returns a :class:`Night`; :func:`tokenize_night` and
:func:`publish_night` act on exactly that night. Between Airflow tasks it travels as JSON
(:meth:`Night.as_dict` / :meth:`Night.from_dict`). Running a night's job on Kubernetes
(a ``KubeCluster``, or rendered ``DaskJob``/``SparkApplication`` objects) is
:mod:`pipelines.nightly_kubernetes`; this module knows nothing of Kubernetes.

Reruns (an Airflow clear, retry or backfill) are safe: a night whose version has a
saved plan reuses exactly that plan's inputs, so a committed night is a no-op and a
half-done one resumes; each night writes under its own prefix, so two nights never
mix. A night with no new raw objects is *skipped* and writes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import catalog as catalog_mod
from pipelines import layout, storage
from pipelines.config import JobConfig, parse_job
from pipelines.errors import ConfigError
from pipelines.plan import check_overlap
from pipelines.progress import NO_PROGRESS, Progress
from pipelines.run import RunSummary, read_tokenizer, run_job, storage_of

log = logging.getLogger(__name__)

AUTO, PARTITION, WATERMARK = "auto", "partition", "watermark"
MODES = (AUTO, PARTITION, WATERMARK)
WATERMARK_FORMAT = 1
#: the layout of :meth:`Night.as_dict`, the decision that later tasks receive
NIGHT_FORMAT = 1
#: the version prefix under the root; ``{ds}`` is the logical date
DEFAULT_VERSION_TEMPLATE = "v={ds}"
_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PLACEHOLDER = re.compile(r"\{(ds|ds_nodash|yyyy|mm|dd)\}")
#: a version is one visible path segment under the root (never '..', never hidden)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9=._-]*$")


def placeholders(ds: str) -> dict[str, str]:
    if not _DS.match(ds):
        raise ConfigError(f"the logical date {ds!r} is not YYYY-MM-DD.",
                          hint="Pass the run's ds, e.g. 2026-11-21.")
    yyyy, mm, dd = ds.split("-")
    return {"ds": ds, "ds_nodash": yyyy + mm + dd, "yyyy": yyyy, "mm": mm, "dd": dd}


def fill(template: str, ds: str) -> str:
    values = placeholders(ds)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def mode_of(base: JobConfig, mode: str = AUTO) -> str:
    """The incremental mode for a base job: ``partition`` or ``watermark``."""
    if mode not in MODES:
        raise ConfigError(f"unknown nightly mode {mode!r}.", hint=f"Choose one of: {', '.join(MODES)}.")
    templated = any(_PLACEHOLDER.search(u) for u in base.input.uris)
    if mode == AUTO:
        return PARTITION if templated else WATERMARK
    if mode == PARTITION and not templated:
        raise ConfigError(
            f"nightly mode partition needs a date placeholder in input.uri ({base.input.uri}); "
            "without one every night would read the same objects.",
            hint="Write e.g. s3://raw/books/dt={ds}/*.jsonl, or use mode watermark.")
    if mode == WATERMARK and templated:
        raise ConfigError(
            f"nightly mode watermark lists input.uri as it is, but {base.input.uri} has a date "
            "placeholder.", hint="Use mode partition (or auto) for a date-partitioned input.")
    return mode


@dataclass(frozen=True)
class Night:
    """What one logical date will run: resolved from the base job, before any write."""

    ds: str
    mode: str
    root: str
    version: str
    #: the night's own job (inputs and output narrowed); None when skipped
    job: JobConfig | None
    inputs: tuple[storage.Listed, ...]
    skipped_reason: str | None
    #: the version's prefix holds a plan already (a rerun: resume, or no-op if committed)
    resumed: bool
    storage_options: storage.StorageOptions

    @property
    def output_uri(self) -> str:
        return layout.version_uri(self.root, self.version)

    @property
    def catalog_uri(self) -> str:
        return catalog_mod.catalog_uri(self.root)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    def as_dict(self) -> dict[str, Any]:
        """The night as JSON (an Airflow XCom): what ``select`` decided, so that later
        steps run exactly that night without listing, planning or loading the tokenizer
        again. Storage options hold no credentials (they come from the AWS chain)."""
        return {"format": NIGHT_FORMAT, "ds": self.ds, "mode": self.mode, "root": self.root,
                "version": self.version,
                "job": None if self.job is None else self.job.model_dump(mode="json"),
                "inputs": [asdict(item) for item in self.inputs],
                "skipped_reason": self.skipped_reason, "resumed": self.resumed,
                "storage": asdict(self.storage_options)}

    @classmethod
    def from_dict(cls, data: Any) -> Night:
        """The night that :meth:`as_dict` described; refuses anything else."""
        source = "the night handed on by the select step"
        if not isinstance(data, dict) or data.get("format") != NIGHT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"{source} is not a night of format {NIGHT_FORMAT} (found {found!r}).",
                hint="Clear the run's select task so that it decides the night again.")
        try:
            job = None if data["job"] is None else parse_job(data["job"], source=source)
            inputs = tuple(storage.Listed(**item) for item in data["inputs"])
            return cls(data["ds"], data["mode"], data["root"], data["version"], job, inputs,
                       data["skipped_reason"], data["resumed"],
                       storage.StorageOptions.of(data["storage"]))
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{source} lacks a field or has one of the wrong type ({err}).",
                              hint="Clear the run's select task so that it decides the night "
                                   "again.") from None


@dataclass(frozen=True)
class NightResult:
    """What a night did; ``as_dict()`` is JSON (an Airflow XCom)."""

    ds: str
    mode: str
    version: str
    output_uri: str
    catalog_uri: str
    skipped: bool
    reason: str | None = None
    input_files: int = 0
    already_committed: bool = False
    catalog_updated: bool = False
    documents: int = 0
    tokens: int = 0
    rejected: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary_line(self) -> str:
        if self.skipped:
            return f"night {self.ds} skipped: {self.reason}"
        state = "was committed already (no-op)" if self.already_committed else "committed"
        return (f"night {self.ds}: {self.output_uri} {state}: {self.input_files} input files, "
                f"{self.documents} documents, {self.tokens} tokens, {self.rejected} rejected, "
                f"{self.seconds:.1f}s, {self.tokens_per_s:,.0f} tokens/s; catalog "
                f"{self.catalog_uri} {'updated' if self.catalog_updated else 'unchanged'}")


# -- the watermark ----------------------------------------------------------------


#: the watermark's URI under a nightly root
watermark_uri = layout.watermark_uri


def load_watermark(root: str, storage_options: storage.StorageOptions) -> dict:
    """``{raw object URI: {"etag", "version", "state"}}``; empty before the first night."""
    try:
        doc = json.loads(storage.read_bytes(watermark_uri(root), storage_options))
    except storage.StorageNotFoundError:
        return {}
    return doc.get("inputs", {})


def _taken_elsewhere(watermark: dict, item: storage.Listed, version: str) -> bool:
    entry = watermark.get(item.uri)
    return entry is not None and entry["etag"] == item.version and entry["version"] != version


def _update_watermark(night: Night, state: str) -> bool:
    """Record the night's inputs as ``claimed`` (before it runs) or ``committed``."""

    def change(doc: dict | None) -> dict | None:
        inputs = dict((doc or {}).get("inputs", {}))
        updated = dict(inputs)
        for item in night.inputs:
            current = inputs.get(item.uri)
            ours = current is not None and current["etag"] == item.version and \
                current["version"] == night.version
            if state == "claimed" and ours:  # claimed already, or committed: keep it
                continue
            updated[item.uri] = {"etag": item.version, "version": night.version, "state": state}
        if updated == inputs:
            return None
        return {"format": WATERMARK_FORMAT, "inputs": updated}

    _, written = catalog_mod.update_json(watermark_uri(night.root), change, night.storage_options)
    return written


# -- one night --------------------------------------------------------------------


def _list(uris: tuple[str, ...], storage_options: storage.StorageOptions) -> list[storage.Listed]:
    found: dict[str, storage.Listed] = {}
    for uri in uris:
        try:
            for item in storage.list_files(uri, storage_options):
                found.setdefault(item.uri, item)
        except storage.StorageNotFoundError:
            continue
    return sorted(found.values(), key=lambda item: item.uri)


def resolve_night(base: JobConfig, ds: str, *, mode: str = AUTO,
                  version_template: str = DEFAULT_VERSION_TEMPLATE) -> Night:
    """The night's job and inputs; writes nothing. Refuses a tokenizer the catalog lacks."""
    mode = mode_of(base, mode)
    check_overlap(base)  # versions go under the root: none may be listed as raw input
    root = base.output.uri.rstrip("/")
    version = fill(version_template, ds)
    if not _VERSION.match(version):
        raise ConfigError(f"the version name {version!r} must be one path segment of letters, "
                          "digits, '=', '.', '_' and '-', starting with a letter or digit.",
                          hint="Use a template such as v={ds}.")
    storage_options = storage_of(base)
    output_uri = layout.version_uri(root, version)
    saved = layout.read_plan(output_uri, storage_options)
    resumed = saved is not None
    if mode == PARTITION:
        uris = tuple(fill(u, ds) for u in base.input.uris)
        value: str | list[str] = uris[0] if isinstance(base.input.uri, str) else list(uris)
        inputs = _list(uris, storage_options)
        reason = None if inputs else f"no raw objects match {', '.join(uris)}"
    elif saved is not None:  # a rerun takes exactly the inputs it planned the first time
        inputs = [storage.Listed(f.uri, f.key, f.size, f.version) for f in saved.inputs]
        value, reason = [f.uri for f in saved.inputs], None
    else:
        listed = _list(base.input.uris, storage_options)
        watermark = load_watermark(root, storage_options)
        inputs = [item for item in listed if not _taken_elsewhere(watermark, item, version)]
        value = [item.uri for item in inputs]
        reason = None if inputs else (
            f"no new raw objects under {', '.join(base.input.uris)} ({len(listed)} listed, "
            f"all tokenized by earlier nights per {watermark_uri(root)})")
    if reason is not None:
        return Night(ds, mode, root, version, None, (), reason, resumed, storage_options)
    job = base.with_overrides(**{"input.uri": value, "output.uri": output_uri + "/"})
    check_overlap(job)  # before the watermark claims anything
    _, tokenizer = read_tokenizer(job, storage_options)
    catalog_mod.check_tokenizer(catalog_mod.load(root, storage_options), tokenizer.sha256,
                                version, catalog_mod.catalog_uri(root))
    return Night(ds, mode, root, version, job, tuple(inputs), None, resumed, storage_options)


def tokenize_night(night: Night, *, progress: Progress = NO_PROGRESS,
                   engine_kwargs: dict | None = None) -> RunSummary:
    """Claim the night's inputs (watermark mode), then run or resume its version."""
    if night.job is None:
        raise ConfigError(f"night {night.ds} has nothing to run ({night.skipped_reason}).")
    if night.mode == WATERMARK:
        _update_watermark(night, "claimed")
    return run_job(night.job, progress=progress, engine_kwargs=engine_kwargs)


def is_committed(night: Night) -> bool:
    """Whether the night's version has its manifest: one read, nothing listed."""
    return layout.read_manifest(night.output_uri, night.storage_options) is not None


def publish_night(night: Night) -> tuple[dict, bool]:
    """Add the committed version to the catalog; returns (its entry, catalog written)."""
    manifest = layout.read_manifest(night.output_uri, night.storage_options)
    if manifest is None:
        raise catalog_mod.CatalogError(
            f"{night.output_uri} has no {layout.MANIFEST}, so it is not committed and cannot "
            "enter the catalog.", hint="Run (or rerun) the night's tokenize step first.")
    plan = layout.read_plan(night.output_uri, night.storage_options)
    input_files = len(plan.inputs) if plan is not None else len(night.inputs)
    entry = catalog_mod.entry_of(night.version, night.ds, manifest, input_files)
    _, written = catalog_mod.add_version(night.root, entry, manifest, night.storage_options)
    if night.mode == WATERMARK:
        _update_watermark(night, "committed")
    return entry, written


def run_night(base: JobConfig, ds: str, *, mode: str = AUTO,
              version_template: str = DEFAULT_VERSION_TEMPLATE,
              progress: Progress = NO_PROGRESS, engine_kwargs: dict | None = None) -> NightResult:
    """Resolve, tokenize and publish one night; a night with no new data is skipped."""
    night = resolve_night(base, ds, mode=mode, version_template=version_template)
    if night.skipped:
        return skipped_result(night)
    summary = tokenize_night(night, progress=progress, engine_kwargs=engine_kwargs)
    _, written = publish_night(night)
    return result_of(night, summary, written)


def skipped_result(night: Night) -> NightResult:
    return NightResult(night.ds, night.mode, night.version, night.output_uri, night.catalog_uri,
                       skipped=True, reason=night.skipped_reason)


def result_of(night: Night, summary: RunSummary, catalog_updated: bool) -> NightResult:
    return NightResult(
        night.ds, night.mode, night.version, night.output_uri, night.catalog_uri,
        skipped=False, input_files=len(night.inputs),
        already_committed=summary.already_committed, catalog_updated=catalog_updated,
        documents=summary.documents, tokens=summary.tokens, rejected=summary.rejected,
        seconds=round(summary.seconds, 3), tokens_per_s=round(summary.tokens_per_s, 1))
