"""Glue between Airflow tasks and :mod:`pipelines.nightly`; imported only by the DAGs in
``jobs/airflow/`` (it imports Airflow; ``import pipelines`` never does).

* :func:`base_job` finds the job file: the ``job_file`` DAG param, else the Airflow
  Variable ``tokenyard_nightly_job``; a relative path is relative to the DAG file.
* :func:`resolve` decides the night (only the ``select`` task does); :func:`hand_on` is
  what ``select`` returns, and :func:`received` gives the tasks after it that very night
  from the XCom, so that none of them lists, plans or loads the tokenizer again unless
  that is its own work (``tokenize`` runs the pipeline, which plans).
* :func:`airflow_errors` turns a :class:`~pipelines.errors.TokenyardError` into the
  pipeline's one-paragraph message: a permanent error fails the task at once
  (``AirflowFailException``: no retry), a transient one (throttling, a lost network,
  units that failed on transient errors) fails the attempt so Airflow retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from pipelines import nightly
from pipelines.config import JobConfig, load_job
from pipelines.errors import RunFailedError, TokenyardError

#: the Airflow Variable that names the job file when the DAG param is empty
JOB_VARIABLE = "tokenyard_nightly_job"

log = logging.getLogger("airflow.task")


def _is_transient(err: TokenyardError) -> bool:
    if isinstance(err, RunFailedError):
        first = err.first
        return bool(getattr(first, "transient", False))
    return err.transient


@contextmanager
def airflow_errors() -> Iterator[None]:
    """Pipeline errors become one clear line in the task log, not a traceback."""
    try:
        yield
    except TokenyardError as err:
        message = f"{type(err).__name__}: {err}"
        log.error("%s", message)
        if _is_transient(err):
            raise AirflowException(message) from None
        raise AirflowFailException(message) from None


def base_job(params: dict[str, Any], dag_folder: Path) -> JobConfig:
    """The base job of the DAG run: the job file, with the run's overrides applied."""
    job_file = params.get("job_file") or Variable.get(JOB_VARIABLE, default=None)
    if not job_file:
        raise AirflowFailException(
            f"no job file: set the DAG param job_file or the Airflow Variable {JOB_VARIABLE} "
            "to the path of a tokenyard job YAML (relative paths are relative to the DAG "
            "folder).")
    path = Path(job_file)
    if not path.is_absolute():
        path = dag_folder / path
    with airflow_errors():
        job = load_job(path)
        overrides = params.get("overrides") or {}
        return job.with_overrides(**overrides) if overrides else job


def resolve(params: dict[str, Any], ds: str, dag_folder: Path) -> nightly.Night:
    base = base_job(params, dag_folder)
    with airflow_errors():
        return nightly.resolve_night(base, ds, mode=params.get("mode") or nightly.AUTO,
                                     version_template=params.get("version_template")
                                     or nightly.DEFAULT_VERSION_TEMPLATE)


def skip(night: nightly.Night) -> None:
    """A night with no new raw data: log it and mark the task skipped (not failed)."""
    message = nightly.skipped_result(night).summary_line()
    log.info("%s", message)
    raise AirflowSkipException(message)


def skip_submit(night: nightly.Night) -> None:
    """The night's version is committed already: nothing to submit to the cluster."""
    message = f"{night.output_uri} is committed already; nothing to submit"
    log.info("%s", message)
    raise AirflowSkipException(message)


def describe(night: nightly.Night) -> dict[str, Any]:
    """A summary of the night to read in the Airflow UI: small, JSON, no credentials."""
    return {"ds": night.ds, "mode": night.mode, "version": night.version,
            "output_uri": night.output_uri, "catalog_uri": night.catalog_uri,
            "input_files": len(night.inputs), "input_bytes": sum(i.size for i in night.inputs),
            "resumed": night.resumed}


def hand_on(night: nightly.Night) -> dict[str, Any]:
    """What the select task returns (its XCom): the summary, and under ``night`` the
    night itself (its job, input list and version) for the tasks after it."""
    return {**describe(night), "night": night.as_dict()}


def received(selected: dict[str, Any] | None) -> nightly.Night:
    """The night that the select task decided, from its XCom."""
    with airflow_errors():
        return nightly.Night.from_dict((selected or {}).get("night"))
