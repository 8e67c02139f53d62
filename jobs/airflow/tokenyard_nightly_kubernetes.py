"""tokenyard nightly on Kubernetes: the night's job runs as a DaskJob or a
SparkApplication that the DAG submits; Airflow only orchestrates.

    select ──► render ──► submit_config ──► submit_job ──► wait ──► publish

``select`` decides the night once (lists the new raw objects, reads the tokenizer,
checks the catalog) and hands it on as its XCom; every later task acts on that night.
``render`` builds the objects with the project's renderers
(``pipelines.kube.render.dask`` / ``pipelines.kube.render.spark`` through
``pipelines.nightly_kubernetes.render_night``), named per night and attempt, or skips
the submission when the version is committed already; ``submit_*`` create them with the
Kubernetes provider's ``KubernetesCreateResourceOperator`` (connection
``kubernetes_default``); ``wait`` watches for the version's ``manifest.json`` (the
pipeline's own commit signal: one read per poke) in reschedule mode, so no worker slot
is held while the cluster works; ``publish`` adds the version to catalog.json.

Needs Airflow's Kubernetes provider (``pip install 'tokenyard[airflow-kubernetes]'``);
without it this file defines no DAG
(and the in-worker DAG ``tokenyard_nightly`` still works). Job files for this DAG must
use object-store URIs only (pods cannot read the Airflow worker's disk). Both modes
work: a watermark night's explicit input list travels in the rendered job file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

try:
    from airflow.providers.cncf.kubernetes.operators.resource import (
        KubernetesCreateResourceOperator,
    )
except ImportError:  # the provider is optional: no DAG without it
    KubernetesCreateResourceOperator = None

DAG_FOLDER = Path(__file__).resolve().parent
#: the Airflow connection to the cluster (in-cluster, or a kubeconfig); never a secret here
KUBERNETES_CONN_ID = "kubernetes_default"
#: how long ``wait`` lets the cluster work before it gives up
WAIT_TIMEOUT = timedelta(hours=12)


def build():
    @dag(
        dag_id="tokenyard_nightly_kubernetes",
        schedule="@daily",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
        tags=["tokenyard", "kubernetes"],
        doc_md=__doc__,
        params={
            "job_file": Param(None, type=["null", "string"]),
            "mode": Param("auto", enum=["auto", "partition", "watermark"]),
            "version_template": Param("v={ds}", type="string"),
            "overrides": Param({}, type="object"),
            "kind": Param("daskjob", enum=["daskjob", "sparkapplication"]),
            "profile": Param(None, type=["null", "string"],
                             description="a cluster_specs/dask or cluster_specs/spark profile; "
                                         "relative to the DAG folder"),
        },
    )
    def tokenyard_nightly_kubernetes():
        @task
        def select(params=None, ds=None) -> dict:
            from pipelines import nightly_airflow as glue

            night = glue.resolve(params, ds, DAG_FOLDER)
            if night.skipped:
                glue.skip(night)
            return glue.hand_on(night)

        @task
        def render(selected: dict, params=None, ti=None) -> dict:
            from pipelines import nightly, nightly_airflow as glue, nightly_kubernetes
            from pipelines.kube.render import yamlio

            night = glue.received(selected)
            if nightly.is_committed(night):
                glue.skip_submit(night)
            if not params.get("profile"):
                raise glue.AirflowFailException(
                    "no profile: set the DAG param profile to a cluster_specs/dask/*.yaml "
                    "(daskjob) or cluster_specs/spark/*.yaml (sparkapplication) file.")
            profile = str(DAG_FOLDER / params["profile"])
            with glue.airflow_errors():
                objects = nightly_kubernetes.render_night(night, params["kind"], profile,
                                                          attempt=ti.try_number)
            core = [o for o in objects if o["apiVersion"] == "v1"]
            custom = [o for o in objects if o["apiVersion"] != "v1"]
            return {"core": yamlio.dump_all(core), "custom": yamlio.dump_all(custom)}

        submit_config = KubernetesCreateResourceOperator(
            task_id="submit_config", kubernetes_conn_id=KUBERNETES_CONN_ID,
            yaml_conf="{{ ti.xcom_pull(task_ids='render')['core'] }}")
        submit_job = KubernetesCreateResourceOperator(
            task_id="submit_job", kubernetes_conn_id=KUBERNETES_CONN_ID,
            custom_resource_definition=True,
            yaml_conf="{{ ti.xcom_pull(task_ids='render')['custom'] }}")

        # runs when the objects were submitted, or when render found the version
        # committed already (submit skipped); skipped with select (nothing new)
        @task.sensor(poke_interval=60, timeout=WAIT_TIMEOUT.total_seconds(), mode="reschedule",
                     trigger_rule="none_failed_min_one_success")
        def wait(selected: dict) -> bool:
            from pipelines import nightly, nightly_airflow as glue

            with glue.airflow_errors():  # one read of manifest.json per poke
                return nightly.is_committed(glue.received(selected))

        @task
        def publish(selected: dict) -> dict:
            from pipelines import nightly, nightly_airflow as glue

            night = glue.received(selected)
            with glue.airflow_errors():
                entry, written = nightly.publish_night(night)
            return {**entry, "catalog_updated": written}

        selected = select()
        render(selected) >> submit_config >> submit_job >> wait(selected) >> publish(selected)

    return tokenyard_nightly_kubernetes()


if KubernetesCreateResourceOperator is not None:
    build()
