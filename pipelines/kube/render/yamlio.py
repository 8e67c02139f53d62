"""The YAML edge: Kubernetes objects (plain dicts) to text and back.

Output is deterministic (keys in the order built, no anchors or aliases, long lines
kept whole) so that golden files and ``kubectl apply -f -`` see the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=1000,
                     default_flow_style=False, allow_unicode=True)


def dump_all(objects: Iterable[Any], header: str = "") -> str:
    """A multi-document stream; ``header`` lines become comments at the top."""
    parts = [dump(o) for o in objects]
    text = "---\n" + "---\n".join(parts)
    if header:
        text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + text
    return text


def load_all(path: str | Path) -> list[Any]:
    """Every document of a YAML file, empty documents dropped."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]
