"""Seeded permutations that are the same on every machine, Python and NumPy version.

A training run resumed on another node, months later, with another NumPy, must see
the same sample order. NumPy's ``Generator.permutation`` makes no such promise (its
algorithms may change between releases), so orders here come from a fixed function:
:func:`permutation` sorts ``0..n-1`` by SplitMix64 (a bijection of 64-bit integers)
of ``i + key``. The key folds the seed and the coordinates of what is being ordered
(a source, an epoch, a chunk) through the same mixer, in pure Python integers.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _mix_int(x: int) -> int:
    """SplitMix64's output function on a Python int (mod 2**64)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)


def key_of(*parts: int | str) -> int:
    """A 64-bit key from integers and short labels, e.g. ``key_of(seed, "blocks", 3)``."""
    h = _GOLDEN
    for part in parts:
        if isinstance(part, str):
            value = int.from_bytes(part.encode()[:16].ljust(16, b"\0"), "little")
        else:
            value = int(part)
        h = _mix_int(h ^ _mix_int(value + _GOLDEN))
    return h


def _mix_array(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_M1)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def permutation(n: int, key: int) -> np.ndarray:
    """A pseudo-random permutation of ``0..n-1`` (int64), a pure function of ``(n, key)``."""
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    counters = np.arange(n, dtype=np.uint64) + np.uint64(key & _MASK64)
    return np.argsort(_mix_array(counters), kind="stable").astype(np.int64, copy=False)
