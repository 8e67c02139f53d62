"""Conditional writes: compare-and-swap of small shared objects (a catalog, a watermark).

Read an object with its version token (:func:`read_bytes_versioned`), change it, and
write it back only if nobody else wrote in between (:func:`write_bytes_if`); the
caller re-reads and tries again when that fails. On S3 this is a conditional PUT
(``If-Match`` / ``If-None-Match``), which AWS S3 and recent S3-compatible stores
honour; locally an exclusive lock on a sidecar file.
"""

from __future__ import annotations

import hashlib
import os

from pipelines.storage.atomic import write_bytes
from pipelines.storage.filesystem import get_fs, is_local
from pipelines.storage.listing import version_of
from pipelines.storage.options import StorageOptions
from pipelines.storage.retry import DEFAULT_RETRY
from pipelines.storage.translate import error_code

#: S3 answers a failed If-Match / If-None-Match with these codes
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def read_bytes_versioned(uri: str, storage_options: StorageOptions | None = None
                         ) -> tuple[bytes, str] | None:
    """An object's bytes and its version token (ETag; locally a hash); None if absent.

    The ETag is read before the bytes, so a writer in between makes the version stale
    (a later conditional write then fails and is retried), never the bytes.
    """
    fs, path = get_fs(uri, storage_options)

    def get():
        try:
            if is_local(uri):
                data = fs.cat_file(path)
                return data, hashlib.sha256(data).hexdigest()
            version = version_of(fs.info(path))
            return fs.cat_file(path), version
        except FileNotFoundError:
            return None

    return DEFAULT_RETRY.call(get, uri=uri, operation="read", storage_options=storage_options)


def write_bytes_if(uri: str, data: bytes, storage_options: StorageOptions | None = None, *,
                   expected: str | None) -> bool:
    """Write a small object only if it is still at version ``expected`` (None: absent).

    Returns False when another writer got there first; the caller re-reads and tries
    again.
    """
    fs, path = get_fs(uri, storage_options)
    if is_local(uri):
        import fcntl

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            current = hashlib.sha256(fs.cat_file(path)).hexdigest() \
                if os.path.exists(path) else None
            if current != expected:
                return False
            write_bytes(uri, data, storage_options)
            return True
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": f'"{expected}"'}

    def put():
        try:
            fs.pipe_file(path, data, **condition)
            return True
        except Exception as err:
            if error_code(err) in CONFLICT_CODES:
                return False
            raise

    return DEFAULT_RETRY.call(put, uri=uri, operation="write", storage_options=storage_options)
