"""The storage boundary: everything tokenyard reads or writes goes through here.

Everything above this package speaks in URIs (``s3://bucket/key``, ``file:///x``, plain
paths) and tokenyard errors; backend exceptions are translated here, once, by error code
and type, never by message text. Credentials are never passed here: s3fs finds them
through the standard AWS chain. One module per concept; this package re-exports their
public API, so callers write ``from pipelines import storage; storage.read_bytes(uri)``:

================  ===================================================================
``options``       :class:`StorageOptions`: the storage settings that travel to workers
``filesystem``    the fsspec/s3fs filesystem of a URI, its request settings; URI helpers
``translate``     backend failures to the tokenyard error tree
``retry``         :class:`RetryPolicy`: whole operations again on transient errors
``objects``       read, check, stat and delete single objects
``listing``       the input files a URI names; every name under a prefix
``atomic``        writes that become visible only when whole
``conditional``   compare-and-swap of small shared objects
================  ===================================================================
"""

from pipelines.errors import (  # noqa: F401  (callers catch these as storage.X)
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    TransientStorageError,
)
from pipelines.storage.atomic import (
    DEFAULT_PART_BYTES,
    S3_MAX_PARTS,
    TMP_MARKER,
    HashingWriter,
    atomic_writer,
    write_bytes,
)
from pipelines.storage.conditional import CONFLICT_CODES, read_bytes_versioned, write_bytes_if
from pipelines.storage.filesystem import (
    S3_CONFIG,
    S3FS_RETRIES,
    endpoint_of,
    get_fs,
    is_local,
    join,
    protocol_of,
)
from pipelines.storage.listing import Listed, Listing, is_hidden, list_files, list_names, scan
from pipelines.storage.objects import (
    check_output_folder,
    exists,
    is_folder,
    open_input,
    read_bytes,
    remove,
    size_of,
)
from pipelines.storage.options import DEFAULT_STORAGE_OPTIONS, StorageOptions
from pipelines.storage.retry import DEFAULT_RETRY, RetryPolicy
from pipelines.storage.translate import (
    ACCESS_CODES,
    BACKEND_PACKAGES,
    NOT_FOUND_CODES,
    TRANSIENT_CODES,
    is_backend_error,
    raise_translated,
    translate_error,
)

__all__ = [
    "ACCESS_CODES", "BACKEND_PACKAGES", "CONFLICT_CODES", "DEFAULT_PART_BYTES",
    "DEFAULT_RETRY", "NOT_FOUND_CODES", "S3FS_RETRIES", "S3_CONFIG", "S3_MAX_PARTS",
    "TMP_MARKER", "TRANSIENT_CODES", "HashingWriter", "Listed", "Listing", "RetryPolicy",
    "StorageAccessError", "StorageError", "StorageNotFoundError", "TransientStorageError",
    "atomic_writer", "check_output_folder", "endpoint_of", "exists", "get_fs", "is_backend_error",
    "is_folder", "is_hidden", "is_local", "join", "list_files", "list_names", "open_input",
    "protocol_of", "raise_translated", "read_bytes", "read_bytes_versioned", "remove", "scan",
    "size_of", "StorageOptions", "DEFAULT_STORAGE_OPTIONS", "translate_error", "write_bytes",
    "write_bytes_if",
]
