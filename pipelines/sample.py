"""A deterministic sample of a job's documents, spread across its inputs.

Used to train a tokenizer on what a job will tokenize: units are visited in an even
stride over the plan, and each gives up to its share of the sample, so a sample of a
large corpus is not just its first files. Bad records are skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.read import UnitReader
from pipelines.records import Plan, UnitOptions

#: units read for a sample at most (each contributes an equal share)
MAX_SAMPLE_UNITS = 64


def sample_texts(plan: Plan, options: UnitOptions, sample_bytes: int) -> Iterator[str]:
    units = plan.units
    step = max(1, len(units) // MAX_SAMPLE_UNITS)
    chosen = units[::step][:MAX_SAMPLE_UNITS]
    share = max(1, sample_bytes // max(len(chosen), 1))
    for unit in chosen:
        taken = 0
        reader = UnitReader(options, lambda reject: None)
        for batch in reader.batches(unit.slices):
            for text in batch.texts:
                yield text
                taken += len(text.encode("utf-8", "surrogatepass"))
                if taken >= share:
                    break
            if taken >= share:
                break
