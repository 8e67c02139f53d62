"""Background downloads of the shards a process will read next.

The sample order is a pure function of the seed and the position, so a process knows
which shards it will need long before it reads them. The iterator plans its samples
``CacheSettings.prefetch_samples`` ahead and hands the shards they read to a
:class:`Prefetcher`: a few daemon threads that put them in the node's cache. A
prefetch is only a hint: a failed one is logged at debug level, and the reader's
own fetch (through the same cache and lock) meets the error and raises it. The
queue is bounded and a shard already handed over recently is not queued twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict

from pipelines.records import ShardFile
from pipelines.training.cache import ShardCache

log = logging.getLogger(__name__)

QUEUE_ITEMS = 256
_REMEMBERED = 1024


class Prefetcher:
    """Daemon threads fetching shard files into a :class:`ShardCache`."""

    def __init__(self, cache: ShardCache, storage_opts: dict | None, threads: int) -> None:
        self.cache = cache
        self.storage_opts = storage_opts
        self._queue: queue.Queue = queue.Queue(QUEUE_ITEMS)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"tokenyard-prefetch-{i}",
                                          daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def submit(self, uri: str, file: ShardFile) -> None:
        if file.sha256 in self._seen:
            self._seen.move_to_end(file.sha256)
            return
        try:
            self._queue.put_nowait((uri, file))
        except queue.Full:
            return
        self._seen[file.sha256] = None
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)

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
                self.cache.fetch(uri, file, self.storage_opts)
            except Exception as err:  # a hint only: the reader's own fetch raises it
                log.debug("prefetch of %s failed: %s", uri, err)

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
