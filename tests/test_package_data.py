"""Every data file in the package is declared as package data, so that an install has it.

setuptools puts only modules in a wheel unless ``[tool.setuptools.package-data]`` names
the other files (without it, the built wheel had neither generated table).
"""

from __future__ import annotations

import fnmatch

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from tests.helpers import REPO


def declared() -> dict[str, list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["setuptools"].get("package-data", {})


def data_files() -> list[str]:
    """Files under pipelines/ that are not Python, as paths relative to the repository."""
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "pipelines").rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts)


def is_declared(relative: str, package_data: dict[str, list[str]]) -> bool:
    for package, patterns in package_data.items():
        folder = package.replace(".", "/") + "/"
        if relative.startswith(folder) and any(
                fnmatch.fnmatch(relative[len(folder):], pattern) for pattern in patterns):
            return True
    return False


def test_every_data_file_of_the_package_is_declared():
    files = data_files()
    assert "pipelines/kube/capacity/instance_types.json" in files
    assert "pipelines/cost/on_demand_prices.json" in files
    package_data = declared()
    assert [f for f in files if not is_declared(f, package_data)] == []


def test_the_check_sees_an_undeclared_file():
    package_data = {"pipelines.cost": ["*.json"]}
    assert is_declared("pipelines/cost/on_demand_prices.json", package_data)
    assert not is_declared("pipelines/kube/capacity/instance_types.json", package_data)
    assert not is_declared("pipelines/cost/notes.txt", package_data)
