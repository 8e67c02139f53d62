"""The output layout: every name tokenyard writes under a prefix, and how each is read and
written. No other module knows these names; everything else asks here.

An output prefix (a job's ``output.uri``)::

    _plan.json                the plan (records.Plan): units, inputs, fingerprint, options
    _units/000042.json        unit 42's marker (records.UnitResult): the unit is done
    shards/000042.bin|.idx    its tokens: Megatron; shards/000042.parquet: Parquet
    rejects/000042.jsonl      its records that were not tokenized, each with its reason
    _backend.json             the run switched to HF after fastokens disagreed with it
    manifest.json             written last (records.Manifest): the dataset exists
    _runs/<run-id>.json       run records: when, where, how long (never read by training)

A nightly root (:mod:`pipelines.nightly`) holds one output prefix per version, the
catalog that lists the committed ones, and the watermark of raw objects taken::

    catalog.json              pipelines.catalog
    _watermark.json           pipelines.nightly (watermark mode)
    v=2026-11-21/             an output prefix, as above

Paths inside a dataset (the ``path`` of a :class:`~pipelines.records.ShardFile`, a
manifest's entries) are relative to its prefix; the functions ending in ``_uri`` give
full URIs. Everything is written atomically (:mod:`pipelines.storage.atomic`).
"""

from __future__ import annotations

import json
import logging

from pipelines import storage
from pipelines.errors import DatasetError
from pipelines.records import Manifest, Plan, UnitResult, dumps

log = logging.getLogger(__name__)

PLAN = "_plan.json"
MANIFEST = "manifest.json"
BACKEND_SWITCH = "_backend.json"
MARKERS = "_units"
SHARDS = "shards"
REJECTS = "rejects"
RUNS = "_runs"
#: the files of one unit's shard, by output format: the first holds the tokens
SHARD_SUFFIXES = {"megatron": (".bin", ".idx"), "parquet": (".parquet",)}
#: what a run writes under its prefix, and so what ``--restart`` deletes (``_runs/`` stays)
RESTART_FILES = (MANIFEST, PLAN, BACKEND_SWITCH)
RESTART_FOLDERS = (MARKERS, SHARDS, REJECTS)

CATALOG = "catalog.json"
WATERMARK = "_watermark.json"


def unit_name(index: int) -> str:
    """``000042``: the name of unit 42's files in every folder."""
    return f"{index:06d}"


# -- relative paths ---------------------------------------------------------------


def shard_base(index: int) -> str:
    """``shards/000042``: a format writer adds its suffixes (:data:`SHARD_SUFFIXES`)."""
    return f"{SHARDS}/{unit_name(index)}"


def shard_paths(index: int, output_format: str) -> tuple[str, ...]:
    return tuple(shard_base(index) + suffix for suffix in SHARD_SUFFIXES[output_format])


def data_suffix(output_format: str) -> str:
    """The suffix of the shard file that holds the tokens (``.bin``, ``.parquet``)."""
    return SHARD_SUFFIXES[output_format][0]


def rejects_path(index: int) -> str:
    return f"{REJECTS}/{unit_name(index)}.jsonl"


def marker_path(index: int) -> str:
    return f"{MARKERS}/{unit_name(index)}.json"


def written_names() -> tuple[str, ...]:
    """A sample of every kind of name a run writes that a listing does not skip as
    hidden: what an input glob must never match (:func:`pipelines.plan.check_overlap`)."""
    shards = tuple(p for fmt in SHARD_SUFFIXES for p in shard_paths(0, fmt))
    names = (MANIFEST, *shards, rejects_path(0))
    return tuple(n for n in names if not storage.is_hidden(n))


# -- URIs -------------------------------------------------------------------------


def file_uri(output_uri: str, path: str) -> str:
    """The URI of a file a dataset lists by its relative ``path``."""
    return storage.join(output_uri, path)


def plan_uri(output_uri: str) -> str:
    return storage.join(output_uri, PLAN)


def manifest_uri(output_uri: str) -> str:
    return storage.join(output_uri, MANIFEST)


def marker_uri(output_uri: str, index: int) -> str:
    return storage.join(output_uri, marker_path(index))


def backend_switch_uri(output_uri: str) -> str:
    return storage.join(output_uri, BACKEND_SWITCH)


def run_record_uri(output_uri: str, run_id: str) -> str:
    return storage.join(output_uri, RUNS, f"{run_id}.json")


def catalog_uri(root: str) -> str:
    return storage.join(root, CATALOG)


def watermark_uri(root: str) -> str:
    return storage.join(root, WATERMARK)


def version_uri(root: str, version: str) -> str:
    """The output prefix of a nightly version."""
    return storage.join(root, version)


def version_path(version: str) -> str:
    """A version's prefix relative to its nightly root, as the catalog lists it."""
    return f"{version}/"


def version_manifest_path(version: str) -> str:
    """A version's manifest relative to its nightly root, as the catalog lists it."""
    return f"{version}/{MANIFEST}"


def split_manifest_uri(uri: str) -> str | None:
    """The prefix of ``uri`` when it names a ``manifest.json``; None otherwise."""
    if uri == MANIFEST:
        return "."
    if uri.endswith("/" + MANIFEST):
        return uri[:-len(MANIFEST)].rstrip("/") or "."
    return None


# -- the plan ---------------------------------------------------------------------


def read_plan(output_uri: str, storage_options: storage.StorageOptions | None) -> Plan | None:
    """The saved plan, or None when nothing has run against the prefix."""
    try:
        return Plan.from_json(storage.read_bytes(plan_uri(output_uri), storage_options))
    except storage.StorageNotFoundError:
        return None


def write_plan(output_uri: str, plan: Plan,
               storage_options: storage.StorageOptions | None) -> None:
    storage.write_bytes(plan_uri(output_uri), plan.to_json(), storage_options)


# -- markers ----------------------------------------------------------------------


def read_marker(output_uri: str, index: int,
                storage_options: storage.StorageOptions | None) -> UnitResult | None:
    """The unit's marker if it exists and parses; None otherwise."""
    try:
        raw = storage.read_bytes(marker_uri(output_uri, index), storage_options)
    except storage.StorageNotFoundError:
        return None
    try:
        return UnitResult.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        log.warning("marker of unit %s is unreadable; the unit will run again",
                    unit_name(index))
        return None


def write_marker(output_uri: str, result: UnitResult,
                 storage_options: storage.StorageOptions | None) -> None:
    storage.write_bytes(marker_uri(output_uri, result.index), result.to_json(),
                        storage_options)


def marker_indexes(output_uri: str,
                   storage_options: storage.StorageOptions | None) -> frozenset[int]:
    """The units that have a marker file (valid or not), from one listing."""
    names = storage.list_names(storage.join(output_uri, MARKERS), storage_options)
    found = set()
    for name in names:
        stem, dot, ext = name.partition(".")
        if dot and ext == "json" and stem.isdigit() and name == f"{unit_name(int(stem))}.json":
            found.add(int(stem))
    return frozenset(found)


def remove_markers(output_uri: str, storage_options: storage.StorageOptions | None) -> None:
    storage.remove(storage.join(output_uri, MARKERS), storage_options, recursive=True)


def read_done_marker(output_uri: str, index: int, fingerprint: str,
                     storage_options: storage.StorageOptions | None) -> UnitResult | None:
    """The unit's marker if it says the unit is done: it parses, belongs to the plan of
    ``fingerprint``, and every file it lists is there with the size it gives. None
    otherwise: the unit runs (again)."""
    result = read_marker(output_uri, index, storage_options)
    if result is None or result.fingerprint != fingerprint:
        return None
    files = list(result.files) + ([result.rejects] if result.rejects else [])
    if all(storage.size_of(file_uri(output_uri, f.path), storage_options) == f.size
           for f in files):
        return result
    return None


# -- the manifest -----------------------------------------------------------------


def parse_manifest(where: str, raw: bytes) -> Manifest:
    """A manifest from its bytes; a :class:`DatasetError` naming ``where`` when they are
    not a tokenyard manifest."""
    try:
        return Manifest.from_json(raw)
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(where, [f"{MANIFEST} is not a tokenyard manifest ({err})"]) \
            from None


def read_manifest(output_uri: str,
                  storage_options: storage.StorageOptions | None) -> Manifest | None:
    """The committed dataset's manifest, or None when it was never committed."""
    try:
        raw = storage.read_bytes(manifest_uri(output_uri), storage_options)
    except storage.StorageNotFoundError:
        return None
    return parse_manifest(output_uri, raw)


def write_manifest(output_uri: str, manifest: Manifest,
                   storage_options: storage.StorageOptions | None) -> None:
    storage.write_bytes(manifest_uri(output_uri), manifest.to_json(), storage_options)


# -- the backend switch -----------------------------------------------------------


def read_backend_switch(output_uri: str,
                        storage_options: storage.StorageOptions | None) -> str | None:
    """Why the dataset switched to HF, or None when it never did."""
    try:
        raw = storage.read_bytes(backend_switch_uri(output_uri), storage_options)
    except storage.StorageNotFoundError:
        return None
    try:
        return str(json.loads(raw).get("reason", "a mismatch"))
    except (ValueError, AttributeError):
        return "a mismatch"


def backend_switched(output_uri: str, storage_options: storage.StorageOptions | None) -> bool:
    return storage.exists(backend_switch_uri(output_uri), storage_options)


def write_backend_switch(output_uri: str, reason: str,
                         storage_options: storage.StorageOptions | None) -> None:
    storage.write_bytes(backend_switch_uri(output_uri),
                        dumps({"backend": "hf", "reason": reason}), storage_options)


# -- run records ------------------------------------------------------------------


def write_run_record(output_uri: str, run_id: str, record: dict,
                     storage_options: storage.StorageOptions | None) -> str:
    """Write ``_runs/<run-id>.json``; returns its URI."""
    uri = run_record_uri(output_uri, run_id)
    storage.write_bytes(uri, dumps(record), storage_options)
    return uri


def read_run_records(output_uri: str, storage_options: storage.StorageOptions | None
                     ) -> list[tuple[str, dict]]:
    """``(run id, record)`` of every readable run record, in run id order (the order the
    runs started); a record that is gone or not a JSON object is left out."""
    folder = storage.join(output_uri, RUNS)
    names = [n for n in storage.list_names(folder, storage_options) if n.endswith(".json")]
    found = []
    for name in names:
        try:
            record = json.loads(storage.read_bytes(storage.join(folder, name), storage_options))
        except (storage.StorageNotFoundError, ValueError):
            continue
        if isinstance(record, dict):
            found.append((name.removesuffix(".json"), record))
    return found


# -- starting over, cleaning up ---------------------------------------------------


def restart_names(output_uri: str,
                  storage_options: storage.StorageOptions | None) -> tuple[str, ...]:
    """What ``--restart`` would delete under the prefix (run records are kept)."""
    return tuple(n for n in storage.list_names(output_uri, storage_options)
                 if n in RESTART_FILES or n.split("/", 1)[0] in RESTART_FOLDERS)


def remove_run_outputs(output_uri: str,
                       storage_options: storage.StorageOptions | None) -> None:
    """Delete what runs wrote under the prefix, the manifest first, so that no reader
    sees a committed dataset lose its files."""
    for name in RESTART_FILES:
        storage.remove(storage.join(output_uri, name), storage_options)
    for folder in RESTART_FOLDERS:
        storage.remove(storage.join(output_uri, folder), storage_options, recursive=True)


def remove_stale_temporaries(output_uri: str,
                             storage_options: storage.StorageOptions | None) -> int:
    """Delete local in-progress files left by killed writers (object stores have none)."""
    if not storage.is_local(output_uri):
        return 0
    stale = [n for n in storage.list_names(output_uri, storage_options)
             if storage.TMP_MARKER in n]
    for name in stale:
        storage.remove(storage.join(output_uri, name), storage_options)
    return len(stale)
