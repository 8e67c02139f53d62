"""``SequenceDataset``: packed ``seq_len + 1`` windows of a dataset, for one rank.

The global order. The reader defines one infinite stream of sample *positions*
``g = 0, 1, 2, ...``; epoch ``e`` is positions ``[e*E, (e+1)*E)``, where ``E`` is the
number of windows of the dataset (:mod:`pipelines.training.windows`) or, for a
mixture, ``samples_per_epoch`` (default: the sum of its sources' windows). Each
position is a window of a source, by a pure function of the seed and the position
(:mod:`~pipelines.training.order`, :mod:`~pipelines.training.mixture`): within an
epoch of a source, every window comes exactly once.

Who gets what. An iteration starts at the consumed position ``S`` (any position: a
resume need not fall on a batch or rank boundary) and runs to the end of the epoch
(or of ``Order.epochs`` epochs; without end for ``epochs=None``). Rank ``r`` of
``world_size`` gets the positions ``S + r + j*world_size`` for ``j = 0, 1, ...``:
position ``g`` belongs to rank ``(g - S) % world_size``. A rank's ``j``-th sample goes
to dataloader worker ``(j // B) % num_workers``, ``B`` being the loader's batch size:
worker ``w`` builds the rank's batches ``w, w + num_workers, ...``, which is the
order in which PyTorch's ``DataLoader`` hands them to the loop. So every position is delivered once,
and what a rank's loop has consumed is always a prefix ``j < c`` of its share.

The state. When every rank has consumed ``c`` samples (true after every step of
synchronous data-parallel training), the positions below ``S + c*world_size`` are
consumed and no other: that number, as ``(epoch, sample)``, is the state. It does not
mention ranks or workers, so a run resumes exactly (no sample skipped or repeated)
with any other number of either; keep the global batch to keep the step numbering.
A rank that has consumed its whole share of an iteration reports the iteration's end.
The count ``c`` is of samples *handed to the loop*: when the dataset is iterated
directly (or by a ``DataLoader`` without workers) its generator counts them; with
workers, :class:`pipelines.training.pytorch.SequenceLoader` counts the batches it
yields, so prefetching workers never move the state ahead of the loop.

The tail. Ranks' shares of an epoch differ by at most one sample when ``E - S`` is not
a multiple of ``world_size``; a loop that needs every rank to take the same number of
steps uses ``epochs=None`` (the stream runs across epoch boundaries, as Megatron's
does) and trains for a number of steps.
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.errors import ConfigError
from pipelines.records import TokenizerFacts
from pipelines.storage import StorageOptions
from pipelines.training.boundaries import cu_seqlens, position_ids
from pipelines.training.cache import CacheSettings, ShardCache
from pipelines.training.mixture import Mixture, plan_mixture
from pipelines.training.order import SourceOrder
from pipelines.training.prefetch import Prefetcher
from pipelines.training.shards import ShardStore, SourceReader
from pipelines.training.sources import Source, combined_fingerprint, open_sources, \
    verify_sources
from pipelines.training.state import ReaderState, order_key
from pipelines.training.tokenizer import TokenizerSpec, check_tokenizer
from pipelines.training.windows import WindowGrid

log = logging.getLogger(__name__)

#: windows per shuffle chunk: about a few shards' worth of tokens at common seq_lens
DEFAULT_WINDOW_SAMPLES = 1 << 16
#: positions mapped to windows per vectorized step
PLAN_SAMPLES = 256


@dataclass(frozen=True)
class Order:
    """How the global order is laid out.

    ``shuffle`` False keeps window order (GPTDataset's unshuffled sample order);
    ``window_samples`` is the shuffle window (windows permuted together, after the
    shard-aligned blocks are permuted): larger mixes more shards at once and needs more
    of them cached; keep it well above ``world_size`` so each rank takes several
    samples of every chunk. ``epochs`` is how many epochs one iteration covers (None:
    without end); ``samples_per_epoch`` the epoch length of a mixture.
    """

    shuffle: bool = True
    window_samples: int = DEFAULT_WINDOW_SAMPLES
    epochs: int | None = 1
    samples_per_epoch: int | None = None


@dataclass(frozen=True)
class SampleLocation:
    """Where the sample at a global position comes from."""

    position: int
    epoch: int
    sample: int
    source: str
    window: int
    #: the window's token range in its source's stream
    start_token: int
    stop_token: int
    #: data files (relative to their dataset) it is read from
    files: tuple[str, ...]


@dataclass(frozen=True)
class SourceUsage:
    """What the consumed part of the order took from one source."""

    source: str
    #: the weight as delivered (``n_k / M``); 1.0 for a single source
    weight: float
    samples: int
    #: label tokens: ``samples * seq_len`` (windows overlap by their boundary token)
    tokens: int
    #: passes over the source's windows: ``samples / windows``
    epochs: float


class _Runtime:
    """What one process holds while reading: open shards, the prefetcher."""

    def __init__(self, readers: list[SourceReader], prefetcher: Prefetcher | None) -> None:
        self.pid = os.getpid()
        self.readers = readers
        self.prefetcher = prefetcher
        if prefetcher is not None:  # its threads end when the dataset is gone
            weakref.finalize(self, prefetcher.close)


class SequenceDataset:
    """One rank's packed windows of a dataset, catalog or mixture; resumable exactly.

    ``uri`` is a dataset prefix or ``manifest.json``, a catalog root or
    ``catalog.json`` (with ``versions``: None for all, a list, or ``{version: weight}``),
    a list of those (read as one stream) or ``{uri: weight}`` (a mixture).
    ``tokenizer`` is what the model expects (:class:`TokenizerSpec` or a mapping);
    ``fingerprint`` pins the data; ``verify`` is ``"none"``, ``"sizes"`` or ``"full"``.
    ``boundaries`` makes each item a dict of ``tokens``, ``position_ids`` and
    ``cu_seqlens`` instead of the bare token array. ``storage_options`` says how to reach
    object storage (:class:`~pipelines.storage.StorageOptions`, or a mapping of its
    fields such as ``{"endpoint_url": ...}``).
    """

    def __init__(self, uri: str | Sequence[str] | Mapping[str, float], seq_len: int, *,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 storage_options: StorageOptions | Mapping | None = None,
                 versions: Sequence[str] | Mapping[str, float] | None = None,
                 tokenizer: TokenizerSpec | Mapping | None = None,
                 boundaries: bool = False, order: Order | None = None,
                 cache: CacheSettings | None = None, fingerprint: str | None = None,
                 verify: str = "none") -> None:
        _check_int("seq_len", seq_len, 1)
        _check_int("seed", seed, 0)
        _check_int("world_size", world_size, 1)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ConfigError(f"rank {rank} is not below world_size {world_size}.")
        self.order = order or Order()
        _check_int("Order.window_samples", self.order.window_samples, 1)
        if self.order.epochs is not None:
            _check_int("Order.epochs", self.order.epochs, 1)
        self.seq_len = seq_len
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.storage_options = StorageOptions.of(storage_options)
        self.boundaries = bool(boundaries)

        sources, weights = open_sources(uri, versions=versions,
                                        storage_options=self.storage_options)
        self.sources: tuple[Source, ...] = tuple(sources)
        expected = TokenizerSpec.of(tokenizer)
        for source in self.sources:
            check_tokenizer(source.tokenizer, expected, source.label)
        verify_sources(sources, verify, self.storage_options)

        self._grids = [WindowGrid.of([s.tokens for s in src.shards], seq_len)
                       for src in self.sources]
        self._windows = [g.windows for g in self._grids]
        for src, grid in zip(self.sources, self._grids):
            if grid.windows == 0:
                raise ConfigError(
                    f"{src.label} holds {grid.tokens:,} tokens: not one window of seq_len + 1 "
                    f"= {seq_len + 1} tokens.", hint="Use a shorter seq_len or more data.")
        self._orders = [SourceOrder(g, seed=seed, stream=k, shuffle=self.order.shuffle,
                                    window_samples=self.order.window_samples)
                        for k, g in enumerate(self._grids)]
        self._mixture = None
        if weights is not None:
            self._mixture = Mixture(plan_mixture(weights, [s.label for s in self.sources]), seed)
        spe = self.order.samples_per_epoch
        if spe is not None:
            _check_int("Order.samples_per_epoch", spe, 1)
        self.samples_per_epoch = spe or sum(self._windows)
        self.fingerprint = combined_fingerprint(self.sources)
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ConfigError(
                f"the data at {self.sources[0].label} has fingerprint {self.fingerprint[:16]}…, "
                f"but {fingerprint[:16]}… was expected: it is not the dataset this run was "
                "set up for.", hint="Point the reader at the dataset version you meant (a "
                "rerun with --restart replaces data under the same prefix).")
        mix = self._mixture
        self._order_key = order_key(
            shuffle=self.order.shuffle, window_samples=self.order.window_samples,
            samples_per_epoch=self.samples_per_epoch,
            mixture=(mix.plan.counts, mix.plan.chunk_samples) if mix else None)

        self.cache_settings = cache or CacheSettings()
        self._cache = self._open_cache()

        self._position = 0
        self._iteration: tuple[int, int | None, int | None] | None = None
        self._rank_consumed = 0
        self._block = 1
        self._runtime: _Runtime | None = None
        log.debug("opened %d source(s), %d samples per epoch, fingerprint %s",
                  len(self.sources), self.samples_per_epoch, self.fingerprint[:16])

    def _open_cache(self) -> ShardCache | None:
        """The node's shard cache, when a source is remote."""
        if not any(s.remote for s in self.sources):
            return None
        cache = self.cache_settings.cache()
        cache.check_fits(max((f.size for src in self.sources for sh in src.shards
                              for f in sh.files), default=0))
        return cache

    # -- description ------------------------------------------------------------------

    @property
    def tokenizer(self) -> TokenizerFacts:
        return self.sources[0].tokenizer

    @property
    def epoch(self) -> int:
        return self._consumed_position() // self.samples_per_epoch

    def __repr__(self) -> str:
        labels = ", ".join(s.label for s in self.sources)
        return (f"{type(self).__name__}({labels}, seq_len={self.seq_len}, rank {self.rank} of "
                f"{self.world_size}, {self.samples_per_epoch:,} samples per epoch)")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_runtime"] = None
        return state

    # -- the state --------------------------------------------------------------------

    def _identity(self, epoch: int = 0, sample: int = 0) -> ReaderState:
        return ReaderState(fingerprint=self.fingerprint, seed=self.seed, seq_len=self.seq_len,
                           order=self._order_key, epoch=epoch, sample=sample)

    def _consumed_position(self) -> int:
        if self._iteration is None:
            return self._position
        start, end, share = self._iteration
        if share is not None and self._rank_consumed >= share:
            return end
        return start + self._rank_consumed * self.world_size

    def state_dict(self) -> dict:
        """The global position the loop has consumed (see the module docstring)."""
        epoch, sample = divmod(self._consumed_position(), self.samples_per_epoch)
        return self._identity(epoch, sample).to_dict()

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from a saved state; refuses one of other data or order settings."""
        saved = ReaderState.from_dict(state)
        saved.check_matches(self._identity())
        if saved.sample > self.samples_per_epoch:
            raise ConfigError(f"the reader state's sample {saved.sample} is past the epoch's "
                              f"{self.samples_per_epoch} samples.")
        self._position = saved.epoch * self.samples_per_epoch + saved.sample
        self._iteration = None
        self._rank_consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at ``epoch`` unless the position is already in it."""
        _check_int("epoch", epoch, 0)
        if self.epoch != epoch:
            self._position = epoch * self.samples_per_epoch
            self._iteration = None
            self._rank_consumed = 0

    def usage(self) -> tuple[SourceUsage, ...]:
        """Samples and label tokens taken from each source up to the consumed position."""
        position = self._consumed_position()
        counts = ([position] if self._mixture is None
                  else self._mixture.counts_before(position).tolist())
        weights = (1.0,) if self._mixture is None else self._mixture.plan.realized
        return tuple(SourceUsage(src.label, w, int(c), int(c) * self.seq_len, c / n)
                     for src, w, c, n in zip(self.sources, weights, counts, self._windows))

    # -- iteration --------------------------------------------------------------------

    def _span(self, start: int) -> tuple[int, int | None, int | None]:
        """(start, end, this rank's share) of an iteration starting at ``start``."""
        epochs = self.order.epochs
        if epochs is None:
            return start, None, None
        end = (start // self.samples_per_epoch + epochs) * self.samples_per_epoch
        share = max(0, -(-(end - start - self.rank) // self.world_size))
        return start, end, share

    def __len__(self) -> int:
        """This rank's samples in the iteration that ``iter()`` would start now."""
        share = self._span(self._consumed_position())[2]
        if share is None:
            raise TypeError("an endless SequenceDataset (Order(epochs=None)) has no length")
        return share

    def _begin(self) -> tuple[int, int | None, int | None]:
        span = self._span(self._consumed_position())
        self._position = span[0]
        self._iteration = span
        self._rank_consumed = 0
        return span

    def _finish(self) -> None:
        if self._iteration is not None:
            self._position = self._iteration[1]
        self._iteration = None
        self._rank_consumed = 0

    def _worker_slot(self) -> tuple[int, int]:
        """(this process's worker index, workers) among the rank's dataloader workers."""
        return 0, 1

    def _iteration_span(self) -> tuple[tuple[int, int | None, int | None], bool]:
        """The span to read and whether this process counts what it yields."""
        return self._begin(), True

    def __iter__(self) -> Iterator:
        (start, _end, share), counting = self._iteration_span()
        worker, workers = self._worker_slot()
        runtime = self._runtime_here()
        for sources, windows in self._lookahead(self._plans(start, share, worker, workers),
                                                runtime):
            for src, window in zip(sources.tolist(), windows.tolist()):
                item = self._item(runtime, src, window)
                if counting:
                    self._rank_consumed += 1
                yield item
        if counting:
            self._finish()

    def _rank_indices(self, share: int | None, worker: int, workers: int) -> Iterator[np.ndarray]:
        """This worker's rank-local sample indices ``j``, in batches of blocks."""
        block = self._block
        per_plan = max(1, PLAN_SAMPLES // block)
        t = 0
        while True:
            blocks = worker + workers * np.arange(t, t + per_plan, dtype=np.int64)
            js = (blocks[:, None] * block + np.arange(block, dtype=np.int64)).ravel()
            if share is not None:
                js = js[js < share]
                if not len(js):
                    return
            yield js
            t += per_plan

    def _plans(self, start: int, share: int | None, worker: int,
               workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for js in self._rank_indices(share, worker, workers):
            yield self._locate(start + self.rank + js * self.world_size)

    def _lookahead(self, plans: Iterator[tuple[np.ndarray, np.ndarray]],
                   runtime: _Runtime) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The plans, with the shards of those ``prefetch_samples`` ahead handed to the
        prefetcher before they are needed."""
        if runtime.prefetcher is None:
            yield from plans
            return
        ahead = max(1, math.ceil(self.cache_settings.prefetch_samples / PLAN_SAMPLES))
        queued: deque = deque()
        for plan in plans:
            self._prefetch(runtime, plan)
            queued.append(plan)
            if len(queued) > ahead:
                yield queued.popleft()
        while queued:
            yield queued.popleft()

    def _prefetch(self, runtime: _Runtime, plan: tuple[np.ndarray, np.ndarray]) -> None:
        sources, windows = plan
        for k in np.unique(sources).tolist():
            source = self.sources[k]
            if not source.remote:
                continue
            for s in self._grids[k].shards_of(windows[sources == k]).tolist():
                shard = source.shards[s]
                runtime.prefetcher.submit(shard.uri(shard.data_file), shard.data_file)
                if self.boundaries and shard.index_file is not None:
                    runtime.prefetcher.submit(shard.uri(shard.index_file), shard.index_file)

    def _locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source, window) of each global position."""
        if self._mixture is None:
            sources, local = np.zeros_like(positions), positions
        else:
            sources, local = self._mixture.sources_at(positions)
        windows = np.empty_like(local)
        for k in np.unique(sources).tolist():
            mine = sources == k
            epochs, within = np.divmod(local[mine], self._windows[k])
            found = np.empty_like(within)
            for e in np.unique(epochs).tolist():
                same = epochs == e
                found[same] = self._orders[k].windows_at(e, within[same])
            windows[mine] = found
        return sources, windows

    def _runtime_here(self) -> _Runtime:
        """This process's readers (a fork or a fresh worker builds its own)."""
        if self._runtime is None or self._runtime.pid != os.getpid():
            store = ShardStore(self.storage_options, self._cache)
            readers = [SourceReader(src, grid, store)
                       for src, grid in zip(self.sources, self._grids)]
            prefetcher = None
            if self._cache is not None and self.cache_settings.prefetch_samples > 0:
                prefetcher = Prefetcher(self._cache, self.storage_options,
                                        self.cache_settings.prefetch_threads)
            self._runtime = _Runtime(readers, prefetcher)
        return self._runtime

    def _item(self, runtime: _Runtime, source: int, window: int):
        reader = runtime.readers[source]
        tokens = reader.window(window)
        if not self.boundaries:
            return tokens
        cu = cu_seqlens(reader.doc_starts_in(window), self.seq_len)
        return {"tokens": tokens, "position_ids": position_ids(cu), "cu_seqlens": cu}

    # -- looking at single samples ----------------------------------------------------

    def locate(self, position: int) -> SampleLocation:
        """Where the sample at a global position (``epoch * E + sample``) comes from."""
        _check_int("position", position, 0)
        sources, windows = self._locate(np.array([position], dtype=np.int64))
        k, window = int(sources[0]), int(windows[0])
        grid = self._grids[k]
        start, stop = grid.token_range(window)
        shards = self.sources[k].shards
        files = tuple(shards[s].data_file.path for s in grid.shards_of(np.array([window])))
        epoch, sample = divmod(position, self.samples_per_epoch)
        return SampleLocation(position, epoch, sample, self.sources[k].label, window, start,
                              stop, files)

    def sample_at(self, position: int):
        """The item (tokens, or the dict with boundaries) at a global position."""
        _check_int("position", position, 0)
        sources, windows = self._locate(np.array([position], dtype=np.int64))
        return self._item(self._runtime_here(), int(sources[0]), int(windows[0]))


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, not {value!r}.")
