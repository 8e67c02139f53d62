"""What every engine shares: the outcome of a run and the retry rule.

An engine is constructed as ``Engine(config, progress, job_name=..., **extra)``, used as
a context manager, and its ``run(options, units)`` returns a :class:`RunOutcome`.
An engine runs ``task.run_unit`` over pending units and reports each result to a
progress callback as it finishes. Units that fail with a transient error are tried
again, up to ``max_attempts``; permanent errors (bad input, a missing tokenizer) stop
the run after the units already running. Engines hold no pipeline logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.engines.limits import MAX_CONSECUTIVE_TRANSIENT
from pipelines.records import UnitResult


def retryable(error: BaseException) -> bool:
    """Transient errors are worth another attempt; everything else is final."""
    return bool(getattr(error, "transient", False))


@dataclass
class RunOutcome:
    results: dict[int, UnitResult] = field(default_factory=dict)
    failures: dict[int, BaseException] = field(default_factory=dict)
    retries: int = 0


@dataclass
class Attempts:
    """Counts attempts per unit and decides what to do with a failure."""

    max_attempts: int
    counts: dict[int, int] = field(default_factory=dict)
    consecutive_transient: int = 0
    max_consecutive_transient: int = MAX_CONSECUTIVE_TRANSIENT

    def started(self, index: int) -> int:
        self.counts[index] = self.counts.get(index, 0) + 1
        return self.counts[index]

    def succeeded(self) -> None:
        self.consecutive_transient = 0

    def should_retry(self, index: int, error: BaseException) -> bool:
        if not retryable(error):
            return False
        self.consecutive_transient += 1
        return (self.counts.get(index, 0) < self.max_attempts
                and self.consecutive_transient < self.max_consecutive_transient)
