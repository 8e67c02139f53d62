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

The retry stack
---------------

Six layers retry; each wraps the one above it in this table. *Worst case* is the
longest a layer can spend on an operation that keeps failing when every try of the
layer below takes its own worst case: an outage in which each request connects just
before the 5 s connect timeout and then hears nothing for the 20 s read timeout.
``tests/test_retry_stack.py`` computes every figure from the constants named below::

    layer        tries                          longest waits      worst case
    -----------  -----------------------------  -----------------  ----------
    botocore     5 per request, 25 s each       1 + 2 + 4 + 8 s    140 s
    s3fs         2 per call                     0.1 + 0.17 s       280.27 s
    RetryPolicy  4 per operation, until 30 s    0.5 + 1 + 2 s      310.27 s
    engine       4 per unit, 6 in a row         none               1861.62 s
    worker loss  20 Dask, 16 Spark, 20 local    none               no waits
    Airflow      3 per task (retries: 2)        5 + 5 min          6184.86 s

* **botocore** (:data:`S3_CONFIG`: standard mode, ``max_attempts`` 4 counts retries)
  tries a request 5 times, each bounded by ``connect_timeout`` (5 s) and
  ``read_timeout`` (20 s), and sleeps ``rand(0, 1) * min(2 ** (n - 1), 20)`` s after
  try ``n``.
* **s3fs** (:data:`S3FS_RETRIES`) calls botocore again on timeouts, dropped
  connections and SlowDown (a refused connection is botocore's alone), sleeping
  ``min(1.7 ** i * 0.1, 15)`` s after its failed call ``i`` (from 0).
* **RetryPolicy** (:data:`DEFAULT_RETRY`) tries a whole-object read or write, a listing
  or a check again on transient errors, sleeping ``min(8, 0.5 * 2 ** (n - 1))`` s times
  a jitter of 0.5 to 1, and starts no try after ``deadline_s`` (30 s): its worst case
  is the deadline plus one try (:meth:`RetryPolicy.worst_case_s`). A streamed read or
  a multipart upload relies on the layers below it and on the engine.
* The **engine** tries a unit again at once when it failed transiently, up to
  ``engine.max_attempts`` (4), and the run gives up after ``MAX_CONSECUTIVE_TRANSIENT``
  (6) transient failures in a row with no unit finishing in between: storage that is
  down ends a run after 6 failed tries, 6 x 310.27 s on one worker and fewer rounds
  when several workers fail at once.
* **Worker loss** (``pipelines/engines/limits.py``: 20 deaths of a Dask task's worker,
  16 failures of a Spark task, 20 breaks of the local process pool) adds no waits:
  each loss costs the units it was running, which the engine runs again.
* **Airflow** (``jobs/airflow/tokenyard_nightly.py``: ``retries`` 2, ``retry_delay``
  5 min; the Kubernetes DAG retries once) reruns a failed task, which resumes the
  finished units: 3 x 1861.62 s + 2 x 300 s for the whole stack, about 1 h 43 min.
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
