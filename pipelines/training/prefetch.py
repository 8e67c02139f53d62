"""Background downloads of the shards a process will read next.

The sample order is a pure function of the seed and the position, so a process knows
which shards it will need long before it reads them. The iterator plans its samples
``CacheSettings.prefetch_samples`` ahead and hands the shards they read to a
:class:`Prefetcher`: a few daemon threads that put them in the node's cache. A
prefetch is only a hint: a failed one is logged at debug level, and the reader's
own fetch (through the same cache and lock) meets the error and raises it. The
queue is bounded; a shard already cached or already queued is not queued again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

from pipelines.records import ShardFile
from pipelines.storage import StorageOptions
from pipelines.training.cache import ShardCache

log = logging.getLogger(__name__)

QUEUE_ITEMS = 256


class Prefetcher:
    """Daemon threads fetching shard files into a :class:`ShardCache`."""

    def __init__(self, cache: ShardCache, storage_options: StorageOptions | None,
                 threads: int) -> None:
        self.cache = cache
        self.storage_options = storage_options
        self._queue: queue.Queue = queue.Queue(QUEUE_ITEMS)
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"tokenyard-prefetch-{i}",
                                          daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def submit(self, uri: str, file: ShardFile) -> None:
        """Queue a shard file unless it is cached or queued already (never blocks)."""
        with self._lock:
            if file.sha256 in self._pending or os.path.exists(self.cache.path_of(file)):
                return
            try:
                self._queue.put_nowait((uri, file))
            except queue.Full:
                return
            self._pending.add(file.sha256)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            uri, file = item
            try:
                self.cache.fetch(uri, file, self.storage_options)
            except Exception as err:  # a hint only: the reader's own fetch raises it
                log.debug("prefetch of %s failed: %s", uri, err)
            finally:
                with self._lock:
                    self._pending.discard(file.sha256)

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
