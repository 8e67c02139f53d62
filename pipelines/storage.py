"""The storage boundary: fsspec/s3fs filesystems, listing, atomic writes, retries.

Everything above this module speaks in URIs (``s3://bucket/key``, ``file:///x``, plain
paths) and tokenyard errors; backend exceptions are translated here, once, by error code
and type, never by message text.

The translation rule (:func:`translate_error`): only storage failures are translated,
that is ``OSError`` and its subclasses and the exceptions of the storage backends
(botocore, aiobotocore, aiohttp, urllib3, fsspec, s3fs). Anything else (``TypeError``,
``AttributeError``, ``KeyError``, ``ValueError`` ...) is a programming error: it is
returned unchanged, and every caller re-raises it as it is (:func:`raise_translated`),
never wrapped as "could not read", so that ``--debug`` shows where the bug is.
Tokenyard errors pass through unchanged too.

Writes become visible only when cleanly closed: a local file is written beside its
final name and renamed; an S3 object is a single PUT or a multipart upload completed
on success and aborted on failure, so a killed writer leaves nothing visible.
Credentials are never passed here: s3fs finds them through the standard AWS chain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import io
import hashlib
import logging
import os
import random
import re
import stat as stat_mod
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import fsspec
from fsspec.core import url_to_fs
from fsspec.utils import glob_translate

from pipelines import uris
from pipelines.errors import (
    ConfigError,
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    TokenyardError,
    TransientStorageError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: multipart part size: 10,000 parts (the S3 limit) of 64 MiB allow 625 GiB per object
DEFAULT_PART_BYTES = 64 * 2**20
S3_MAX_PARTS = 10_000
#: read-ahead for decompressed streams
DECOMPRESS_BUFFER_BYTES = 1 << 20
#: suffix of in-progress local files; never a final name
TMP_MARKER = ".tmp-"

#: S3 error codes worth another attempt
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
    "500", "502", "503", "504",
})
ACCESS_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "403",
})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for whole-object operations, on transient errors only.

    s3fs and botocore retry single requests already; this covers what outlasts them
    (a dropped connection mid-transfer, a burst of throttling). No attempt starts after
    ``deadline_s``, so a sustained outage fails an operation in bounded time (about
    ``deadline_s`` plus one attempt, itself bounded by the request timeouts and
    retries in :data:`S3_CONFIG`) instead of hanging.
    """

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    deadline_s: float = 30.0

    def call(self, fn: Callable[[], T], *, uri: str, operation: str,
             storage: dict | None = None) -> T:
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as err:
                translated = translate_error(err, uri, operation, storage)
                if translated is err and not isinstance(err, TokenyardError):
                    raise  # a programming error: as it is, never retried
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                late = time.monotonic() - started + delay > self.deadline_s
                if not translated.transient or attempt == self.attempts or late:
                    if translated is err:
                        raise
                    raise translated from err
                log.info("%s %s failed (%s); retry %d/%d in %.1fs", operation, uri,
                         translated.reason, attempt, self.attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


DEFAULT_RETRY = RetryPolicy()

#: botocore settings for every S3 request: a few quick retries with backoff (standard
#: mode: at most ~7 s of sleeps), and timeouts that turn a stalled connection into a
#: retry instead of a hang. Adaptive mode's client-side rate limiter was left out: under
#: a sustained run of 503s it held requests for minutes.
S3_CONFIG = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 20,
}
#: s3fs's own retries of a request (on SlowDown and dropped connections), on top of
#: botocore's; its default (5) multiplied the wait under an outage
S3FS_RETRIES = 2


# -- filesystems ------------------------------------------------------------------


def storage_options(endpoint_url: str | None = None, region: str | None = None,
                    anon: bool = False, profile: str | None = None) -> dict:
    """The plain, picklable storage settings that travel to workers (no credentials)."""
    return {"endpoint_url": endpoint_url, "region": region, "anon": anon, "profile": profile}


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def protocol_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def endpoint_of(uri: str, storage: dict | None) -> str | None:
    if is_local(uri):
        return None
    storage = storage or {}
    return storage.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or \
        os.environ.get("AWS_ENDPOINT_URL")


def _fs_kwargs(uri: str, storage: dict | None) -> dict:
    storage = storage or {}
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in ("s3", "s3a"):
        client_kwargs = {}
        if storage.get("endpoint_url"):
            client_kwargs["endpoint_url"] = storage["endpoint_url"]
        if storage.get("region"):
            client_kwargs["region_name"] = storage["region"]
        kwargs = {
            "client_kwargs": client_kwargs,
            "config_kwargs": dict(S3_CONFIG),
            "use_listings_cache": False,
        }
        if storage.get("anon"):
            kwargs["anon"] = True
        if storage.get("profile"):
            kwargs["profile"] = storage["profile"]
        return kwargs
    if protocol == "file":
        return {"auto_mkdir": True}
    return {}


def get_fs(uri: str, storage: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URI and the path within it."""
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    protocol = protocol_of(uri)
    if protocol not in uris.SUPPORTED_SCHEMES:
        uris.check_location(uri, "the location")  # raises, naming the supported schemes
    if protocol == "s3":
        uris.check_endpoint_env()
        if storage and storage.get("endpoint_url"):
            uris.check_endpoint(storage["endpoint_url"], "storage.endpoint_url")
    try:
        fs, path = url_to_fs(uri, **_fs_kwargs(uri, storage))
    except ImportError as err:
        raise StorageError(uri, "open", f"no filesystem for this protocol ({err})",
                           hint="Install the fsspec backend for it, e.g. s3fs for s3://.") from None
    if getattr(fs, "retries", None) is not None and "s3" in fs.protocol:
        fs.retries = S3FS_RETRIES
    return fs, path


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *[p.strip("/") for p in parts]])


def _uri_of(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    if is_local(like):
        return path
    return fs.unstrip_protocol(path)


# -- error translation ------------------------------------------------------------


def _error_code(err: BaseException) -> str | None:
    """The S3 error code behind an exception, following its causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status:
                return str(status)
        err = err.__cause__ or err.__context__
    return None


def _is_transient_type(err: BaseException) -> bool:
    names = {c.__name__ for c in type(err).__mro__}
    transient = {
        "EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
        "ReadTimeoutError", "ResponseStreamingError", "IncompleteReadError",
        "ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError",
        "ClientOSError", "ServerTimeoutError", "ConnectionError", "TimeoutError",
        "ProtocolError", "HTTPClientError",
    }
    if names & transient:
        return True
    return isinstance(err, OSError) and err.errno in (
        errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE)


def _is_credentials_error(err: BaseException) -> bool:
    names = {c.__name__ for c in type(err).__mro__}
    return bool(names & {"NoCredentialsError", "PartialCredentialsError",
                         "CredentialRetrievalError", "ProfileNotFound"})


#: root packages whose exceptions are storage backend failures
BACKEND_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp", "urllib3", "fsspec", "s3fs"})


def is_backend_error(err: BaseException) -> bool:
    """A storage failure: an ``OSError``, a timeout, or an exception of a storage backend
    package."""
    if isinstance(err, (OSError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return True
    return any(cls.__module__.split(".", 1)[0] in BACKEND_PACKAGES
               for cls in type(err).__mro__[:-1])


def translate_error(err: BaseException, uri: str, operation: str,
                    storage: dict | None = None) -> BaseException:
    """Map a storage failure to the tokenyard error tree.

    Tokenyard errors and programming errors (anything :func:`is_backend_error` rejects)
    come back unchanged: re-raise those as they are (:func:`raise_translated`).
    """
    if isinstance(err, TokenyardError) or not is_backend_error(err):
        return err
    endpoint = endpoint_of(uri, storage)
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(_is_credentials_error(e) for e in chain):
        return StorageAccessError(
            uri, operation, "no AWS credentials were found", endpoint=endpoint,
            hint="Credentials come from the standard AWS chain: environment variables, "
                 "a profile (storage.profile or AWS_PROFILE), or the pod's role (IRSA/Pod "
                 "Identity); set storage.anon: true for public buckets.")
    code = _error_code(err)
    if code in ACCESS_CODES or (code is None and isinstance(err, PermissionError)):
        if is_local(uri):
            return StorageAccessError(
                uri, operation, "permission denied", endpoint=endpoint,
                hint="This user may not do that there: check the folder's owner and mode "
                     "(a read-only folder or file system?), or choose another location.")
        return StorageAccessError(
            uri, operation, f"access denied ({code or 'permission error'})", endpoint=endpoint,
            hint="Check that the role or credentials in use may do this on that bucket "
                 "and prefix (see cluster_specs/ for the policy the pipeline needs).")
    if code in NOT_FOUND_CODES or (code is None and isinstance(err, FileNotFoundError)):
        return StorageNotFoundError(uri, operation, "it does not exist", endpoint=endpoint)
    if code in TRANSIENT_CODES or any(_is_transient_type(e) for e in chain):
        reason = f"{code or type(err).__name__}: the service is throttling, failing or unreachable"
        return TransientStorageError(
            uri, operation, reason, endpoint=endpoint,
            hint="This was retried with backoff; check the endpoint and the network, then "
                 "run again: finished units are kept.")
    if is_local(uri) and isinstance(err, NotADirectoryError):
        return StorageError(uri, operation, "a part of that path is a file, not a folder",
                            endpoint=endpoint)
    if is_local(uri) and isinstance(err, IsADirectoryError):
        return StorageError(uri, operation, "it is a folder, not a file", endpoint=endpoint)
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return StorageError(uri, operation, detail, endpoint=endpoint)


def raise_translated(err: BaseException, uri: str, operation: str,
                     storage: dict | None = None) -> NoReturn:
    """Raise ``err`` translated (from ``err``), or as it is when it is not a storage
    failure. Call it from the ``except`` block that caught ``err``."""
    translated = translate_error(err, uri, operation, storage)
    if translated is err:
        raise err
    raise translated from err


# -- reading ----------------------------------------------------------------------


def read_bytes(uri: str, storage: dict | None = None, *,
               retry: RetryPolicy = DEFAULT_RETRY) -> bytes:
    fs, path = get_fs(uri, storage)
    return retry.call(lambda: fs.cat_file(path), uri=uri, operation="read", storage=storage)


def open_input(uri: str, storage: dict | None = None, compression: str | None = None):
    """A binary file object for reading (decompressing ``gzip``/``zstd`` on the fly)."""
    fs, path = get_fs(uri, storage)
    try:
        f = fs.open(path, "rb", compression=compression)
        # decompressors lack readline (zstd) or are slow at it (gzip): buffer them
        return io.BufferedReader(f, DECOMPRESS_BUFFER_BYTES) if compression else f
    except Exception as err:
        raise_translated(err, uri, "open", storage)


def exists(uri: str, storage: dict | None = None) -> bool:
    fs, path = get_fs(uri, storage)
    return DEFAULT_RETRY.call(lambda: fs.exists(path), uri=uri, operation="check",
                              storage=storage)


def is_folder(uri: str, storage: dict | None = None) -> bool:
    """Whether the URI is a folder (locally) or a prefix with objects under it (S3)."""
    fs, path = get_fs(uri, storage)
    return DEFAULT_RETRY.call(lambda: fs.isdir(path), uri=uri, operation="check",
                              storage=storage)


def check_output_folder(uri: str, storage: dict | None = None, *,
                        field: str = "the output") -> None:
    """A local output prefix must be a folder this user may write, or one that can be
    made in a folder this user may write; a ConfigError (exit 2) otherwise. Object
    stores are checked by their first write."""
    if not is_local(uri):
        return
    path = os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri)
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            return
        existing = parent
    if not os.path.isdir(existing):
        where = "it is a file" if existing == path else f"{existing} is a file"
        raise ConfigError(f"{field} {uri} cannot be a folder: {where}.",
                          hint="Point it at a folder (an existing one or a new one), not at "
                               "a file or inside one.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else f"{existing}, where it would be made,"
        raise ConfigError(f"{field} {uri} is not writable: {where} may not be written by "
                          "this user (a read-only folder or file system?).",
                          hint="Choose a folder you may write, or change its permissions.")


def size_of(uri: str, storage: dict | None = None) -> int | None:
    """The object's size, or None when it does not exist."""
    fs, path = get_fs(uri, storage)

    def info():
        try:
            return fs.info(path)["size"]
        except FileNotFoundError:
            return None

    return DEFAULT_RETRY.call(info, uri=uri, operation="stat", storage=storage)


@dataclass(frozen=True)
class Listed:
    uri: str
    key: str
    size: int
    version: str


def _glob_base(path: str) -> str:
    return uris.glob_base(path)


def _version(info: dict) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if isinstance(mtime, (int, float)):
        return str(int(mtime * 1e9))
    return str(mtime or "")


def is_hidden(key: str) -> bool:
    """Whether a listing skips this key: a name in it starts with ``.`` or ``_``."""
    return any(part.startswith((".", "_")) for part in key.split("/"))




def _broken_link(link: str) -> ConfigError:
    return ConfigError(
        f"the input {link} is a symbolic link to {os.readlink(link)}, which does not exist.",
        hint="Fix or remove the link, or exclude it from input.uri.")


def _local_file_info(path: str, hidden: bool) -> dict | None:
    """stat() through symbolic links: a regular file's size and mtime; None for anything
    else (a FIFO or socket is never an input). A broken link is an error unless hidden
    (an editor's lock file such as ``.#notes.jsonl``)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.path.islink(path):
            raise
        if hidden:
            return {"type": "file", "size": 0, "mtime": 0.0}
        raise _broken_link(path) from None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return {"type": "file", "size": st.st_size, "mtime": st.st_mtime}


def _raise(err: OSError) -> None:
    raise err


def _local_listing(path: str, glob: bool) -> tuple[str, dict[str, dict]]:
    """Files under a local path or glob, following symbolic links to files and folders.

    A folder reached twice (a link to a folder listed anyway, a link back to an
    ancestor) is walked once, and a file reached through two names is listed once
    (under the first name in key order), so nothing is read twice.
    """
    base = uris.glob_base(path).rstrip("/") if glob else path.rstrip("/") or "/"
    if not os.path.isdir(base):
        if glob or not os.path.lexists(base):
            return base, {}
        info = _local_file_info(base, hidden=False)
        return base.rsplit("/", 1)[0], ({base: info} if info else {})
    found: dict[str, dict] = {}
    walked: set[str] = set()
    for root, dirs, files in os.walk(base, followlinks=True, onerror=_raise):
        real = os.path.realpath(root)
        if real in walked:
            dirs[:] = []
            continue
        walked.add(real)
        dirs.sort()
        hidden_root = root != base and is_hidden(os.path.relpath(root, base))
        for name in files:
            full = os.path.join(root, name)
            info = _local_file_info(full, hidden_root or is_hidden(name))
            if info is not None:
                found[full] = info
    if glob:
        pattern = re.compile(glob_translate(path))
        found = {p: i for p, i in found.items() if pattern.match(p)}
    seen: dict[str, str] = {}
    for p in sorted(found):
        real = os.path.realpath(p)
        if real in seen:
            log.warning("%s is %s again (a symbolic link): listed once", p, seen[real])
            del found[p]
        else:
            seen[real] = p
    return base, found


@dataclass(frozen=True)
class Listing:
    """What a URI names: its input files, and the keys skipped as hidden."""

    files: tuple[Listed, ...]
    #: keys with a name starting with ``.`` or ``_`` (markers, temporaries), not listed
    hidden: tuple[str, ...]


def scan(uri: str, storage: dict | None = None) -> Listing:
    """Files under a URI (a file, a prefix, or a glob), sorted by key.

    Names starting with ``.`` or ``_`` (markers such as ``_SUCCESS``, temporaries) are
    skipped, as Spark and Hadoop do, and returned as ``hidden``. Local symbolic links
    are followed.
    """
    fs, path = get_fs(uri, storage)
    glob = uris.has_glob(path)

    def listing() -> tuple[str, dict]:
        if is_local(uri):
            return _local_listing(path, glob)
        if glob:
            return _glob_base(path), fs.glob(path, detail=True)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return path, {}
        if info["type"] == "directory":
            return path, fs.find(path, detail=True)
        return path.rsplit("/", 1)[0], {path: info}

    base, found = DEFAULT_RETRY.call(listing, uri=uri, operation="list", storage=storage)
    base = base.rstrip("/")
    out, hidden = [], []
    for p, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        key = p[len(base) + 1:] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
        if is_hidden(key):
            hidden.append(key)
            continue
        out.append(Listed(uri=_uri_of(fs, p, uri), key=key, size=int(info["size"]),
                          version=_version(info)))
    return Listing(tuple(out), tuple(hidden))


def list_files(uri: str, storage: dict | None = None) -> list[Listed]:
    """The input files a URI names (see :func:`scan`)."""
    return list(scan(uri, storage).files)


# -- writing ----------------------------------------------------------------------


class HashingWriter:
    """A write-only file that counts and hashes what passes through it."""

    def __init__(self, f, uri: str = "", storage: dict | None = None) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        self._uri = uri
        self._storage = storage
        self.size = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._sha.update(view)
        try:
            self._f.write(view)
        except Exception as err:  # a part upload failed
            raise_translated(err, self._uri, "write", self._storage)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._f.flush()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _guarded(fn: Callable[[], T], uri: str, storage: dict | None) -> T:
    try:
        return fn()
    except Exception as err:
        raise_translated(err, uri, "write", storage)


@contextmanager
def atomic_writer(uri: str, storage: dict | None = None, *,
                  part_bytes: int = DEFAULT_PART_BYTES) -> Iterator[HashingWriter]:
    """Write an object that becomes visible only if the block exits cleanly.

    Errors of the block itself pass through unchanged; storage errors are translated.
    """
    fs, path = get_fs(uri, storage)
    if is_local(uri):
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f".{os.path.basename(path)}{TMP_MARKER}{uuid.uuid4().hex}")

        def open_tmp():
            os.makedirs(parent, exist_ok=True)
            return open(tmp, "wb")

        f = _guarded(open_tmp, uri, storage)
        try:
            yield HashingWriter(f, uri, storage)
        except BaseException:
            f.close()
            os.unlink(tmp)
            raise

        def publish():
            with f:
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

        _guarded(publish, uri, storage)
        return
    f = _guarded(lambda: fs.open(path, "wb", block_size=part_bytes, autocommit=False),
                 uri, storage)
    try:
        yield HashingWriter(f, uri, storage)
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

    _guarded(complete, uri, storage)


def write_bytes(uri: str, data: bytes, storage: dict | None = None, *,
                retry: RetryPolicy = DEFAULT_RETRY) -> None:
    """Write a small object atomically (one PUT, or a local rename)."""
    fs, path = get_fs(uri, storage)
    if is_local(uri):
        def put():
            with atomic_writer(uri, storage) as w:
                w.write(data)
    else:
        def put():
            fs.pipe_file(path, data)
    retry.call(put, uri=uri, operation="write", storage=storage)


def remove(uri: str, storage: dict | None = None, *, recursive: bool = False) -> None:
    fs, path = get_fs(uri, storage)

    def rm():
        try:
            fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    DEFAULT_RETRY.call(rm, uri=uri, operation="delete", storage=storage)


def list_names(prefix: str, storage: dict | None = None) -> list[str]:
    """Names (relative to ``prefix``) of every file under it, including hidden ones."""
    fs, path = get_fs(prefix, storage)

    def find():
        try:
            return fs.find(path)
        except FileNotFoundError:
            return []

    found = DEFAULT_RETRY.call(find, uri=prefix, operation="list", storage=storage)
    base = path.rstrip("/") + "/"
    return sorted(p[len(base):] for p in found if p.startswith(base))


# -- conditional writes (compare-and-swap of small shared objects) ----------------

#: S3 answers a failed If-Match / If-None-Match with these codes
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def read_bytes_versioned(uri: str, storage: dict | None = None) -> tuple[bytes, str] | None:
    """An object's bytes and its version token (ETag; locally a hash); None if absent.

    The ETag is read before the bytes, so a writer in between makes the version stale
    (a later conditional write then fails and is retried), never the bytes.
    """
    fs, path = get_fs(uri, storage)

    def get():
        try:
            if is_local(uri):
                data = fs.cat_file(path)
                return data, hashlib.sha256(data).hexdigest()
            version = _version(fs.info(path))
            return fs.cat_file(path), version
        except FileNotFoundError:
            return None

    return DEFAULT_RETRY.call(get, uri=uri, operation="read", storage=storage)


def write_bytes_if(uri: str, data: bytes, storage: dict | None = None, *,
                   expected: str | None) -> bool:
    """Write a small object only if it is still at version ``expected`` (None: absent).

    Returns False when another writer got there first; the caller re-reads and tries
    again. On S3 this is a conditional PUT (If-Match / If-None-Match), which AWS S3 and
    recent S3-compatible stores honour; locally an exclusive lock on a sidecar file.
    """
    fs, path = get_fs(uri, storage)
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
            write_bytes(uri, data, storage)
            return True
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": f'"{expected}"'}

    def put():
        try:
            fs.pipe_file(path, data, **condition)
            return True
        except Exception as err:
            if _error_code(err) in CONFLICT_CODES:
                return False
            raise

    return DEFAULT_RETRY.call(put, uri=uri, operation="write", storage=storage)
