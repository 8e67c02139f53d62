"""The compact tables the package ships as data files, and what their generators share.

A compact table is one JSON object: first what it is and where it came from (``about``,
``generated``, ``generator``, ``sources`` and whatever else the table needs to say),
then ``columns`` and ``rows``, one row per line, so that a regenerated table diffs row by
row and stays small. The package reads it with ``importlib.resources``; a test
regenerates it from ``../shared/data/aws`` and compares the bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_REGION = "us-east-1"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def dumps(meta: Mapping[str, Any], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The table as text: ``meta`` keys one per line, then the columns, then one row per line."""
    if {"columns", "rows"} & set(meta):
        raise ValueError("meta must not hold 'columns' or 'rows'")
    lines = [f"  {_json(key)}: {_json(value)}," for key, value in meta.items()]
    lines.append(f'  "columns": {_json(list(columns))},')
    body = [f"    {json.dumps(list(row), ensure_ascii=False, separators=(',', ':'))}"
            for row in rows]
    return "{\n" + "\n".join(lines) + '\n  "rows": [\n' + ",\n".join(body) + "\n  ]\n}\n"


def parser(description: str, data_help: str) -> argparse.ArgumentParser:
    """The command line every generator takes: the reference data folder, a region, a date."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("data_dir", type=Path, help=data_help)
    out.add_argument("--region", default=DEFAULT_REGION)
    out.add_argument("--date", default=datetime.date.today().isoformat(),
                     help="the generation date written into the table (default: today)")
    return out


def read_json(data_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((data_dir / name).read_text(encoding="utf-8"))
