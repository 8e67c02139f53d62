"""Markers to a verified manifest; the status of an output prefix.

Only the driver commits, and only when every unit of the plan has a valid marker.
The manifest is written last and atomically: a reader that sees it sees a complete
dataset. It holds no timestamps, hosts or engine names, so the same job gives the
same manifest bytes everywhere; run metadata goes to the run records. Where each of
these lives under the prefix is :mod:`pipelines.layout`'s business.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipelines import layout, storage
from pipelines.errors import DatasetError
from pipelines.records import (
    Manifest,
    ManifestRejects,
    ManifestShard,
    Plan,
    Reconciliation,
    Totals,
    UnitResult,
)

log = logging.getLogger(__name__)

_IO_THREADS = 16


def done_units(plan: Plan, output_uri: str,
               storage_options: storage.StorageOptions | None) -> dict[int, UnitResult]:
    """The units of ``plan`` whose markers are present and valid."""
    marked = layout.marker_indexes(output_uri, storage_options)

    def check(index: int) -> UnitResult | None:
        if index not in marked:
            return None
        return layout.read_done_marker(output_uri, index, plan.fingerprint, storage_options)

    with ThreadPoolExecutor(_IO_THREADS) as pool:
        found = pool.map(check, [u.index for u in plan.units])
        return {r.index: r for r in found if r is not None}


def build_manifest(plan: Plan, results: dict[int, UnitResult]) -> Manifest:
    missing = [u.index for u in plan.units if u.index not in results]
    if missing:
        raise DatasetError("(commit)", [f"unit {layout.unit_name(i)} has no valid marker"
                                        for i in missing])
    ordered = [results[u.index] for u in plan.units]
    totals = Totals(
        units=len(ordered),
        records=sum(r.records for r in ordered),
        documents=sum(r.documents for r in ordered),
        tokens=sum(r.tokens for r in ordered),
        rejected=sum(r.rejected for r in ordered),
        input_bytes=sum(r.input_bytes for r in ordered),
    )
    balanced = totals.records == totals.documents + totals.rejected
    if not balanced:
        raise DatasetError("(commit)", [
            f"records in ({totals.records}) != documents out ({totals.documents}) + "
            f"rejected ({totals.rejected})"])
    return Manifest(
        job=plan.job,
        fingerprint=plan.fingerprint,
        format=plan.options.output_format,
        tokenizer=plan.tokenizer,
        max_token_id=max((r.max_token_id for r in ordered), default=-1),
        shards=tuple(ManifestShard(unit=r.index, documents=r.documents, tokens=r.tokens,
                                   files=r.files)
                     for r in ordered),
        rejects=tuple(ManifestRejects(unit=r.index, records=r.rejected, path=r.rejects.path,
                                      size=r.rejects.size, sha256=r.rejects.sha256)
                      for r in ordered if r.rejects is not None),
        totals=totals,
        reconciliation=Reconciliation(records_in=totals.records,
                                      documents_out=totals.documents,
                                      rejected=totals.rejected, balanced=balanced),
    )


def commit(plan: Plan, output_uri: str, storage_options: storage.StorageOptions | None,
           results: dict[int, UnitResult] | None = None) -> Manifest:
    """Check every marker, then write the manifest; return it."""
    verified = done_units(plan, output_uri, storage_options)
    if results:
        for index, result in results.items():
            if index in verified and verified[index] != result:
                raise DatasetError(output_uri, [
                    f"unit {layout.unit_name(index)}: its marker differs from what the unit "
                    "reported"])
    manifest = build_manifest(plan, verified)
    removed = layout.remove_stale_temporaries(output_uri, storage_options)
    if removed:
        log.info("removed %d stale temporary files", removed)
    layout.write_manifest(output_uri, manifest, storage_options)
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


def status(output_uri: str, storage_options: storage.StorageOptions | None) -> Status:
    plan = layout.read_plan(output_uri, storage_options)
    if plan is None:
        return Status(output_uri, False, False, 0, 0, 0, 0, 0, 0, None, None)
    manifest = layout.read_manifest(output_uri, storage_options)
    done = done_units(plan, output_uri, storage_options)
    committed = manifest is not None and manifest.fingerprint == plan.fingerprint
    return Status(
        output_uri=output_uri, planned=True, committed=committed, units=len(plan.units),
        done=len(done), documents=sum(r.documents for r in done.values()),
        tokens=sum(r.tokens for r in done.values()),
        rejected=sum(r.rejected for r in done.values()),
        records=sum(r.records for r in done.values()),
        fingerprint=plan.fingerprint, job=plan.job)
