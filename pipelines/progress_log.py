"""A Progress that reports through a logger: what an Airflow task log or a pod log shows.

Lines look like::

    tokenize: 12 units (3 done earlier), 9 to run, 48.0 MB of input
    units 4/12 done, 1.2M tokens, 410.3k tokens/s, 5.1 MB/s
    unit 000007 failed (attempt 1); retrying: could not read s3://...
    units 12/12 done, 3.6M tokens, 398.0k tokens/s, 4.9 MB/s

A line is logged per unit while there are few units, else at most every
``interval_s`` seconds, and always for the last unit.
"""

from __future__ import annotations

import logging
import time

from pipelines.records import Plan, UnitResult

#: with at most this many units, every finished unit gets a line
EVERY_UNIT_UP_TO = 50
DEFAULT_INTERVAL_S = 15.0


def human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class LoggingProgress:
    """Logs unit progress, tokens and throughput at INFO, retries at WARNING."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, *,
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.log = logger
        self.interval_s = interval_s
        self.total = 0
        self.done = 0
        self.tokens = 0
        self.input_bytes = 0
        self._run_tokens = 0
        self._run_bytes = 0
        self._started = time.monotonic()
        self._last = 0.0

    def start(self, plan: Plan, pending: int, done: list[UnitResult]) -> None:
        self.total = len(plan.units)
        self.done = len(done)
        self.tokens = sum(r.tokens for r in done)
        self.input_bytes = sum(r.input_bytes for r in done)
        self._started = self._last = time.monotonic()
        planned = sum(u.input_bytes for u in plan.units)
        self.log.info("tokenize: %d units (%d done earlier), %d to run, %s B of input, "
                      "fingerprint %s", self.total, self.done, pending, human(planned),
                      plan.fingerprint[:12])

    def note(self, message: str) -> None:
        self.log.info("%s", message)

    def unit_done(self, result: UnitResult) -> None:
        self.done += 1
        self.tokens += result.tokens
        self.input_bytes += result.input_bytes
        self._run_tokens += result.tokens
        self._run_bytes += result.input_bytes
        now = time.monotonic()
        if (self.total <= EVERY_UNIT_UP_TO or self.done >= self.total
                or now - self._last >= self.interval_s):
            self._last = now
            elapsed = max(now - self._started, 1e-9)
            self.log.info("units %d/%d done, %s tokens, %s tokens/s, %.1f MB/s",
                          self.done, self.total, human(self.tokens),
                          human(self._run_tokens / elapsed), self._run_bytes / 1e6 / elapsed)

    def unit_retry(self, index: int, attempt: int, error: BaseException) -> None:
        self.log.warning("unit %06d failed (attempt %d); retrying: %s", index, attempt, error)

    def close(self) -> None:
        pass
