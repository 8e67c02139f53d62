"""Locations a user writes, checked where they enter: before anything is read or written.

Every location a user gives passes one of these checks at the edge (the job file's
``input.uri`` and each entry of a list, ``tokenizer.path``, ``output.uri``,
``storage.endpoint_url`` and ``engine.*`` addresses; ``--output``, ``--endpoint-url``,
``--scheduler``, ``--master`` and the arguments of ``status`` and ``verify``; the
``AWS_ENDPOINT_URL`` variables). A mistake is a :class:`~pipelines.errors.LocationError`
(a ConfigError: exit 2) that names the field, what was found, the rule, and what to
write instead.

The rules:

* A location is a local path or ``scheme://...`` with a supported scheme (``s3``,
  ``s3a``, ``file``). Another scheme is refused, naming the supported ones.
* Something that looks like a URI but is not one is refused, never taken as a local
  folder: ``s3:/bucket/x`` (one slash short), ``s3:bucket``, ``s3:`` alone. A local
  name with a colon in its first segment must be written ``./name``.
* ``s3://`` needs a bucket (``s3://`` alone or ``s3:///key`` is what an empty shell
  variable leaves), named by S3's rules; keys have no empty, ``.`` or ``..`` segments.
* ``file://`` is followed by an absolute path (``file:///data/raw``).
* No empty location, no whitespace at either end, no control characters, no
  ``${VAR}`` left unexpanded.
* Globs: ``**`` is a whole path segment; output prefixes and the tokenizer file take no
  glob at all.

``location_key`` gives the comparable form of a location (scheme family and normalized
path) that overlap checks use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pipelines.errors import LocationError

#: schemes tokenyard reads and writes (s3a is the Hadoop spelling of s3)
SUPPORTED_SCHEMES = ("s3", "s3a", "file")
#: where an S3-compatible endpoint may come from besides the job file
ENDPOINT_ENV_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
#: Dask comm protocols an address may name
DASK_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss", "inproc")

_SCHEME_LIKE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)$", re.S)
#: S3 bucket names (lenient enough for legacy us-east-1 names with capitals or '_')
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_UNEXPANDED = re.compile(r"\$\{[^}]*\}|\$\([^)]*\)")
_GLOB_CHARS = "*?["
#: nightly date placeholders in input.uri ({ds}, {yyyy}, ...), filled in per night
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*)(:(?P<port>[^:]*))?$")
_SPARK_LOCAL = re.compile(r"^local(\[(\d+|\*)(,\d+)?\])?$|^local-cluster\[\d+,\d+,\d+\]$")


def _fail(field: str, value: str, problem: str, hint: str) -> LocationError:
    return LocationError(f"{field} {value!r} {problem}", hint=hint)


_LOCATION_HINT = ("Write s3://bucket/prefix/ for S3 (or an S3-compatible store), "
                  "file:///absolute/path or a plain path for local files.")


def _basic(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise LocationError(f"{field} must be a string, not {type(value).__name__} ({value!r}).",
                            hint=_LOCATION_HINT)
    if not value:
        raise LocationError(f"{field} is empty.",
                            hint="An unset shell or template variable leaves it empty. "
                               + _LOCATION_HINT)
    if value != value.strip():
        raise _fail(field, value, "starts or ends with whitespace.",
                    "Remove the spaces (quote the value in YAML if it needs them inside).")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _fail(field, value, "contains a control character (a newline or tab?).",
                    "Write the location on one line, without control characters.")
    found = _UNEXPANDED.search(value)
    if found:
        raise _fail(field, value, f"holds {found.group(0)}, a variable that was never expanded.",
                    "tokenyard does not expand variables in job files or arguments: write the "
                    "value itself, or let your shell or scheduler fill it in first.")
    return value


def _check_globs(field: str, value: str, path: str, glob: bool) -> None:
    has_glob = any(ch in path for ch in _GLOB_CHARS)
    if has_glob and not glob:
        raise _fail(field, value, "contains a glob character (*, ? or [).",
                    f"{field} names one location; globs are for input.uri only.")
    if has_glob and any("**" in seg and seg != "**" for seg in path.split("/")):
        raise _fail(field, value, "uses '**' inside a path segment.",
                    "'**' matches any number of folders and must be a segment of its own, "
                    "as in raw/**/*.jsonl.")


def _check_s3(field: str, value: str, rest: str, *, glob: bool, placeholders: bool) -> None:
    bucket, _, key = rest.partition("/")
    shown = _PLACEHOLDER.sub("x", bucket) if placeholders else bucket
    if not bucket:
        raise _fail(field, value, "names no bucket.",
                    "Write s3://bucket/prefix/. An empty shell variable (s3://$BUCKET/...) "
                    "leaves the bucket out.")
    if not _BUCKET.match(shown) or ".." in shown:
        raise _fail(field, value, f"names the bucket {bucket!r}, which is not a valid S3 "
                    "bucket name.",
                    "Bucket names are 3-63 characters: lowercase letters, digits, '.' and '-', "
                    "starting and ending with a letter or digit.")
    segments = key.split("/")
    inner = segments[:-1] if key.endswith("/") else segments
    if key and any(seg in ("", ".", "..") for seg in inner):
        raise _fail(field, value, "has an empty, '.' or '..' segment in its key.",
                    "S3 keys are not paths: '//' (often an empty variable), '.' and '..' are "
                    "kept as they are. Write the key without them.")
    _check_globs(field, value, key, glob)


def check_location(value: object, field: str, *, glob: bool = False,
                   placeholders: bool = False) -> str:
    """``value`` if it is a local path or a supported URI; else a LocationError naming
    ``field``.

    ``glob`` allows glob characters (input URIs); ``placeholders`` allows nightly date
    placeholders such as ``{ds}`` in the bucket name.
    """
    value = _basic(value, field)
    match = _SCHEME_LIKE.match(value)
    if match is None:  # a plain local path
        first = value.split("//", 1)[0]
        if "//" in value and first.lower() in SUPPORTED_SCHEMES:
            raise _fail(field, value, f"looks like a {first.lower()} URI without its colon "
                        "and is not taken as a local folder.",
                        f"Did you mean {first.lower()}://{value.split('//', 1)[1]}? "
                        + _LOCATION_HINT)
        _check_globs(field, value, value, glob)
        return value
    scheme, rest = match.group("scheme"), match.group("rest")
    if not rest.startswith("//"):
        lowered = scheme.lower()
        if lowered in SUPPORTED_SCHEMES:
            fix = (f"{lowered}://{rest.lstrip('/')}" if lowered != "file"
                   else f"file:///{rest.lstrip('/')}")
            article = "an" if lowered[0] in "aefhilmnorsx" else "a"
            problem = (f"looks like {article} {lowered} URI but is not one: '{scheme}:' must be "
                       "followed by '//'.")
            hint = f"Did you mean {fix}? " + _LOCATION_HINT
        else:
            problem = (f"looks like a URI ('{scheme}:') but is not one, and is not taken as a "
                       "local folder named after it.")
            hint = ("For a local path whose first name holds a colon, write ./" + value + ". "
                    + _LOCATION_HINT)
        raise _fail(field, value, problem, hint)
    rest = rest[2:]
    if scheme not in SUPPORTED_SCHEMES and scheme.lower() in SUPPORTED_SCHEMES:
        raise _fail(field, value, f"writes the scheme as '{scheme}://'; schemes are "
                    "lowercase.", f"Write {scheme.lower()}://{rest}.")
    if scheme not in SUPPORTED_SCHEMES:
        known = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        raise _fail(field, value, f"uses the scheme '{scheme}://', which tokenyard does not "
                    f"support (it reads and writes {known} and local paths).",
                    "Copy the data to S3 or a local folder, or use an S3-compatible endpoint "
                    "(storage.endpoint_url).")
    if scheme == "file":
        if not rest.startswith("/"):
            raise _fail(field, value, "is a file:// URI without an absolute path.",
                        f"Write file:///{rest.lstrip('/')} (three slashes), or a plain path.")
        _check_globs(field, value, rest, glob)
        return value
    _check_s3(field, value, rest, glob=glob, placeholders=placeholders)
    return value


def check_endpoint(value: object, field: str) -> str:
    """An S3 endpoint URL: ``http(s)://host[:port]``."""
    value = _basic(value, field)
    match = _SCHEME_LIKE.match(value)
    scheme = match.group("scheme").lower() if match else ""
    rest = match.group("rest") if match else ""
    hint = "Write the endpoint as http://host:port or https://host, e.g. http://127.0.0.1:9000."
    if scheme not in ("http", "https") or not rest.startswith("//"):
        raise _fail(field, value, "is not an http:// or https:// URL.", hint)
    netloc = rest[2:].split("/", 1)[0]
    host = _HOST_PORT.match(netloc.rsplit("@", 1)[-1])
    if not netloc or host is None or not host.group("host"):
        raise _fail(field, value, "names no host.", hint)
    _check_port(host.group("port"), field, value, hint)
    return value


def _check_port(port: str | None, field: str, value: str, hint: str) -> None:
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise _fail(field, value, f"has the port {port!r}, which is not a number from 1 to "
                    "65535.", hint)


def check_endpoint_env(environ: dict | None = None) -> None:
    """The ``AWS_ENDPOINT_URL*`` variables, when set, are endpoint URLs."""
    environ = os.environ if environ is None else environ
    for name in ENDPOINT_ENV_VARS:
        if environ.get(name):
            check_endpoint(environ[name], f"the environment variable {name}")


def check_scheduler_address(value: object, field: str) -> str:
    """A Dask scheduler address: ``tcp://host:port`` (or another comm protocol), or
    ``host:port``."""
    value = _basic(value, field)
    protocols = ", ".join(f"{p}://" for p in DASK_PROTOCOLS)
    hint = f"Write the scheduler address as tcp://host:8786 ({protocols})."
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
        if not _HOST_PORT.match(value):
            raise _fail(field, value, "is not a Dask scheduler address.", hint)
    elif scheme not in DASK_PROTOCOLS:
        raise _fail(field, value, f"uses the protocol '{scheme}://', which Dask does not speak.",
                    hint)
    if scheme == "inproc":
        return value
    host = _HOST_PORT.match(rest.rstrip("/"))
    if host is None or not host.group("host"):
        raise _fail(field, value, "names no host.", hint)
    _check_port(host.group("port"), field, value, hint)
    return value


def check_spark_master(value: object, field: str) -> str:
    """A Spark master URL of a form Spark accepts."""
    value = _basic(value, field)
    if _SPARK_LOCAL.match(value) or value == "yarn":
        return value
    for prefix in ("spark://", "k8s://"):
        if value.startswith(prefix) and len(value) > len(prefix):
            return value
    raise _fail(field, value, "is not a Spark master URL.",
                "Write local[N], local[N,F], local-cluster[N,C,MB], spark://host:7077, "
                "k8s://https://host or yarn.")


@dataclass(frozen=True)
class LocationKey:
    """A location in comparable form: ``scheme`` is ``s3`` or ``file``."""

    scheme: str
    path: str  # no trailing slash; local paths absolute with links resolved

    def contains(self, other: "LocationKey") -> bool:
        """Whether ``other`` is this location or lies under it."""
        if self.scheme != other.scheme:
            return False
        if self.path == other.path:
            return True
        return other.path.startswith(self.path.rstrip("/") + "/")

    def __str__(self) -> str:
        return f"s3://{self.path}" if self.scheme == "s3" else self.path


def location_key(uri: str) -> LocationKey:
    """The comparable form of a checked location (local paths: absolute, links resolved)."""
    if uri.startswith(("s3://", "s3a://")):
        return LocationKey("s3", uri.split("://", 1)[1].rstrip("/"))
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return LocationKey("file", os.path.realpath(os.path.expanduser(path)).rstrip("/") or "/")


def glob_base(path: str) -> str:
    """The part of a path before its first segment with a glob character."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if any(ch in part for ch in _GLOB_CHARS):
            return "/".join(parts[:i])
    return path


def has_glob(path: str) -> bool:
    return any(ch in path for ch in _GLOB_CHARS)


def check_host_port(value: object, field: str) -> str:
    """A listening address ``host:port`` or ``:port`` (port 0: any free port)."""
    value = _basic(value, field)
    hint = "Write host:port, e.g. 127.0.0.1:8787 (port 0 picks a free port; :8787 all hosts)."
    host = _HOST_PORT.match(value)
    port = host.group("port") if host else None
    if host is None or port is None or not (port.isdigit() and int(port) < 65536):
        raise _fail(field, value, "is not host:port.", hint)
    return value
