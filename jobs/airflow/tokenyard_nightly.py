"""tokenyard nightly: tokenize the raw objects that are new since the last run into a
dataset version of its own, and list it in the dataset's catalog.json.

Three tasks, each a thin call into ``pipelines.nightly`` (see README "## Airflow"):

    select   ──►  tokenize  ──►  publish
    (skipped      (run_job on       (catalog.json, then the
     if no new     the engine the    watermark, once the
     raw data)     job file names)   manifest is committed)

``select`` decides the night once (lists the new raw objects, reads the tokenizer,
checks the catalog) and hands it on as its XCom: ``tokenize`` and ``publish`` act on
that very night (its job, input list and version) without resolving it again.

Params (or the Airflow Variable ``tokenyard_nightly_job`` for the job file):
``job_file``, ``mode`` (auto | partition | watermark), ``version_template``,
``overrides`` (dotted job keys, e.g. {"engine.kind": "local"}), ``dask_profile``
(run on a KubeCluster). Credentials never go in params: they come from the AWS chain.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

DAG_FOLDER = Path(__file__).resolve().parent


@dag(
    dag_id="tokenyard_nightly",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # watermark mode must take nights one at a time; partition mode may raise this
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["tokenyard"],
    doc_md=__doc__,
    params={
        "job_file": Param(None, type=["null", "string"],
                          description="tokenyard job YAML; relative to the DAG folder. "
                                      "Empty: the Variable tokenyard_nightly_job."),
        "mode": Param("auto", enum=["auto", "partition", "watermark"],
                      description="partition: input.uri has {ds}; watermark: new objects "
                                  "under input.uri; auto: partition if {ds} is present."),
        "version_template": Param("v={ds}", type="string",
                                  description="the version's prefix under output.uri"),
        "overrides": Param({}, type="object",
                           description='dotted job keys, e.g. {"engine.kind": "dask", '
                                       '"engine.scheduler_address": "tcp://dask:8786"}'),
        "dask_profile": Param(None, type=["null", "string"],
                              description="cluster_specs/dask/*.yaml (relative to the DAG "
                                          "folder): run on a KubeCluster"),
    },
)
def tokenyard_nightly():
    @task
    def select(params=None, ds=None) -> dict:
        from pipelines import nightly_airflow as glue

        night = glue.resolve(params, ds, DAG_FOLDER)
        if night.skipped:
            glue.skip(night)
        glue.log.info("night %s (%s mode): %d raw objects -> %s%s", ds, night.mode,
                      len(night.inputs), night.output_uri,
                      " (resuming a saved plan)" if night.resumed else "")
        return glue.hand_on(night)

    @task
    def tokenize(selected: dict, params=None) -> dict:
        from pipelines import nightly, nightly_airflow as glue
        from pipelines.nightly_kubernetes import kube_cluster  # {} without a dask_profile
        from pipelines.progress_log import LoggingProgress

        night = glue.received(selected)
        profile = params.get("dask_profile")
        profile = str(DAG_FOLDER / profile) if profile else None
        with glue.airflow_errors(), kube_cluster(night.job, profile) as kw:
            summary = nightly.tokenize_night(night, progress=LoggingProgress(glue.log),
                                             engine_kwargs=kw)
        result = nightly.result_of(night, summary, catalog_updated=False)
        glue.log.info("%s", result.summary_line())
        return result.as_dict()

    @task
    def publish(tokenized: dict, selected: dict) -> dict:
        from pipelines import nightly, nightly_airflow as glue

        night = glue.received(selected)
        with glue.airflow_errors():
            entry, written = nightly.publish_night(night)
        glue.log.info("catalog %s %s: %s (%d documents, %d tokens)", night.catalog_uri,
                      "updated" if written else "already lists", entry["version"],
                      entry["documents"], entry["tokens"])
        return {**tokenized, "catalog_updated": written}

    selected = select()
    publish(tokenize(selected), selected)


tokenyard_nightly()
