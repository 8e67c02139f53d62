"""How the CLI draws progress and numbers."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from pipelines.records import Plan, UnitResult


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{suffix}{unit}" if suffix == "" else f"{n:.1f}{suffix}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


def human_bytes(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {suffix}" if suffix != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} PiB"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class BarProgress:
    """A tqdm bar over units with documents, tokens and MB/s; notes print above it."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.bar: tqdm | None = None
        self.documents = self.tokens = self.rejected = self.bytes = 0
        self.t0 = time.monotonic()

    def start(self, plan: Plan, pending: int, done: list[UnitResult]) -> None:
        self.t0 = time.monotonic()
        if done:
            self.note(f"resuming: {len(done)} of {len(plan.units)} units are done already")
        self.bar = tqdm(total=len(plan.units), initial=len(done), unit="unit", file=self.stream,
                        dynamic_ncols=True, smoothing=0.1,
                        disable=None)  # off when the stream is not a terminal
        self._refresh()

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        self.bar.set_postfix_str(
            f"docs {human(self.documents)}, tokens {human(self.tokens)}, "
            f"{self.bytes / 1e6 / elapsed:.1f} MB/s"
            + (f", rejected {self.rejected}" if self.rejected else ""), refresh=False)

    def unit_done(self, result: UnitResult) -> None:
        self.documents += result.documents
        self.tokens += result.tokens
        self.rejected += result.rejected
        self.bytes += result.input_bytes
        if self.bar is not None:
            self._refresh()
            self.bar.update(1)
            if self.bar.disable:
                self.note(f"unit {result.index:06d} done: {result.documents} docs, "
                          f"{result.tokens} tokens")

    def unit_retry(self, index: int, attempt: int, error: BaseException) -> None:
        self.note(f"unit {index:06d}: attempt {attempt} failed ({error}); trying again")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
