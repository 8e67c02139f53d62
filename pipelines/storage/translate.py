"""Error translation: storage backend failures to the tokenyard error tree, once.

The rule (:func:`translate_error`): only storage failures are translated, that is
``OSError`` and its subclasses and the exceptions of the storage backends (botocore,
aiobotocore, aiohttp, urllib3, fsspec, s3fs), by S3 error code and exception type,
never by message text. Anything else (``TypeError``, ``AttributeError``, ``KeyError``,
``ValueError`` ...) is a programming error: it is returned unchanged, and every caller
re-raises it as it is (:func:`raise_translated`), never wrapped as "could not read", so
that ``--debug`` shows where the bug is. Tokenyard errors pass through unchanged too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
from typing import NoReturn

from pipelines.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    TokenyardError,
    TransientStorageError,
)
from pipelines.storage.filesystem import endpoint_of, is_local
from pipelines.storage.options import StorageOptions

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
#: exception type names (anywhere in the class's MRO) of dropped or stalled connections
TRANSIENT_TYPES = frozenset({
    "EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
    "ReadTimeoutError", "ResponseStreamingError", "IncompleteReadError",
    "ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError",
    "ClientOSError", "ServerTimeoutError", "ConnectionError", "TimeoutError",
    "ProtocolError", "HTTPClientError",
})
CREDENTIALS_TYPES = frozenset({"NoCredentialsError", "PartialCredentialsError",
                               "CredentialRetrievalError", "ProfileNotFound"})
#: root packages whose exceptions are storage backend failures
BACKEND_PACKAGES = frozenset({"botocore", "aiobotocore", "aiohttp", "urllib3", "fsspec", "s3fs"})


def error_code(err: BaseException) -> str | None:
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
    if names & TRANSIENT_TYPES:
        return True
    return isinstance(err, OSError) and err.errno in (
        errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE)


def _is_credentials_error(err: BaseException) -> bool:
    return bool({c.__name__ for c in type(err).__mro__} & CREDENTIALS_TYPES)


def is_backend_error(err: BaseException) -> bool:
    """A storage failure: an ``OSError``, a timeout, or an exception of a storage backend
    package."""
    if isinstance(err, (OSError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return True
    return any(cls.__module__.split(".", 1)[0] in BACKEND_PACKAGES
               for cls in type(err).__mro__[:-1])


def translate_error(err: BaseException, uri: str, operation: str,
                    storage_options: StorageOptions | None = None) -> BaseException:
    """Map a storage failure to the tokenyard error tree.

    Tokenyard errors and programming errors (anything :func:`is_backend_error` rejects)
    come back unchanged: re-raise those as they are (:func:`raise_translated`).
    """
    if isinstance(err, TokenyardError) or not is_backend_error(err):
        return err
    endpoint = endpoint_of(uri, storage_options)
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
    code = error_code(err)
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
                     storage_options: StorageOptions | None = None) -> NoReturn:
    """Raise ``err`` translated (from ``err``), or as it is when it is not a storage
    failure. Call it from the ``except`` block that caught ``err``."""
    translated = translate_error(err, uri, operation, storage_options)
    if translated is err:
        raise err
    raise translated from err
