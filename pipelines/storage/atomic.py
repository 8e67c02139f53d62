"""Atomic writes: an object becomes visible only when it is written whole.

A local file is written beside its final name (a hidden ``.<name>.tmp-<uuid>``) and
renamed; an S3 object is a single PUT, or a multipart upload completed on success and
aborted on failure, so a killed writer leaves nothing visible. Errors of the writing
code itself pass through unchanged; storage errors are translated.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pipelines.storage.filesystem import get_fs, is_local
from pipelines.storage.options import StorageOptions
from pipelines.storage.retry import DEFAULT_RETRY, RetryPolicy
from pipelines.storage.translate import raise_translated

log = logging.getLogger(__name__)
T = TypeVar("T")

#: multipart part size: 10,000 parts (the S3 limit) of 64 MiB allow 625 GiB per object
DEFAULT_PART_BYTES = 64 * 2**20
S3_MAX_PARTS = 10_000
#: suffix of in-progress local files; never a final name
TMP_MARKER = ".tmp-"


class HashingWriter:
    """A write-only file that counts and hashes what passes through it."""

    def __init__(self, f, uri: str = "", storage_options: StorageOptions | None = None) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        self._uri = uri
        self._storage_options = storage_options
        self.size = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._sha.update(view)
        try:
            self._f.write(view)
        except Exception as err:  # a part upload failed
            raise_translated(err, self._uri, "write", self._storage_options)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _guarded(fn: Callable[[], T], uri: str, storage_options: StorageOptions | None) -> T:
    try:
        return fn()
    except Exception as err:
        raise_translated(err, uri, "write", storage_options)


@contextmanager
def atomic_writer(uri: str, storage_options: StorageOptions | None = None, *,
                  part_bytes: int = DEFAULT_PART_BYTES) -> Iterator[HashingWriter]:
    """Write an object that becomes visible only if the block exits cleanly.

    Errors of the block itself pass through unchanged; storage errors are translated.
    """
    fs, path = get_fs(uri, storage_options)
    if is_local(uri):
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f".{os.path.basename(path)}{TMP_MARKER}{uuid.uuid4().hex}")

        def open_tmp():
            os.makedirs(parent, exist_ok=True)
            return open(tmp, "wb")

        f = _guarded(open_tmp, uri, storage_options)
        try:
            yield HashingWriter(f, uri, storage_options)
        except BaseException:
            f.close()
            os.unlink(tmp)
            raise

        def publish():
            with f:
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

        _guarded(publish, uri, storage_options)
        return
    f = _guarded(lambda: fs.open(path, "wb", block_size=part_bytes, autocommit=False),
                 uri, storage_options)
    try:
        yield HashingWriter(f, uri, storage_options)
    except BaseException:
        try:
            f.discard()
        except Exception:  # the upload may never have started
            log.debug("discarding %s failed", uri, exc_info=True)
        raise

    def complete():
        try:
            f.close()
            f.commit()
        except BaseException:
            f.discard()
            raise

    _guarded(complete, uri, storage_options)


def write_bytes(uri: str, data: bytes, storage_options: StorageOptions | None = None, *,
                retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Write a small object atomically (one PUT, or a local rename)."""
    fs, path = get_fs(uri, storage_options)
    if is_local(uri):
        def put():
            with atomic_writer(uri, storage_options) as w:
                w.write(data)
    else:
        def put():
            fs.pipe_file(path, data)
    retry.call(put, uri=uri, operation="write", storage_options=storage_options)
