"""Kubernetes resource quantities: parse CPU and memory strings, format them back.

CPU is handled in millicores and memory in bytes, both as ints, so sums and comparisons
are exact. Only the suffixes that manifests and profiles use are accepted.
"""

from __future__ import annotations

import re

from pipelines.errors import ConfigError

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
#: Spark's JVM-style sizes: 4g means 4 GiB
_SPARK = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$")

MIB = 2**20
GIB = 2**30


def parse_memory(value: str | int, *, what: str = "memory") -> int:
    """``"16Gi"``, ``"14162Mi"``, ``"4G"`` or a byte count -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _NUMBER.match(str(value).strip())
    if match:
        number, suffix = float(match.group(1)), match.group(2)
        if suffix == "":
            return int(number)
        for table in (_BINARY, _DECIMAL):
            if suffix in table:
                return int(number * table[suffix])
    raise ConfigError(f"{what} {value!r} is not a memory size; write e.g. 16Gi, 512Mi or 4G.")


def parse_spark_memory(value: str | int, *, what: str = "memory") -> int:
    """Spark's sizes (``"4g"``, ``"512m"``, no suffix = MiB) or Kubernetes ones -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * MIB
    match = _NUMBER.match(str(value).strip())
    if match and match.group(2).lower() in _SPARK and len(match.group(2)) == 1:
        return int(float(match.group(1)) * _SPARK[match.group(2).lower()])
    if match and match.group(2) == "":
        return int(float(match.group(1)) * MIB)
    return parse_memory(value, what=what)


def parse_cpu(value: str | int | float, *, what: str = "cpu") -> int:
    """``"3920m"``, ``"4"``, ``4`` or ``0.5`` -> millicores."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(value * 1000))
    text = str(value).strip()
    if text.endswith("m") and text[:-1].isdigit():
        return int(text[:-1])
    match = _NUMBER.match(text)
    if match and match.group(2) == "":
        return int(round(float(match.group(1)) * 1000))
    raise ConfigError(f"{what} {value!r} is not a CPU quantity; write e.g. 4, 0.5 or 3500m.")


def format_memory(n_bytes: int) -> str:
    """Bytes -> ``"13650Mi"`` (rounded down to whole MiB), or ``"16Gi"`` when exact."""
    if n_bytes % GIB == 0:
        return f"{n_bytes // GIB}Gi"
    return f"{n_bytes // MIB}Mi"


def format_cpu(millicores: int) -> str:
    """Millicores -> ``"4"`` when whole, else ``"3720m"``."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def gib(n_bytes: int) -> str:
    """A human size for messages: ``"13.3 GiB"``."""
    return f"{n_bytes / GIB:.1f} GiB"
