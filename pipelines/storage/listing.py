"""Listing: the input files a URI names (a file, a prefix or a glob), and every name
under an output prefix.

Listings are sorted by key. Names starting with ``.`` or ``_`` (markers such as
``_SUCCESS``, temporaries) are hidden from input listings, as Spark and Hadoop hide
them. Local symbolic links are followed; a folder or file reached twice is listed once.
Each file's *version* is its ETag on object stores and its mtime (ns) on local disks:
it changes when the content does.
"""

from __future__ import annotations

import logging
import os
import re
import stat as stat_mod
from dataclasses import dataclass

from fsspec.utils import glob_translate

from pipelines import uris
from pipelines.errors import ConfigError
from pipelines.storage.filesystem import get_fs, is_local, uri_of
from pipelines.storage.options import StorageOptions
from pipelines.storage.retry import DEFAULT_RETRY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listed:
    uri: str
    key: str
    size: int
    version: str


@dataclass(frozen=True)
class Listing:
    """What a URI names: its input files, and the keys skipped as hidden."""

    files: tuple[Listed, ...]
    #: keys with a name starting with ``.`` or ``_`` (markers, temporaries), not listed
    hidden: tuple[str, ...]


def version_of(info: dict) -> str:
    """A listed file's version: its ETag, else its mtime in ns."""
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


def scan(uri: str, storage_options: StorageOptions | None = None) -> Listing:
    """Files under a URI (a file, a prefix, or a glob), sorted by key.

    Names starting with ``.`` or ``_`` (markers such as ``_SUCCESS``, temporaries) are
    skipped, as Spark and Hadoop do, and returned as ``hidden``. Local symbolic links
    are followed.
    """
    fs, path = get_fs(uri, storage_options)
    glob = uris.has_glob(path)

    def listing() -> tuple[str, dict]:
        if is_local(uri):
            return _local_listing(path, glob)
        if glob:
            return uris.glob_base(path), fs.glob(path, detail=True)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return path, {}
        if info["type"] == "directory":
            return path, fs.find(path, detail=True)
        return path.rsplit("/", 1)[0], {path: info}

    base, found = DEFAULT_RETRY.call(listing, uri=uri, operation="list",
                                     storage_options=storage_options)
    base = base.rstrip("/")
    out, hidden = [], []
    for p, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        key = p[len(base) + 1:] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
        if is_hidden(key):
            hidden.append(key)
            continue
        out.append(Listed(uri=uri_of(fs, p, uri), key=key, size=int(info["size"]),
                          version=version_of(info)))
    return Listing(tuple(out), tuple(hidden))


def list_files(uri: str, storage_options: StorageOptions | None = None) -> list[Listed]:
    """The input files a URI names (see :func:`scan`)."""
    return list(scan(uri, storage_options).files)


def list_names(prefix: str, storage_options: StorageOptions | None = None) -> list[str]:
    """Names (relative to ``prefix``) of every file under it, including hidden ones."""
    fs, path = get_fs(prefix, storage_options)

    def find():
        try:
            return fs.find(path)
        except FileNotFoundError:
            return []

    found = DEFAULT_RETRY.call(find, uri=prefix, operation="list", storage_options=storage_options)
    base = path.rstrip("/") + "/"
    return sorted(p[len(base):] for p in found if p.startswith(base))
