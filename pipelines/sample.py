"""A deterministic sample of a job's documents, spread across its inputs.

Used to train a tokenizer on what a job will tokenize, and to qualify a fast tokenizer
backend on the job's own text: units are visited in an even stride over the plan, and
each gives up to its share of the sample, so a sample of a large corpus is not just its
first files. Bad records are skipped, never fatal; huge streamed documents are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from pipelines.read import UnitReader
from pipelines.records import Plan, UnitOptions

#: units read for a sample at most (each contributes an equal share)
MAX_SAMPLE_UNITS = 64


def sample_texts(plan: Plan, options: UnitOptions, sample_bytes: int, *,
                 max_units: int = MAX_SAMPLE_UNITS) -> Iterator[str]:
    units = plan.units
    step = max(1, len(units) // max_units)
    chosen = units[::step][:max_units]
    share = max(1, sample_bytes // max(len(chosen), 1))
    lenient = dataclasses.replace(options, on_error="skip")
    for unit in chosen:
        taken = 0
        reader = UnitReader(lenient, lambda reject: None)
        for batch in reader.batches(unit.slices):
            for text in batch.texts:
                yield text
                taken += len(text.encode("utf-8", "surrogatepass"))
                if taken >= share:
                    break
            if taken >= share:
                break
