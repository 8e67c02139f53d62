"""Markers to a verified ``manifest.json``; the status of an output prefix.

Only the driver commits, and only when every unit of the plan has a valid marker.
The manifest is written last and atomically: a reader that sees it sees a complete
dataset. It holds no timestamps, hosts or engine names, so the same job gives the
same manifest bytes everywhere; run metadata goes to ``_runs/<run-id>.json``.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from pipelines import storage
from pipelines.errors import DatasetError
from pipelines.records import Plan, UnitResult, dumps
from pipelines.task import marker_is_valid, read_marker

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PLAN = "_plan.json"
MANIFEST_VERSION = 1
_IO_THREADS = 16


def plan_uri(output_uri: str) -> str:
    return storage.join(output_uri, PLAN)


def manifest_uri(output_uri: str) -> str:
    return storage.join(output_uri, MANIFEST)


def load_plan(output_uri: str, storage_options: storage.StorageOptions) -> Plan | None:
    try:
        return Plan.from_json(storage.read_bytes(plan_uri(output_uri), storage_options))
    except storage.StorageNotFoundError:
        return None


def load_manifest(output_uri: str, storage_options: storage.StorageOptions) -> dict | None:
    try:
        return json.loads(storage.read_bytes(manifest_uri(output_uri), storage_options))
    except storage.StorageNotFoundError:
        return None


def done_units(plan: Plan, output_uri: str,
               storage_options: storage.StorageOptions) -> dict[int, UnitResult]:
    """The units of ``plan`` whose markers are present and valid."""
    names = set(storage.list_names(storage.join(output_uri, "_units"), storage_options))

    def check(index: int) -> UnitResult | None:
        if f"{index:06d}.json" not in names:
            return None
        result = read_marker(output_uri, index, storage_options)
        if result and marker_is_valid(result, plan.fingerprint, output_uri, storage_options):
            return result
        return None

    with ThreadPoolExecutor(_IO_THREADS) as pool:
        found = pool.map(check, [u.index for u in plan.units])
        return {r.index: r for r in found if r is not None}


def build_manifest(plan: Plan, results: dict[int, UnitResult]) -> dict:
    missing = [u.index for u in plan.units if u.index not in results]
    if missing:
        raise DatasetError("(commit)", [f"unit {i:06d} has no valid marker" for i in missing])
    ordered = [results[u.index] for u in plan.units]
    totals = {
        "units": len(ordered),
        "records": sum(r.records for r in ordered),
        "documents": sum(r.documents for r in ordered),
        "tokens": sum(r.tokens for r in ordered),
        "rejected": sum(r.rejected for r in ordered),
        "input_bytes": sum(r.input_bytes for r in ordered),
    }
    balanced = totals["records"] == totals["documents"] + totals["rejected"]
    if not balanced:
        raise DatasetError("(commit)", [
            f"records in ({totals['records']}) != documents out ({totals['documents']}) + "
            f"rejected ({totals['rejected']})"])
    return {
        "version": MANIFEST_VERSION,
        "job": plan.job,
        "fingerprint": plan.fingerprint,
        "format": plan.options["output_format"],
        "dtype": plan.tokenizer["dtype"],
        "tokenizer": {k: plan.tokenizer[k] for k in
                      ("name", "sha256", "vocab_size", "eos", "eos_id", "bos", "bos_id")},
        "max_token_id": max((r.max_token_id for r in ordered), default=-1),
        "shards": [
            {"unit": r.index, "documents": r.documents, "tokens": r.tokens,
             "files": [asdict(f) for f in r.files]}
            for r in ordered
        ],
        "rejects": [
            dict(asdict(r.rejects), unit=r.index, records=r.rejected)
            for r in ordered if r.rejects is not None
        ],
        "totals": totals,
        "reconciliation": {
            "records_in": totals["records"],
            "documents_out": totals["documents"],
            "rejected": totals["rejected"],
            "balanced": balanced,
        },
    }


def remove_stale_temporaries(output_uri: str, storage_options: storage.StorageOptions) -> int:
    """Delete local in-progress files left by killed writers (object stores have none)."""
    if not storage.is_local(output_uri):
        return 0
    stale = [n for n in storage.list_names(output_uri, storage_options) if storage.TMP_MARKER in n]
    for name in stale:
        storage.remove(storage.join(output_uri, name), storage_options)
    return len(stale)


def commit(plan: Plan, output_uri: str, storage_options: storage.StorageOptions,
           results: dict[int, UnitResult] | None = None) -> dict:
    """Check every marker, then write ``manifest.json``; return the manifest."""
    verified = done_units(plan, output_uri, storage_options)
    if results:
        for index, result in results.items():
            if index in verified and verified[index] != result:
                raise DatasetError(output_uri, [
                    f"unit {index:06d}: its marker differs from what the unit reported"])
    manifest = build_manifest(plan, verified)
    removed = remove_stale_temporaries(output_uri, storage_options)
    if removed:
        log.info("removed %d stale temporary files", removed)
    storage.write_bytes(manifest_uri(output_uri), dumps(manifest), storage_options)
    return manifest


@dataclass(frozen=True)
class Status:
    output_uri: str
    planned: bool
    committed: bool
    units: int
    done: int
    documents: int
    tokens: int
    rejected: int
    records: int
    fingerprint: str | None
    job: str | None

    @property
    def pending(self) -> int:
        return self.units - self.done


def status(output_uri: str, storage_options: storage.StorageOptions) -> Status:
    plan = load_plan(output_uri, storage_options)
    if plan is None:
        return Status(output_uri, False, False, 0, 0, 0, 0, 0, 0, None, None)
    manifest = load_manifest(output_uri, storage_options)
    done = done_units(plan, output_uri, storage_options)
    committed = manifest is not None and manifest.get("fingerprint") == plan.fingerprint
    return Status(
        output_uri=output_uri, planned=True, committed=committed, units=len(plan.units),
        done=len(done), documents=sum(r.documents for r in done.values()),
        tokens=sum(r.tokens for r in done.values()),
        rejected=sum(r.rejected for r in done.values()),
        records=sum(r.records for r in done.values()),
        fingerprint=plan.fingerprint, job=plan.job)
