"""Per-sample document boundaries: position ids and ``cu_seqlens``.

A window packs pieces of several documents. Attention that should not cross
documents needs to know where they start; both forms here describe the window's
*inputs*, its first ``seq_len`` tokens (the labels are the window shifted by one):

* ``cu_seqlens`` (int32): ``[0, b1, ..., seq_len]``, the start of every document
  piece in the inputs and their end, as FlashAttention's ``*_varlen_func`` take them;
* ``position_ids`` (int64, ``seq_len``): each input token's index within its piece,
  restarting at 0 where a document starts (Megatron's ``reset_position_ids``). The
  first piece counts from 0 even when its document began before the window, as in
  Megatron, so positions never exceed ``seq_len - 1``.

The label of a document's last input token (its eos) is the next document's first
token; mask it with ``position_ids[1:] == 0`` if the model should not learn it.
"""

from __future__ import annotations

import numpy as np


def cu_seqlens(doc_starts: np.ndarray, seq_len: int) -> np.ndarray:
    """``[0, *doc_starts, seq_len]`` as int32 (``doc_starts`` in ``(0, seq_len)``)."""
    out = np.empty(len(doc_starts) + 2, dtype=np.int32)
    out[0] = 0
    out[1:-1] = doc_starts
    out[-1] = seq_len
    return out


def position_ids(cu: np.ndarray) -> np.ndarray:
    """Each input token's index within its document piece."""
    cu = cu.astype(np.int64)
    lengths = np.diff(cu)
    return np.arange(cu[-1], dtype=np.int64) - np.repeat(cu[:-1], lengths)
