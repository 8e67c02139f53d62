"""Spark on Kubernetes: spark-submit configuration and pod templates, or a SparkApplication.

The driver runs ``tokenyard run JOB --engine spark`` (``/opt/tokenyard/main.py`` in the
image runs ``python -m pipelines``) in cluster mode on the stable on-demand pool, with
``karpenter.sh/do-not-disrupt``. Executors select the CPU:memory class of their whole
pod: Spark asks Kubernetes for ``spark.executor.memory`` + ``memoryOverhead`` +
``spark.executor.pyspark.memory``, and tokenization runs in the Python workers, so the
class is chosen from that sum. Spot safety: decommissioning moves shuffle and cached
blocks off an executor within its grace period (inside the 2-minute notice), dynamic
allocation tracks shuffle files instead of needing a shuffle service, and task and
executor failure limits allow for spot losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import JobConfig
from pipelines.engines.limits import (SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS,
                                      SPARK_TASK_MAX_FAILURES, spark_executor_max_failures)
from pipelines.kube.capacity import fit
from pipelines.kube.capacity.pools import stable_pool
from pipelines.kube.capacity.profiles import SparkProfile
from pipelines.kube.capacity.quantity import MIB, format_cpu
from pipelines.kube.capacity.scheduling import PodShape
from pipelines.kube.capacity.sizing import PodSize, sized, size_pod, size_worker
from pipelines.kube.render import podspec

MASTER = "k8s://https://kubernetes.default.svc"
MAIN_FILE = "local:///opt/tokenyard/main.py"
DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"
DRIVER_TEMPLATE_FILE = "driver-pod-template.yaml"
EXECUTOR_TEMPLATE_FILE = "executor-pod-template.yaml"
PROPERTIES_FILE = "spark.conf"
#: Spark forces a decommissioning executor to exit after this, inside the pod's grace
DECOMMISSION_FORCE_KILL = f"{podspec.SPOT_GRACE_SECONDS - 10}s"


@dataclass(frozen=True)
class SparkPlan:
    name: str
    namespace: str
    profile: SparkProfile
    driver: PodSize
    executor: PodSize

    def pods(self) -> list[PodShape]:
        return [podspec.pod_shape("driver", self.driver, podspec.stable_placement()),
                podspec.pod_shape("executor", self.executor,
                                  podspec.worker_placement(self.executor))]

    @property
    def job_configmap_name(self) -> str:
        return f"{self.name}-job"


def _plan(job: JobConfig, profile: SparkProfile, source: str | None) -> SparkPlan:
    d, e = profile.driver, profile.executor
    return SparkPlan(
        name=podspec.object_name(job),
        namespace=profile.namespace,
        profile=profile,
        driver=sized("driver", lambda: size_pod(
            d.cores, d.pod_memory_bytes, stable_pool(), memory_class=None, shrink_memory=False,
            source=source, what="the Spark driver (spark.driver.memory + memoryOverhead)")),
        executor=sized("executor", lambda: size_worker(
            e.cores, e.pod_memory_bytes, shrink_memory=False, source=source,
            what="a Spark executor (spark.executor.memory + memoryOverhead + "
                 "spark.executor.pyspark.memory)")),
    )


def plan(job: JobConfig, profile: SparkProfile, source: str | None = None) -> SparkPlan:
    """Size the driver and executors; a pod that does not fit is a ProfileFitError that
    lists only profile changes that would fit (``fit.planned``)."""
    return fit.planned(lambda p: _plan(job, p, source), profile, fit.spark_changes)


def _mib(n_bytes: int) -> str:
    return f"{n_bytes // MIB}m"


def arguments() -> list[str]:
    return ["run", podspec.JOB_FILE, "--engine", "spark"]


def spot_conf(p: SparkPlan) -> dict[str, str]:
    """Settings that both spark-submit and the operator pass through unchanged."""
    e = p.profile.executor
    java = f"-Djava.io.tmpdir={podspec.SCRATCH_PATH}"
    return {
        "spark.executor.pyspark.memory": _mib(e.pyspark_bytes),
        "spark.decommission.enabled": "true",
        "spark.storage.decommission.enabled": "true",
        "spark.storage.decommission.shuffleBlocks.enabled": "true",
        "spark.storage.decommission.rddBlocks.enabled": "true",
        "spark.executor.decommission.forceKillTimeout": DECOMMISSION_FORCE_KILL,
        "spark.task.maxFailures": str(SPARK_TASK_MAX_FAILURES),
        "spark.stage.maxConsecutiveAttempts": str(SPARK_STAGE_MAX_CONSECUTIVE_ATTEMPTS),
        "spark.executor.maxNumFailures": str(spark_executor_max_failures(
            p.profile.executors.max)),
        "spark.executor.failuresValidityInterval": "1h",
        "spark.kubernetes.executor.deleteOnTermination": "true",
        "spark.kubernetes.executor.podNamePrefix": p.name,
        "spark.driver.extraJavaOptions": java,
        "spark.executor.extraJavaOptions": java,
        "spark.ui.showConsoleProgress": "false",
    }


def submit_conf(p: SparkPlan) -> dict[str, str]:
    """Everything ``spark-submit --properties-file`` needs for cluster mode."""
    d, e, n = p.profile.driver, p.profile.executor, p.profile.executors
    conf = {
        "spark.master": MASTER,
        "spark.submit.deployMode": "cluster",
        "spark.app.name": p.name,
        "spark.kubernetes.namespace": p.namespace,
        "spark.kubernetes.container.image": p.profile.image,
        "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
        "spark.kubernetes.authenticate.driver.serviceAccountName": p.profile.service_account,
        "spark.kubernetes.driver.podTemplateFile": DRIVER_TEMPLATE_FILE,
        "spark.kubernetes.driver.podTemplateContainerName": DRIVER_CONTAINER,
        "spark.kubernetes.executor.podTemplateFile": EXECUTOR_TEMPLATE_FILE,
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER,
        "spark.driver.cores": str(d.cores),
        "spark.driver.memory": _mib(d.memory_bytes),
        "spark.driver.memoryOverhead": _mib(d.overhead_bytes),
        "spark.kubernetes.driver.request.cores": format_cpu(p.driver.cpu_request_m),
        "spark.kubernetes.driver.limit.cores": format_cpu(p.driver.cpu_limit_m),
        "spark.executor.cores": str(e.cores),
        "spark.executor.memory": _mib(e.memory_bytes),
        "spark.executor.memoryOverhead": _mib(e.overhead_bytes),
        "spark.kubernetes.executor.request.cores": format_cpu(p.executor.cpu_request_m),
        "spark.kubernetes.executor.limit.cores": format_cpu(p.executor.cpu_limit_m),
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": str(n.min),
        "spark.dynamicAllocation.maxExecutors": str(n.max),
        "spark.dynamicAllocation.initialExecutors": str(n.initial if n.initial is not None
                                                        else n.min),
        "spark.dynamicAllocation.executorIdleTimeout": "120s",
    }
    conf.update(spot_conf(p))
    return conf


def submit_command(p: SparkPlan) -> list[str]:
    return ["spark-submit", "--master", MASTER, "--deploy-mode", "cluster", "--name", p.name,
            "--properties-file", PROPERTIES_FILE, MAIN_FILE, *arguments()]


def _template(p: SparkPlan, role: str, container: str) -> dict[str, Any]:
    driver = role == "driver"
    placement = podspec.stable_placement() if driver else podspec.worker_placement(p.executor)
    mounts = [podspec.job_mount(), podspec.scratch_mount()] if driver else [podspec.scratch_mount()]
    volumes = ([podspec.job_volume(p.job_configmap_name), podspec.scratch_volume()] if driver
               else [podspec.scratch_volume()])
    metadata: dict[str, Any] = {"labels": podspec.labels(p.name, f"spark-{role}")}
    if placement.annotations():
        metadata["annotations"] = placement.annotations()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": p.profile.service_account,
            # the driver creates and watches its executor pods; executors need no API
            "automountServiceAccountToken": driver,
            "securityContext": podspec.pod_security_context(),
            **placement.pod_fields(),
            "terminationGracePeriodSeconds": 30 if driver else podspec.SPOT_GRACE_SECONDS,
            "containers": [{
                "name": container,
                "workingDir": podspec.SCRATCH_PATH,
                "env": podspec.env(),
                "securityContext": podspec.container_security_context(),
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    }


def driver_template(p: SparkPlan) -> dict[str, Any]:
    return _template(p, "driver", DRIVER_CONTAINER)


def executor_template(p: SparkPlan) -> dict[str, Any]:
    return _template(p, "executor", EXECUTOR_CONTAINER)


def job_configmap(p: SparkPlan, job: JobConfig) -> dict[str, Any]:
    text = podspec.job_yaml(job, **{"engine.kind": "spark", "engine.spark_master": MASTER})
    return podspec.configmap(p.job_configmap_name, p.namespace, p.name, {"job.yaml": text})


def properties_text(conf: dict[str, str]) -> str:
    return "".join(f"{k} {v}\n" for k, v in conf.items())


@dataclass(frozen=True)
class SubmitRender:
    """What ``tokenyard render spark`` gives for spark-submit."""

    command: list[str]
    conf: dict[str, str]
    job_configmap: dict[str, Any]
    driver_template: dict[str, Any]
    executor_template: dict[str, Any]

    def objects(self) -> list[dict[str, Any]]:
        return [self.job_configmap, self.driver_template, self.executor_template]

    def files(self) -> dict[str, str]:
        from pipelines.kube.render import yamlio

        return {
            PROPERTIES_FILE: properties_text(self.conf),
            DRIVER_TEMPLATE_FILE: yamlio.dump(self.driver_template),
            EXECUTOR_TEMPLATE_FILE: yamlio.dump(self.executor_template),
            "job-configmap.yaml": yamlio.dump(self.job_configmap),
        }


def render_submit(job: JobConfig, profile: SparkProfile, source: str | None = None) -> SubmitRender:
    podspec.require_remote_uris(job, source)
    p = plan(job, profile, source)
    return SubmitRender(command=submit_command(p), conf=submit_conf(p),
                        job_configmap=job_configmap(p, job), driver_template=driver_template(p),
                        executor_template=executor_template(p))


def _role(p: SparkPlan, size: PodSize, cores: int, memory: int, overhead: int,
          template: dict[str, Any]) -> dict[str, Any]:
    return {
        "cores": cores,
        "coreRequest": format_cpu(size.cpu_request_m),
        "coreLimit": format_cpu(size.cpu_limit_m),
        "memory": _mib(memory),
        "memoryOverhead": _mib(overhead),
        "serviceAccount": p.profile.service_account,
        "labels": dict(template["metadata"]["labels"]),
        "nodeSelector": dict(template["spec"]["nodeSelector"]),
        "template": template,
    }


def sparkapplication(job: JobConfig, profile: SparkProfile, source: str | None = None
                     ) -> dict[str, Any]:
    p = plan(job, profile, source)
    d, e, n = profile.driver, profile.executor, profile.executors
    driver = _role(p, p.driver, d.cores, d.memory_bytes, d.overhead_bytes, driver_template(p))
    driver["annotations"] = podspec.stable_placement().annotations()
    executor = _role(p, p.executor, e.cores, e.memory_bytes, e.overhead_bytes,
                     executor_template(p))
    executor["deleteOnTermination"] = True
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": p.name, "namespace": p.namespace,
                     "labels": podspec.labels(p.name, "spark-application")},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": profile.image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": MAIN_FILE,
            "arguments": arguments(),
            "sparkVersion": profile.spark_version,
            "sparkConf": spot_conf(p),
            # a run resumes from its committed units, so retrying the whole app is safe
            "restartPolicy": {"type": "OnFailure", "onFailureRetries": 2,
                              "onFailureRetryInterval": 60, "onSubmissionFailureRetries": 3,
                              "onSubmissionFailureRetryInterval": 30},
            "dynamicAllocation": {"enabled": True, "shuffleTrackingEnabled": True,
                                  "minExecutors": n.min, "maxExecutors": n.max,
                                  "initialExecutors": n.initial if n.initial is not None
                                  else n.min},
            "driver": driver,
            "executor": executor,
        },
    }


def render_operator(job: JobConfig, profile: SparkProfile, source: str | None = None
                    ) -> list[dict[str, Any]]:
    podspec.require_remote_uris(job, source)
    p = plan(job, profile, source)
    return [job_configmap(p, job), sparkapplication(job, profile, source)]
