"""Reading, checking and deleting single objects (or local files) by URI.

Each operation goes through :data:`~pipelines.storage.retry.DEFAULT_RETRY` (or the
policy passed in) and raises tokenyard errors; a missing object is
:class:`~pipelines.errors.StorageNotFoundError`, except where the function says what
it returns instead.
"""

from __future__ import annotations

import io
import os

from pipelines.errors import ConfigError
from pipelines.storage.filesystem import get_fs, is_local
from pipelines.storage.options import StorageOptions
from pipelines.storage.retry import DEFAULT_RETRY, RetryPolicy
from pipelines.storage.translate import raise_translated

#: read-ahead for decompressed streams
DECOMPRESS_BUFFER_BYTES = 1 << 20


def read_bytes(uri: str, storage_options: StorageOptions | None = None, *,
               retry: RetryPolicy = DEFAULT_RETRY) -> bytes:
    fs, path = get_fs(uri, storage_options)
    return retry.call(lambda: fs.cat_file(path), uri=uri, operation="read",
                      storage_options=storage_options)


def open_input(uri: str, storage_options: StorageOptions | None = None,
               compression: str | None = None):
    """A binary file object for reading (decompressing ``gzip``/``zstd`` on the fly)."""
    fs, path = get_fs(uri, storage_options)
    try:
        f = fs.open(path, "rb", compression=compression)
        # decompressors lack readline (zstd) or are slow at it (gzip): buffer them
        return io.BufferedReader(f, DECOMPRESS_BUFFER_BYTES) if compression else f
    except Exception as err:
        raise_translated(err, uri, "open", storage_options)


def exists(uri: str, storage_options: StorageOptions | None = None) -> bool:
    fs, path = get_fs(uri, storage_options)
    return DEFAULT_RETRY.call(lambda: fs.exists(path), uri=uri, operation="check",
                              storage_options=storage_options)


def is_folder(uri: str, storage_options: StorageOptions | None = None) -> bool:
    """Whether the URI is a folder (locally) or a prefix with objects under it (S3)."""
    fs, path = get_fs(uri, storage_options)
    return DEFAULT_RETRY.call(lambda: fs.isdir(path), uri=uri, operation="check",
                              storage_options=storage_options)


def size_of(uri: str, storage_options: StorageOptions | None = None) -> int | None:
    """The object's size, or None when it does not exist."""
    fs, path = get_fs(uri, storage_options)

    def info():
        try:
            return fs.info(path)["size"]
        except FileNotFoundError:
            return None

    return DEFAULT_RETRY.call(info, uri=uri, operation="stat", storage_options=storage_options)


def remove(uri: str, storage_options: StorageOptions | None = None, *,
           recursive: bool = False) -> None:
    """Delete an object (or, ``recursive``, everything under a prefix); absent is fine."""
    fs, path = get_fs(uri, storage_options)

    def rm():
        try:
            fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    DEFAULT_RETRY.call(rm, uri=uri, operation="delete", storage_options=storage_options)


def check_output_folder(uri: str, storage_options: StorageOptions | None = None, *,
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
