"""A whole-shard cache on local disk, shared by every process of a node.

Why whole shards, not ranged reads of samples: a sample is ``seq_len + 1`` tokens,
4-16 KB. Reading samples as range requests makes the request rate, not the bytes,
the bottleneck: thousands of GETs per second per node, S3's per-prefix limits
(503 SlowDown) and per-request cost, with no remedy but fewer workers. A training
cluster's appetite in bytes is small (even a 15T-token run over 50 days reads about
7 MB/s), so every node reading every shard of the current shuffle window once is
cheap, while requests stay at one per shard per node. Shards are read whole, once
per node, by whichever process needs one first; the others wait for it and read the
same file. Memory stays bounded: shards are memory-mapped from the cache, never held.

Layout under ``directory``::

    ab/abcdef...0123.bin      a shard file, named by its sha256 (content-addressed:
                              present means complete and verified)
    ab/.abcdef...tmp-<uuid>   a download in progress (renamed when verified)
    .locks/ab.lock            256 lock stripes (flock): one download per shard at a time
    .locks/evict.lock         one eviction at a time

* **Atomic.** A download goes to a temporary file, is checked against the manifest's
  size and sha256 while it streams (the check ``tokenyard verify`` makes), fsynced, and
  renamed into place.
* **One download.** A process takes the shard's stripe lock (``fcntl.flock``, released
  by the kernel if the process dies), looks again, and downloads only if the file is
  still absent.
* **Bounded.** Before a download, files are evicted least recently used first (by
  mtime, which every use refreshes) until the shard fits in ``max_bytes``, counting
  the downloads in progress (each reserves its size in a sparse temporary file). A file
  evicted while another process has it mapped stays readable to that process; its
  space is freed when unmapped. Size the cache to hold the shards of a few shuffle
  windows (see the README); a cache smaller than two shards is refused.
* **Throttling.** Downloads go through :class:`pipelines.storage.RetryPolicy` (backoff
  with jitter on throttling, 5xx and dropped connections, on top of botocore's own
  retries); the default for training waits up to 5 minutes before giving up, since a
  training job that dies costs far more than one that waits.
* **Corruption.** A shard whose size or sha256 differs from the manifest's twice in a
  row is a :class:`~pipelines.errors.DatasetError` naming it; a missing one too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipelines.defaults import cache_root
from pipelines.errors import ConfigError, DatasetError
from pipelines.records import ShardFile
from pipelines.storage import RetryPolicy, StorageOptions
from pipelines.verify import stream_checked  # tokenyard verify's check

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "TOKENYARD_CACHE_DIR"
CACHE_BYTES_ENV = "TOKENYARD_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 64 * 2**30
DOWNLOAD_CHUNK_BYTES = 8 * 2**20
LOCK_STRIPES = 256
#: a temporary file untouched for this long belongs to a killed download
STALE_TMP_S = 600.0
#: downloads of a corrupt shard before it is declared corrupt
CORRUPT_ATTEMPTS = 2
#: retries for training reads: patient, since a dead training job costs far more
TRAINING_RETRY = RetryPolicy(attempts=10, base_delay_s=1.0, max_delay_s=30.0, deadline_s=300.0)
_TMP = ".tmp-"


def default_directory() -> str:
    return os.path.join(cache_root(), "shards")


def default_max_bytes() -> int:
    env = os.environ.get(CACHE_BYTES_ENV)
    if not env:
        return DEFAULT_CACHE_BYTES
    from pipelines.config import parse_byte_size

    try:
        return parse_byte_size(env)
    except ValueError:
        raise ConfigError(f"${CACHE_BYTES_ENV} is {env!r}, which is not a size.",
                          hint="Write bytes or a unit: 68719476736, '64GiB', '100GB'.") from None


@dataclass(frozen=True)
class CacheSettings:
    """Where remote shards are cached and how far ahead they are fetched.

    ``directory`` (default ``shards/`` in :func:`pipelines.defaults.cache_root`)
    should be a local disk shared by the node's processes; ``max_bytes`` (default
    ``$TOKENYARD_CACHE_BYTES`` or 64 GiB) bounds it. ``prefetch_samples`` is how far
    ahead, in this process's own samples, shards are fetched in the background.
    """

    directory: str | None = None
    max_bytes: int | None = None
    prefetch_samples: int = 4096
    prefetch_threads: int = 2
    retry: RetryPolicy = field(default=TRAINING_RETRY)

    def cache(self) -> "ShardCache":
        return ShardCache(self.directory or default_directory(),
                          self.max_bytes if self.max_bytes is not None else default_max_bytes(),
                          self.retry)


@dataclass
class CacheStats:
    """What this process did with the cache."""

    hits: int = 0
    downloads: int = 0
    downloaded_bytes: int = 0
    evicted: int = 0
    evicted_bytes: int = 0


class ShardCache:
    """Fetches shard files into a local, bounded, node-shared directory."""

    def __init__(self, directory: str, max_bytes: int,
                 retry: RetryPolicy = TRAINING_RETRY) -> None:
        self.directory = os.path.abspath(directory)
        self.max_bytes = int(max_bytes)
        self.retry = retry
        self.stats = CacheStats()
        try:
            os.makedirs(os.path.join(self.directory, ".locks"), exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"the shard cache directory {self.directory} cannot be used "
                f"({err.strerror or err}).",
                hint=f"Point CacheSettings(directory=...) or ${CACHE_DIR_ENV} at a writable "
                     "local disk shared by the node's processes.") from None

    def path_of(self, file: ShardFile) -> str:
        suffix = os.path.splitext(file.path)[1]
        return os.path.join(self.directory, file.sha256[:2], file.sha256 + suffix)

    def check_fits(self, largest_file_bytes: int) -> None:
        if self.max_bytes < 2 * largest_file_bytes:
            raise ConfigError(
                f"the shard cache at {self.directory} may hold {self.max_bytes:,} bytes, but "
                f"the largest shard file is {largest_file_bytes:,} bytes; the reader needs "
                "room for at least two.",
                hint=f"Raise CacheSettings(max_bytes=...) or ${CACHE_BYTES_ENV}: a few "
                     "shuffle windows' worth of shards (say 8 shards) is a good size.")

    @contextmanager
    def _locked(self, name: str):
        with open(os.path.join(self.directory, ".locks", name), "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)

    def fetch(self, uri: str, file: ShardFile,
              storage_options: StorageOptions | None) -> str:
        """The local path of a verified copy of ``file`` (at ``uri``); downloads once."""
        path = self.path_of(file)
        if self._touch(path):
            self.stats.hits += 1
            return path
        with self._locked(f"{file.sha256[:2]}.lock"):
            if self._touch(path):
                self.stats.hits += 1
                return path
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._download(uri, file, path, storage_options)
        return path

    @staticmethod
    def _touch(path: str) -> bool:
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False

    def _download(self, uri: str, file: ShardFile, path: str,
                  storage_options: StorageOptions | None) -> None:
        """Stream ``uri`` to a temporary file, checked against the manifest's size and
        sha256 the way ``tokenyard verify`` checks it, then rename it into place."""
        tmp = os.path.join(os.path.dirname(path),
                           f".{os.path.basename(path)}{_TMP}{uuid.uuid4().hex}")

        def attempt() -> list[str]:
            problems: list[str] = []
            with open(tmp, "r+b") as dst:   # reserved at the expected size
                found = stream_checked(uri, storage_options, file.size, file.sha256, file.path,
                                       problems, dst.write)
                dst.truncate()
                dst.flush()
                os.fsync(dst.fileno())
            if not found:
                raise DatasetError(_root_of(uri, file), [
                    f"{file.path}: missing; the manifest lists it ({file.size:,} bytes), so "
                    "the dataset was changed or partly deleted after it was committed"])
            return problems

        self._reserve(file.size, tmp)
        try:
            for tries in range(1, CORRUPT_ATTEMPTS + 1):
                problems = self.retry.call(attempt, uri=uri, operation="download",
                                           storage_options=storage_options)
                if not problems:
                    os.replace(tmp, path)
                    self.stats.downloads += 1
                    self.stats.downloaded_bytes += file.size
                    return
                log.warning("%s (download %d of %d)", problems[0], tries, CORRUPT_ATTEMPTS)
            raise DatasetError(_root_of(uri, file), [
                problems[0] + f"; downloaded {CORRUPT_ATTEMPTS} times with the same result, so "
                "the stored shard is corrupt ('tokenyard verify' lists every problem)"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _scan(self) -> tuple[list[tuple[float, int, str]], int]:
        """(mtime, size, path) of every cached file, and the bytes reserved by downloads in
        progress; temporaries left by killed downloads are removed."""
        found = []
        reserved = 0
        now = time.time()
        for sub in os.scandir(self.directory):
            if not sub.is_dir() or sub.name.startswith("."):
                continue
            for entry in os.scandir(sub.path):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.startswith("."):
                    if _TMP not in entry.name:
                        continue
                    if now - st.st_mtime > STALE_TMP_S:
                        _unlink(entry.path)
                    else:
                        reserved += st.st_size
                    continue
                found.append((st.st_mtime, st.st_size, entry.path))
        return found, reserved

    def used_bytes(self) -> int:
        """Bytes of cached files and of downloads in progress."""
        files, reserved = self._scan()
        return sum(size for _, size, _ in files) + reserved

    def _reserve(self, size: int, tmp: str) -> None:
        """Evict least recently used files until ``size`` more bytes fit, and hold them:
        ``tmp`` is created at that size, so every other process's eviction counts it."""
        with self._locked("evict.lock"):
            files, reserved = self._scan()
            total = sum(s for _, s, _ in files) + reserved
            for _, file_size, path in sorted(files):
                if total + size <= self.max_bytes:
                    break
                if _unlink(path):
                    total -= file_size
                    self.stats.evicted += 1
                    self.stats.evicted_bytes += file_size
                    log.debug("evicted %s (%d bytes)", path, file_size)
            with open(tmp, "wb") as f:
                f.truncate(size)   # sparse: only counts, allocates nothing


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _root_of(uri: str, file: ShardFile) -> str:
    """The dataset prefix of a shard file's URI."""
    return uri[:-len(file.path)].rstrip("/") if uri.endswith(file.path) else uri
