"""Every package the code imports is declared where that code belongs.

Each Python file of the package (and the DAG files under ``jobs/``, and the tests) belongs
to the core or to one extra of ``pyproject.toml`` (:data:`AREAS`). Every top-level
package that it imports, at the top or lazily inside a function (``import x``,
``importlib.import_module("x")``), must come from a requirement of the core or of that
extra; an extra includes the extras it names (``tokenyard[airflow]``) and the extras of
its requirements (``dask[distributed]`` declares ``distributed``). Import names map to
distributions with :func:`importlib.metadata.packages_distributions`; a meta-package with
no modules of its own (``apache-airflow``) stands for its requirements, and
``airflow.providers.<name>`` is the provider ``apache-airflow-providers-<name>``.
``pytest.importorskip`` and ``find_spec`` probes are optional by design and not counted.

An area whose imports are not all installed here (``[test-core]`` alone has no Airflow)
is skipped, naming them; the full ``[test]`` environment checks every area.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from tests.helpers import REPO

CORE = "core"
#: where each file belongs: the first matching path prefix wins
AREAS = (
    ("pipelines/engines/spark.py", "spark"),
    ("pipelines/kube/cluster.py", "kubernetes"),
    ("pipelines/kube/checks/validate.py", "kubernetes"),
    ("pipelines/nightly_airflow.py", "airflow"),
    ("pipelines/training/pytorch.py", "training"),
    ("pipelines/testing/s3.py", "test-core"),
    ("pipelines/testing/measure.py", "test-core"),
    ("pipelines/", CORE),
    ("jobs/airflow/tokenyard_nightly_kubernetes.py", "airflow-kubernetes"),
    ("jobs/airflow/", "airflow"),
    ("jobs/", CORE),
    ("tests/", "test"),
)
SCANNED = ("pipelines", "jobs", "tests")
FIRST_PARTY = {"pipelines", "tests"}
#: calls whose first argument, a string, names a module that the code imports
IMPORTING_CALLS = {"import_module", "_require", "__import__"}
_AIRFLOW_PROVIDER = re.compile(r"^airflow\.providers\.([a-z0-9_.]+?)(?:\.(?:hooks|operators|"
                               r"sensors|triggers|decorators|utils|models)\b|$)")


def area_of(relative: str) -> str:
    return next(area for prefix, area in AREAS if relative.startswith(prefix))


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports (dotted names), wherever the import statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in IMPORTING_CALLS:
                found.add(node.args[0].value)
    return found


def third_party(module: str, path: Path) -> bool:
    top = module.split(".")[0]
    siblings = {p.stem for p in path.parent.glob("*.py")}
    return top not in sys.stdlib_module_names and top not in FIRST_PARTY | siblings


@cache
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requires_of(dist: str, extra: str = "") -> set[str]:
    """Canonical names that an installed distribution requires: its own (``extra`` empty)
    or those that its ``extra`` adds; none when it is not installed here."""
    try:
        lines = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    names = set()
    for line in lines:
        req = Requirement(line)
        adds = req.marker is not None and "extra" in str(req.marker)
        if adds == bool(extra) and (req.marker is None or req.marker.evaluate({"extra": extra})):
            names.add(canonicalize_name(req.name))
    return names


@cache
def _distributions() -> dict[str, set[str]]:
    return {top: {canonicalize_name(d) for d in dists}
            for top, dists in importlib.metadata.packages_distributions().items()}


@cache
def _with_modules() -> frozenset[str]:
    return frozenset(d for dists in _distributions().values() for d in dists)


@cache
def declared(area: str) -> frozenset[str]:
    """Canonical names of the distributions that the core and ``area`` declare."""
    meta = project()
    lines = list(meta["dependencies"])
    if area != CORE:
        lines += meta["optional-dependencies"][area]
    names: set[str] = set()
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name == canonicalize_name(meta["name"]):
            for extra in req.extras:
                names |= declared(extra)
            continue
        names.add(name)
        for extra in req.extras:  # dask[distributed] declares distributed
            names |= _requires_of(req.name, extra)
        if name not in _with_modules():  # a meta-package stands for its requirements
            names |= _requires_of(req.name)
    return frozenset(names)


def providers_of(module: str) -> set[str] | None:
    """Distributions that provide a module; None when none is installed here."""
    provider = _AIRFLOW_PROVIDER.match(module)
    if provider:
        name = "apache-airflow-providers-" + provider.group(1).replace(".", "-").replace("_", "-")
        return {canonicalize_name(name)}
    return _distributions().get(module.split(".")[0])


def scan() -> dict[str, list[tuple[str, str]]]:
    """``{area: [(file, module), ...]}`` of every third-party import."""
    found: dict[str, list[tuple[str, str]]] = {}
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            for module in sorted(imported_modules(path)):
                if third_party(module, path):
                    found.setdefault(area_of(relative), []).append((relative, module))
    return found


AREA_NAMES = sorted({area for _, area in AREAS})


def test_every_extra_named_here_exists():
    extras = set(project()["optional-dependencies"])
    assert set(AREA_NAMES) - {CORE} <= extras


@pytest.mark.parametrize("area", AREA_NAMES)
def test_every_import_is_declared_where_its_code_belongs(area):
    imports = scan().get(area, [])
    assert imports, f"no import belongs to {area}: is AREAS stale?"
    missing, unknown = [], []
    for relative, module in imports:
        providers = providers_of(module)
        top = canonicalize_name(module.split(".")[0])
        if providers is None:
            if top not in declared(area):
                unknown.append(f"{module} ({relative})")
        elif not providers & declared(area):
            missing.append(f"{relative} imports {module} (from {', '.join(sorted(providers))})")
    where = "the core dependencies" if area == CORE else \
        f"the core dependencies or the extra {area!r}"
    assert not missing, (f"not declared in {where} of pyproject.toml:\n  " +
                         "\n  ".join(missing))
    if unknown:
        pytest.skip(f"not installed here, so not checked: {', '.join(sorted(set(unknown)))}")


def test_the_check_finds_an_undeclared_import(tmp_path):
    """The scan sees lazy and string imports, and the core does not declare jsonschema."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    import jsonschema.validators\n"
                      "    importlib.import_module('pyspark')\n")
    assert imported_modules(module) == {"jsonschema.validators", "pyspark"}
    assert providers_of("jsonschema") == {"jsonschema"}
    assert "jsonschema" not in declared(CORE) and "jsonschema" in declared("test-core")
    assert "pyspark" not in declared(CORE) and "py4j" in declared("spark")
    assert "distributed" in declared(CORE)  # through dask[distributed]
    assert "apache-airflow-providers-cncf-kubernetes" in declared("airflow-kubernetes")
    assert "apache-airflow-providers-cncf-kubernetes" not in declared("airflow")
    assert providers_of("airflow.providers.cncf.kubernetes.operators.resource") == {
        "apache-airflow-providers-cncf-kubernetes"}


def test_import_pipelines_needs_no_metrics_package():
    """prometheus_client serves the Dask scheduler's /metrics; the package imports without
    it, and so does the Dask engine, whose scheduler plugin loads it when counting."""
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "import pipelines, pipelines.cli, pipelines.engines.dask")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_ci_runs_the_readmes_test_command_with_the_constraints():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running the tests", 1)[1].split("\n## ", 1)[0]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "-c constraints.txt" in command and "'.[test]'" in command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci
    assert (REPO / "constraints.txt").is_file()


def test_the_constraints_pin_every_package_that_the_test_extra_declares():
    pinned = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pinned[canonicalize_name(req.name)] = str(req.specifier)
    assert all(spec.startswith("==") for spec in pinned.values())
    loose = sorted(name for name in declared("test") - set(pinned) if _installed(name))
    assert not loose, f"installed here but not pinned; add to constraints.txt: {loose}"


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False  # tomli on Python 3.11+, say
    return True
