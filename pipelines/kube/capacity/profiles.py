"""Worker profiles: what a Dask or Spark deployment on Kubernetes asks for.

A profile says CPUs and memory, never instance types; the renderers turn them into a
CPU:memory class and requests (see ``sizing``). Profiles live under ``cluster_specs/dask/``
and ``cluster_specs/spark/``::

    apiVersion: tokenyard.io/v1alpha1
    kind: DaskProfile
    name: general-1cpu
    image: registry.example.com/tokenyard:0.1.0
    serviceAccount: tokenyard-pipeline
    scheduler: {cpus: 1, memory: 4Gi}
    worker: {cpus: 1, memory: 4Gi}   # always 1 CPU: one single-threaded process per core
    workers: {min: 8, max: 160}      # adaptive; or {count: 80}

A Dask worker has exactly one CPU (``pipelines.kube.render.dask.check_worker_cpus`` refuses
more): Dask scales with the number of workers. Spark executors may have several cores
(one Python worker process per task slot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import ConfigError
from pipelines.kube.capacity.quantity import MIB, parse_memory, parse_spark_memory

API_VERSION = "tokenyard.io/v1alpha1"
#: a DNS-1123 label, as Kubernetes object and service names need
_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: Spark's minimum memory overhead per JVM pod
SPARK_MIN_OVERHEAD_BYTES = 384 * MIB


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PodResources(_Model):
    cpus: int = Field(gt=0)
    memory: str

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory, what="memory")


class WorkerCount(_Model):
    """A fixed ``count`` of workers, or adaptive bounds ``min``..``max``."""

    count: int | None = Field(None, ge=1)
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_form(self) -> "WorkerCount":
        if self.count is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either count, or min and max, not both")
        if self.count is None and (self.min is None or self.max is None):
            raise ValueError("give count, or both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @property
    def adaptive(self) -> bool:
        return self.count is None

    @property
    def initial(self) -> int:
        return self.count if self.count is not None else max(self.min or 0, 1)


class _Profile(_Model):
    api_version: Literal["tokenyard.io/v1alpha1"] = Field(alias="apiVersion")
    name: str = Field(pattern=_NAME, max_length=40)
    image: str = Field(min_length=1)
    namespace: str = Field("tokenyard", pattern=_NAME)
    service_account: str = Field("tokenyard-pipeline", alias="serviceAccount", pattern=_NAME)


class DaskProfile(_Profile):
    kind: Literal["DaskProfile"]
    scheduler: PodResources = PodResources(cpus=1, memory="4Gi")
    worker: PodResources
    workers: WorkerCount
    #: the job-runner pod of a DaskJob (``render dask --job``)
    runner: PodResources = PodResources(cpus=1, memory="2Gi")


class SparkDriver(_Model):
    cores: int = Field(1, gt=0)
    memory: str = "2g"
    memory_overhead_factor: float = Field(0.1, alias="memoryOverheadFactor", ge=0, le=1)

    @property
    def memory_bytes(self) -> int:
        return parse_spark_memory(self.memory, what="driver.memory")

    @property
    def overhead_bytes(self) -> int:
        return max(int(self.memory_bytes * self.memory_overhead_factor), SPARK_MIN_OVERHEAD_BYTES)

    @property
    def pod_memory_bytes(self) -> int:
        return self.memory_bytes + self.overhead_bytes


class SparkExecutor(_Model):
    cores: int = Field(gt=0)
    #: the JVM heap (``spark.executor.memory``)
    memory: str
    #: ``spark.executor.memoryOverhead``; computed from the factor when not given
    memory_overhead: str | None = Field(None, alias="memoryOverhead")
    memory_overhead_factor: float = Field(0.1, alias="memoryOverheadFactor", ge=0, le=1)
    #: ``spark.executor.pyspark.memory``: the Python workers, where tokenization runs
    pyspark_memory: str = Field("0", alias="pysparkMemory")

    @property
    def memory_bytes(self) -> int:
        return parse_spark_memory(self.memory, what="executor.memory")

    @property
    def overhead_bytes(self) -> int:
        if self.memory_overhead is not None:
            return parse_spark_memory(self.memory_overhead, what="executor.memoryOverhead")
        return max(int(self.memory_bytes * self.memory_overhead_factor), SPARK_MIN_OVERHEAD_BYTES)

    @property
    def pyspark_bytes(self) -> int:
        return parse_spark_memory(self.pyspark_memory, what="executor.pysparkMemory")

    @property
    def pod_memory_bytes(self) -> int:
        """What Kubernetes is asked for: heap + overhead + PySpark memory."""
        return self.memory_bytes + self.overhead_bytes + self.pyspark_bytes


class ExecutorCount(_Model):
    min: int = Field(0, ge=0)
    max: int = Field(ge=1)
    initial: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "ExecutorCount":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) is outside min..max")
        return self


class SparkProfile(_Profile):
    kind: Literal["SparkProfile"]
    spark_version: str = Field(alias="sparkVersion")
    driver: SparkDriver = SparkDriver()
    executor: SparkExecutor
    executors: ExecutorCount


Profile = DaskProfile | SparkProfile
_KINDS: dict[str, type[_Profile]] = {"DaskProfile": DaskProfile, "SparkProfile": SparkProfile}


def is_profile(document: Any) -> bool:
    return isinstance(document, dict) and document.get("apiVersion") == API_VERSION


def parse_profile(data: Any, *, source: str = "<profile>") -> Profile:
    if not isinstance(data, dict):
        raise ConfigError("a profile must be a YAML mapping.", source=source)
    model = _KINDS.get(str(data.get("kind")))
    if model is None:
        raise ConfigError(f"kind {data.get('kind')!r} is not a profile kind; expected one of "
                          f"{', '.join(_KINDS)}.", source=source)
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            problems.append(f"'{where}': {e['msg']}")
        raise ConfigError("; ".join(problems) + ".", source=source,
                          hint="See cluster_specs/README.md for every profile key.") from None


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"profile {path} does not exist.",
                          hint="Profiles are under cluster_specs/dask/ and cluster_specs/spark/.") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"profile {path} cannot be read: {err}.") from None
    return parse_profile(data, source=str(path))


def load_dask_profile(path: str | Path) -> DaskProfile:
    profile = load_profile(path)
    if not isinstance(profile, DaskProfile):
        raise ConfigError(f"{path} is a {profile.kind}; give a DaskProfile "
                          "(cluster_specs/dask/...).")
    return profile


def load_spark_profile(path: str | Path) -> SparkProfile:
    profile = load_profile(path)
    if not isinstance(profile, SparkProfile):
        raise ConfigError(f"{path} is a {profile.kind}; give a SparkProfile "
                          "(cluster_specs/spark/...).")
    return profile
