"""The roles of ``pipelines.kube`` stay layered: capacity, then render, then checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pipelines.kube

KUBE = Path(pipelines.kube.__file__).parent
#: what each group may import from the rest of pipelines.kube
ALLOWED = {
    "capacity": ("pipelines.kube.capacity",),
    "render": ("pipelines.kube.capacity", "pipelines.kube.render"),
    "checks": ("pipelines.kube.capacity", "pipelines.kube.render", "pipelines.kube.checks"),
}


def kube_imports(path: Path) -> set[str]:
    """Every ``pipelines.kube...`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("pipelines.kube."))
    return found


def test_each_group_imports_only_the_groups_below_it():
    broken = []
    for group, allowed in ALLOWED.items():
        files = sorted((KUBE / group).glob("*.py"))
        assert files, f"no modules in pipelines/kube/{group}/"
        for path in files:
            for module in sorted(kube_imports(path)):
                if not module.startswith(allowed):
                    broken.append(f"{group}/{path.name} imports {module}")
    assert broken == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipelines.kube.render import yamlio\n")
    assert kube_imports(probe) == {"pipelines.kube.render", "pipelines.kube.render.yamlio"}
    assert not "pipelines.kube.render.yamlio".startswith(ALLOWED["capacity"])
