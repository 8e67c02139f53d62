"""Engines: thin adapters that run ``task.run_unit`` over pending units.

A lazy registry: an engine's backend (Dask, Spark) is imported only when that engine
is chosen, and a missing backend names the package to install.
"""

from __future__ import annotations

import importlib

from pipelines.errors import ConfigError

ENGINES = {
    "local": ("pipelines.engines.local", "LocalEngine", None),
    "dask": ("pipelines.engines.dask", "DaskEngine", None),
    "spark": ("pipelines.engines.spark", "SparkEngine", "spark"),
}


def get_engine_class(kind: str):
    try:
        module, name, extra = ENGINES[kind]
    except KeyError:
        raise ConfigError(f"unknown engine {kind!r}.",
                          hint=f"Choose one of: {', '.join(ENGINES)}.") from None
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if extra and err.name and not err.name.startswith("pipelines"):
            raise ConfigError(
                f"engine {kind!r} needs the package {err.name}, which is not installed.",
                hint=f"Install it with: pip install 'tokenyard[{extra}]'.") from None
        raise
