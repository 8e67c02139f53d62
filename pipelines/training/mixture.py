"""Several sources mixed by weight: deterministic, exact, random-access.

The mixed stream is cut into chunks of ``M`` positions. Every chunk holds exactly
``n_k`` samples of source ``k`` (``sum(n_k) = M``, ``n_k / M`` the weight rounded to
``1/M`` by largest remainder; ``M`` is large enough that the smallest weight gets at
least :data:`MIN_SAMPLES_PER_CHUNK` per chunk), placed by a seeded permutation of the
chunk. Position ``g`` is therefore the ``q``-th sample of source ``k`` with
``q = (g // M) * n_k + (slots of k before g in its chunk)``: a closed form, so a resume
at any position, and any rank's share, cost one chunk's permutation, never a replay.

Each source walks its own sample positions ``0, 1, 2, ...`` across its own epochs
(``q // N_k``), so a source with a large weight is repeated and one with a small
weight is not exhausted; within each of its epochs every window comes exactly once.
The samples of each source before any position are exact (:meth:`Mixture.counts_before`),
which is how the reader reports tokens delivered per source.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.errors import ConfigError
from pipelines.training.permute import key_of, permutation

#: positions per mixing chunk at least
MIN_CHUNK_SAMPLES = 4096
#: the smallest weight gets at least this many samples per chunk (rounding <= 0.5%)
MIN_SAMPLES_PER_CHUNK = 100
#: positions per mixing chunk at most (a computed chunk costs 16 bytes per position)
MAX_CHUNK_SAMPLES = 1 << 20
_KEPT_CHUNKS = 2


@dataclass(frozen=True)
class MixPlan:
    """How many samples of each source every chunk of ``chunk_samples`` holds."""

    weights: tuple[float, ...]
    counts: tuple[int, ...]
    chunk_samples: int

    @property
    def realized(self) -> tuple[float, ...]:
        """The weights as delivered: ``n_k / M``."""
        return tuple(n / self.chunk_samples for n in self.counts)


def plan_mixture(weights: Sequence[float], labels: Sequence[str]) -> MixPlan:
    """Apportion a chunk between sources by weight (largest remainder)."""
    bad = [(label, w) for label, w in zip(labels, weights)
           if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0)]
    if bad:
        raise ConfigError(
            f"mixture weights must be positive numbers; found {bad[0][1]!r} for {bad[0][0]}.",
            hint="Give every source a weight > 0 (they need not sum to 1), or leave a "
                 "source out.")
    total = float(sum(weights))
    norm = [w / total for w in weights]
    chunk = max(MIN_CHUNK_SAMPLES, math.ceil(MIN_SAMPLES_PER_CHUNK / min(norm)))
    if chunk > MAX_CHUNK_SAMPLES:
        smallest = labels[norm.index(min(norm))]
        raise ConfigError(
            f"the weight of {smallest} is {min(norm):.2e} of the mixture, too small to "
            f"place exactly (a mixing chunk would need {chunk:,} samples).",
            hint=f"Use weights of at least {MIN_SAMPLES_PER_CHUNK / MAX_CHUNK_SAMPLES:.1e} "
                 "of the total, or leave that source out.")
    exact = [w * chunk for w in norm]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda k: (counts[k] - exact[k], k))
    for k in by_remainder[:chunk - sum(counts)]:
        counts[k] += 1
    return MixPlan(tuple(norm), tuple(counts), chunk)


class Mixture:
    """Positions of the mixed stream -> (source, that source's sample position)."""

    def __init__(self, plan: MixPlan, seed: int) -> None:
        self.plan = plan
        self.seed = seed
        self._counts = np.asarray(plan.counts, dtype=np.int64)
        self._base = np.repeat(np.arange(len(plan.counts), dtype=np.int64), self._counts)
        self._chunks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def chunk(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each slot, its rank among the chunk's slots of that source)."""
        found = self._chunks.get(index)
        if found is not None:
            self._chunks.move_to_end(index)
            return found
        labels = self._base[permutation(len(self._base), key_of(self.seed, "mix", index))]
        order = np.argsort(labels, kind="stable")
        first_of = np.concatenate([[0], np.cumsum(self._counts)[:-1]])
        local = np.empty_like(labels)
        local[order] = np.arange(len(labels)) - first_of[labels[order]]
        found = (labels, local)
        self._chunks[index] = found
        while len(self._chunks) > _KEPT_CHUNKS:
            self._chunks.popitem(last=False)
        return found

    def sources_at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each position: its source, and its sample position within that source."""
        positions = np.asarray(positions, dtype=np.int64)
        m = self.plan.chunk_samples
        sources = np.empty_like(positions)
        local = np.empty_like(positions)
        chunk_of = positions // m
        for index in np.unique(chunk_of):
            where = chunk_of == index
            labels, ranks = self.chunk(int(index))
            slots = positions[where] - index * m
            sources[where] = labels[slots]
            local[where] = index * self._counts[labels[slots]] + ranks[slots]
        return sources, local

    def counts_before(self, position: int) -> np.ndarray:
        """Samples of each source at positions ``< position`` (exact)."""
        m = self.plan.chunk_samples
        index, rest = divmod(int(position), m)
        counts = index * self._counts
        if rest:
            labels, _ = self.chunk(index)
            counts = counts + np.bincount(labels[:rest], minlength=len(self._counts))
        return counts
