"""Progress reporting: a callback protocol with a no-op default.

Library code reports; the CLI draws (a progress bar), Airflow logs, tests record.
"""

from __future__ import annotations

from typing import Protocol

from pipelines.records import Plan, UnitResult


class Progress(Protocol):
    def start(self, plan: Plan, pending: int, done: list[UnitResult]) -> None: ...

    def note(self, message: str) -> None: ...

    def unit_done(self, result: UnitResult) -> None: ...

    def unit_retry(self, index: int, attempt: int, error: BaseException) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, plan: Plan, pending: int, done: list[UnitResult]) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def unit_done(self, result: UnitResult) -> None:
        pass

    def unit_retry(self, index: int, attempt: int, error: BaseException) -> None:
        pass

    def close(self) -> None:
        pass


NO_PROGRESS = NoProgress()
