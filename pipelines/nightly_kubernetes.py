"""A night of :mod:`pipelines.nightly` run on Kubernetes.

Two ways, both used from Airflow (``jobs/airflow/``) and callable without it:

* :func:`kube_cluster`: the night's job runs from the Airflow worker on a ``KubeCluster``
  started from a Dask profile (``cluster_specs/dask/*.yaml``) for the night and closed
  after (the in-worker DAG's ``dask_profile`` param; needs ``tokenyard[kubernetes]``).
* :func:`render_night`: the Kubernetes objects that run the night's job in the cluster as
  a ``DaskJob`` or a ``SparkApplication`` (the DAG ``tokenyard_nightly_kubernetes``, which
  creates them with Airflow's Kubernetes provider; nothing here imports that provider).

Both take the :class:`~pipelines.nightly.Night` that ``select`` decided: they list,
plan and read nothing themselves. The pods run ``tokenyard run`` on the night's job,
which commits the version; the catalog is updated afterwards by
:func:`pipelines.nightly.publish_night`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipelines.config import JobConfig
from pipelines.errors import ConfigError
from pipelines.nightly import Night, placeholders

#: what :func:`render_night` can submit to Kubernetes
RENDER_KINDS = ("daskjob", "sparkapplication")
#: object names keep this much of the job's name, then ``-<ds_nodash>-a<attempt>``
JOB_NAME_PREFIX_CHARS = 44


@contextmanager
def kube_cluster(job: JobConfig, dask_profile: str | None) -> Iterator[dict]:
    """Engine arguments that run the night on a ``KubeCluster`` started from a Dask
    profile (``cluster_specs/dask/*.yaml``), closed when the block ends; ``{}`` without one.
    """
    if not dask_profile:
        yield {}
        return
    if job.engine.kind != "dask":
        raise ConfigError(f"a Dask profile ({dask_profile}) needs engine.kind dask, not "
                          f"{job.engine.kind}.")
    from pipelines.kube.cluster import make_kube_cluster

    cluster, note = make_kube_cluster(job, dask_profile)
    try:
        yield {"cluster": cluster, "cluster_note": note}
    finally:
        cluster.close()


def object_name(night: Night, attempt: int) -> str:
    """``<job>-<ds_nodash>-a<attempt>``: a retry never collides with an earlier attempt."""
    if night.job is None:
        raise ConfigError(f"night {night.ds} has nothing to run ({night.skipped_reason}).")
    prefix = night.job.name[:JOB_NAME_PREFIX_CHARS].rstrip("-_.")
    return f"{prefix}-{placeholders(night.ds)['ds_nodash']}-a{attempt}"


def render_night(night: Night, kind: str, profile_path: str, *, attempt: int = 1
                 ) -> list[dict[str, Any]]:
    """The Kubernetes objects that run the night's job as a DaskJob or a SparkApplication,
    built by the project's renderers (``pipelines.kube``) and named by :func:`object_name`.
    """
    name = object_name(night, attempt)
    job = night.job.with_overrides(name=name)
    if kind == "daskjob":
        from pipelines.kube.capacity.profiles import load_dask_profile
        from pipelines.kube.render.dask import render

        return render(job, load_dask_profile(profile_path), as_job=True, source=profile_path)
    if kind == "sparkapplication":
        from pipelines.kube.capacity.profiles import load_spark_profile
        from pipelines.kube.render.spark import render_operator

        return render_operator(job.with_overrides(**{"engine.kind": "spark"}),
                               load_spark_profile(profile_path), source=profile_path)
    raise ConfigError(f"unknown Kubernetes kind {kind!r}.",
                      hint=f"Choose one of: {', '.join(RENDER_KINDS)}.")
