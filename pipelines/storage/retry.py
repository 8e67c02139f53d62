"""Retries of whole storage operations: :class:`RetryPolicy`, on transient errors only.

The policy is an object passed in (``retry=``), matched on the translated error's class
(:mod:`pipelines.storage.translate`), never on message text. It sits on top of the
retries of single requests by botocore and s3fs (:mod:`pipelines.storage.filesystem`);
the package docstring tabulates the whole stack.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipelines.errors import TokenyardError
from pipelines.storage.options import StorageOptions
from pipelines.storage.translate import translate_error

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for whole-object operations, on transient errors only.

    s3fs and botocore retry single requests already; this covers what outlasts them
    (a dropped connection mid-transfer, a burst of throttling). No attempt starts after
    ``deadline_s``, so a sustained outage fails an operation in bounded time (about
    ``deadline_s`` plus one attempt, itself bounded by the request timeouts and
    retries in :data:`~pipelines.storage.filesystem.S3_CONFIG`) instead of hanging.
    """

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    deadline_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        """The longest sleep after failed attempt ``attempt`` (1-based), before jitter."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))

    def worst_case_s(self, attempt_s: float) -> float:
        """The longest an operation can take when every attempt fails after ``attempt_s``:
        all attempts and the longest sleeps, but no attempt starts after ``deadline_s``."""
        sleeps = sum(self.delay_s(n) for n in range(1, self.attempts))
        return min(self.attempts * attempt_s + sleeps, self.deadline_s + attempt_s)

    def call(self, fn: Callable[[], T], *, uri: str, operation: str,
             storage_options: StorageOptions | None = None) -> T:
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as err:
                translated = translate_error(err, uri, operation, storage_options)
                if translated is err and not isinstance(err, TokenyardError):
                    raise  # a programming error: as it is, never retried
                delay = self.delay_s(attempt) * (0.5 + random.random() / 2)
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
