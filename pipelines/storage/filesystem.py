"""The filesystem factory: which fsspec filesystem serves a URI, with which settings.

Every storage operation starts here (:func:`get_fs`). S3 goes through s3fs with the
request settings below (botocore retries and timeouts, s3fs's own retries, no listing
cache); local paths get ``auto_mkdir``. Credentials are never passed: s3fs finds them
through the standard AWS chain. The URI helpers (:func:`join`, :func:`is_local`, ...)
are plain string functions that touch nothing.
"""

from __future__ import annotations

import copy
import os

import fsspec
from fsspec.core import url_to_fs

from pipelines import uris
from pipelines.errors import StorageError
from pipelines.storage.options import DEFAULT_STORAGE_OPTIONS, StorageOptions

#: botocore settings for every S3 request: a few quick retries with backoff (standard
#: mode: ``max_attempts`` counts retries, so 5 tries with sleeps of at most 1 + 2 + 4 + 8
#: s), and timeouts that turn a stalled connection into a retry instead of a hang.
#: Adaptive mode's client-side rate limiter was left out: under a sustained run of 503s
#: it held requests for minutes.
S3_CONFIG = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 20,
}
#: s3fs's own retries of a request (on SlowDown and dropped connections), on top of
#: botocore's; its default (5) multiplied the wait under an outage
S3FS_RETRIES = 2


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def protocol_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def endpoint_of(uri: str, storage_options: StorageOptions | None) -> str | None:
    """The S3 endpoint requests for ``uri`` go to, for messages (None: local, or AWS)."""
    if is_local(uri):
        return None
    endpoint = storage_options.endpoint_url if storage_options else None
    return endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or \
        os.environ.get("AWS_ENDPOINT_URL")


def _fs_kwargs(uri: str, storage_options: StorageOptions | None) -> dict:
    options = storage_options or DEFAULT_STORAGE_OPTIONS
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in ("s3", "s3a"):
        client_kwargs = {}
        if options.endpoint_url:
            client_kwargs["endpoint_url"] = options.endpoint_url
        if options.region:
            client_kwargs["region_name"] = options.region
        kwargs = {
            "client_kwargs": client_kwargs,
            # a copy all the way down: botocore rewrites the retries dict it is given
            "config_kwargs": copy.deepcopy(S3_CONFIG),
            "use_listings_cache": False,
        }
        if options.anon:
            kwargs["anon"] = True
        if options.profile:
            kwargs["profile"] = options.profile
        return kwargs
    if protocol == "file":
        return {"auto_mkdir": True}
    return {}


def get_fs(uri: str,
           storage_options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URI and the path within it."""
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    protocol = protocol_of(uri)
    if protocol not in uris.SUPPORTED_SCHEMES:
        uris.check_location(uri, "the location")  # raises, naming the supported schemes
    if protocol == "s3":
        uris.check_endpoint_env()
        if storage_options and storage_options.endpoint_url:
            uris.check_endpoint(storage_options.endpoint_url, "storage.endpoint_url")
    try:
        fs, path = url_to_fs(uri, **_fs_kwargs(uri, storage_options))
    except ImportError as err:
        raise StorageError(uri, "open", f"no filesystem for this protocol ({err})",
                           hint="Install the fsspec backend for it, e.g. s3fs for s3://.") from None
    if getattr(fs, "retries", None) is not None and "s3" in fs.protocol:
        fs.retries = S3FS_RETRIES
    return fs, path


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *[p.strip("/") for p in parts]])


def uri_of(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    """The URI of ``path`` on ``fs``, written the way ``like`` is (a plain local path
    stays plain)."""
    if is_local(like):
        return path
    return fs.unstrip_protocol(path)
