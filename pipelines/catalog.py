"""The catalog of a nightly dataset: one object under its root (``catalog.json``, see
:mod:`pipelines.layout`) that training jobs read to find every committed version, in
order, and the latest.

::

    {"format": 1,
     "tokenizer": {"name": "tokenizer.json", "sha256": "...", "vocab_size": 50257, ...},
     "latest": "v=2026-11-21",
     "versions": [
       {"version": "v=2026-11-20", "ds": "2026-11-20", "path": "v=2026-11-20/",
        "manifest": "v=2026-11-20/manifest.json", "fingerprint": "...", "format": "megatron",
        "dtype": "uint16", "documents": 1200, "tokens": 350000, "records": 1200,
        "rejected": 0, "shards": 3, "input_files": 4, "input_bytes": 1400000},
       ...]}

A version enters the catalog only after its manifest is written, so the
catalog never names a half-written version. Every version of one catalog was made
with the same tokenizer file (by sha256): a version made with another is refused.

Updates are read-modify-write with a compare-and-swap (``storage.write_bytes_if``: a
conditional PUT on S3, a file lock locally), retried on conflict, so backfills that
publish at the same time do not lose each other's entries. Entries are kept sorted by
version name, whatever order the nights finish in. Adding an entry that is there
already, with the same content, writes nothing.
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Callable

from pipelines import layout, storage
from pipelines.errors import (  # noqa: F401  (re-exported for callers)
    CatalogConflictError,
    CatalogError,
    CatalogTokenizerMismatchError,
)
from pipelines.records import Manifest, TokenizerFacts, dumps

log = logging.getLogger(__name__)

CATALOG_FORMAT = 1
#: conditional-write attempts before a publish gives up (each re-reads the catalog)
CAS_ATTEMPTS = 12
#: the catalog's URI under a nightly root
catalog_uri = layout.catalog_uri


def empty_catalog(tokenizer: TokenizerFacts) -> dict:
    return {"format": CATALOG_FORMAT, "latest": None, "tokenizer": tokenizer.to_dict(),
            "versions": []}


def _parse(uri: str, data: bytes) -> dict:
    try:
        catalog = json.loads(data)
    except ValueError as err:
        raise CatalogError(f"{uri} is not valid JSON ({err}).",
                           hint="Restore it from the bucket's object versions; each entry "
                                f"can also be rebuilt from its version's {layout.MANIFEST}.") \
            from None
    if not isinstance(catalog, dict) or catalog.get("format") != CATALOG_FORMAT:
        raise CatalogError(f"{uri} is not a tokenyard catalog of format {CATALOG_FORMAT}.")
    return catalog


def load(root: str, storage_options: storage.StorageOptions) -> dict | None:
    """The catalog under ``root``, or None when no version was published yet."""
    uri = catalog_uri(root)
    try:
        return _parse(uri, storage.read_bytes(uri, storage_options))
    except storage.StorageNotFoundError:
        return None


def check_tokenizer(catalog: dict | None, sha256: str, version: str, uri: str) -> None:
    """Refuse a version whose tokenizer differs from the catalog's."""
    if catalog is None or not catalog.get("tokenizer"):
        return
    expected = catalog["tokenizer"].get("sha256", "")
    if expected != sha256:
        raise CatalogTokenizerMismatchError(uri, version, expected, sha256)


def entry_of(version: str, ds: str, manifest: Manifest, input_files: int) -> dict:
    """The catalog entry of a committed version, from its manifest."""
    totals = manifest.totals
    return {
        "version": version, "ds": ds, "path": layout.version_path(version),
        "manifest": layout.version_manifest_path(version), "fingerprint": manifest.fingerprint,
        "format": manifest.format, "dtype": manifest.dtype,
        "documents": totals.documents, "tokens": totals.tokens,
        "records": totals.records, "rejected": totals.rejected,
        "input_bytes": totals.input_bytes, "shards": len(manifest.shards),
        "input_files": input_files,
    }


def update_json(uri: str, change: Callable[[dict | None], dict | None],
                storage_options: storage.StorageOptions,
                *, parse: Callable[[str, bytes], dict] = lambda uri, data: json.loads(data)
                ) -> tuple[dict | None, bool]:
    """Read-modify-write a small JSON object with compare-and-swap, retried on conflict.

    ``change`` gets the current document (None if absent) and returns the new one, or
    None to write nothing. Returns (the document as it now stands, whether it was written).
    """
    for attempt in range(1, CAS_ATTEMPTS + 1):
        current = storage.read_bytes_versioned(uri, storage_options)
        doc, etag = (parse(uri, current[0]), current[1]) if current else (None, None)
        updated = change(doc)
        if updated is None:
            return doc, False
        if storage.write_bytes_if(uri, dumps(updated), storage_options, expected=etag):
            return updated, True
        delay = min(5.0, 0.05 * 2 ** attempt) * (0.5 + random.random() / 2)
        log.info("%s changed while updating it; retry %d in %.2fs", uri, attempt, delay)
        time.sleep(delay)
    raise CatalogConflictError(
        f"{uri} kept changing under {CAS_ATTEMPTS} attempts to update it.",
        hint="Another writer is updating it in a loop; rerun this night: it is idempotent.")


def add_version(root: str, entry: dict, manifest: Manifest,
                storage_options: storage.StorageOptions) -> tuple[dict, bool]:
    """Add a committed version's entry; returns (catalog, whether it was written)."""
    uri = catalog_uri(root)

    def change(catalog: dict | None) -> dict | None:
        check_tokenizer(catalog, manifest.tokenizer.sha256, entry["version"], uri)
        catalog = catalog or empty_catalog(manifest.tokenizer)
        others = [v for v in catalog["versions"] if v["version"] != entry["version"]]
        existing = [v for v in catalog["versions"] if v["version"] == entry["version"]]
        if existing and existing[0] == entry:
            return None
        if existing and existing[0]["fingerprint"] != entry["fingerprint"]:
            raise CatalogError(
                f"{uri} lists version {entry['version']} with fingerprint "
                f"{existing[0]['fingerprint'][:12]}…, but the committed data under "
                f"{entry['path']} has fingerprint {entry['fingerprint'][:12]}….",
                hint="A committed version never changes. Publish the new data as a new "
                     "version (another logical date or version name).")
        versions = sorted(others + [entry], key=lambda v: v["version"])
        return dict(catalog, versions=versions, latest=versions[-1]["version"])

    catalog, written = update_json(uri, change, storage_options, parse=_parse)
    if written:
        log.info("catalog %s: added %s (%d versions)", uri, entry["version"],
                 len(catalog["versions"]))
    return catalog, written


def latest(root: str, storage_options: storage.StorageOptions) -> tuple[dict, Manifest]:
    """The latest version's catalog entry and its manifest: what a training job reads."""
    catalog = load(root, storage_options)
    if not catalog or not catalog["versions"]:
        raise CatalogError(f"{catalog_uri(root)} lists no version yet.",
                           hint="Wait for the first nightly run to commit.")
    entry = catalog["versions"][-1]
    where = storage.join(root, entry["path"])
    return entry, layout.parse_manifest(
        where, storage.read_bytes(storage.join(root, entry["manifest"]), storage_options))
