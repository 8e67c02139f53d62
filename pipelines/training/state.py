"""The reader's state: where in the global sample order training stands.

A state is what :meth:`SequenceDataset.state_dict` returns and a checkpoint keeps::

    {"format": "tokenyard-reader/1", "fingerprint": "f38a…", "seed": 0,
     "seq_len": 2048, "order": "5be1c0ffee2e4a11", "epoch": 3, "sample": 123456}

``epoch`` and ``sample`` say that the first ``sample`` positions of epoch ``epoch`` of
the global order have been consumed (by all ranks together). Nothing in it depends
on the number of ranks or dataloader workers, so a run may resume with other
numbers of either. ``fingerprint`` identifies the data; ``order`` is a short hash of
everything else that shapes the order (shuffle on or off, shuffle window, epoch
length, mixture weights); with ``seed`` and ``seq_len`` they must match the reader's
own, or :class:`~pipelines.errors.ReaderStateError` says which one differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipelines.errors import ReaderStateError

STATE_FORMAT = "tokenyard-reader/1"
#: bumped whenever the order algorithm changes, so an old state is refused, not misread
ORDER_ALGORITHM = 1


def order_key(*, shuffle: bool, window_samples: int, samples_per_epoch: int,
              mixture: tuple[tuple[int, ...], int] | None) -> str:
    """A short hash of the settings, other than seed and seq_len, that shape the order."""
    spec = {"algorithm": ORDER_ALGORITHM, "shuffle": shuffle,
            "window_samples": window_samples if shuffle else None,
            "samples_per_epoch": samples_per_epoch, "mixture": mixture}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReaderState:
    fingerprint: str
    seed: int
    seq_len: int
    order: str
    epoch: int
    sample: int

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, state: Mapping) -> "ReaderState":
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ReaderStateError(
                f"the state to load is not a tokenyard reader state of format {STATE_FORMAT} "
                f"(found {found!r}).",
                hint="Pass what SequenceDataset.state_dict() returned, unchanged.")
        try:
            loaded = cls(fingerprint=str(state["fingerprint"]), seed=int(state["seed"]),
                         seq_len=int(state["seq_len"]), order=str(state["order"]),
                         epoch=int(state["epoch"]), sample=int(state["sample"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ReaderStateError(f"the reader state lacks or mangles a field ({err!r}).",
                                   hint="Pass what SequenceDataset.state_dict() returned, "
                                        "unchanged.") from None
        if loaded.epoch < 0 or loaded.sample < 0:
            raise ReaderStateError(f"the reader state has a negative position "
                                   f"(epoch {loaded.epoch}, sample {loaded.sample}).")
        return loaded

    def check_matches(self, reader: "ReaderState") -> None:
        """Refuse a saved state that belongs to other data or another order."""
        names = {"fingerprint": "data (fingerprint)", "seed": "seed", "seq_len": "seq_len",
                 "order": "order settings (shuffle, shuffle window, epoch length, mixture "
                          "weights)"}
        for field, what in names.items():
            saved, here = getattr(self, field), getattr(reader, field)
            if saved != here:
                raise ReaderStateError(
                    f"the reader state was saved for {what} {saved!r}, but this reader has "
                    f"{here!r}; resuming would skip or repeat samples, so it was refused.")
