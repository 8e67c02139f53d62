"""The typed job configuration, loaded from a YAML job file at the edge.

A job names its input, tokenizer and output URIs; every other field has a default
documented here. Unknown keys are errors that name the key and the nearest valid one.
Relative local paths in a job file are resolved against the job file's directory, so
a job runs the same from any working directory (an Airflow worker, a pod, a laptop).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines import uris
from pipelines.errors import ConfigError

#: target size of a work unit's input: large files are split to it, small ones coalesced
DEFAULT_TARGET_UNIT_BYTES = 128 * 2**20
#: documents per tokenizer call: the measured sweet spot for throughput and memory
DEFAULT_BATCH_DOCUMENTS = 1000
#: longer documents are encoded in segments cut at pre-tokenizer boundaries
DEFAULT_MAX_SEGMENT_CHARS = 32_768

InputFormat = Literal["auto", "jsonl", "parquet", "text"]
OutputFormat = Literal["megatron", "parquet"]
EngineKind = Literal["local", "dask", "spark"]
OnError = Literal["fail", "skip"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _byte_size(value: Any) -> int:
    if isinstance(value, str):
        try:
            value = parse_bytes(value)
        except ValueError as err:
            raise ValueError(f"{value!r} is not a size (write 134217728, '128MiB' or '1GB')") from err
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive size in bytes")
    return value


class InputConfig(_Section):
    #: a URI, prefix or glob; or a list of them (e.g. the explicit objects of one night)
    uri: str | list[str]
    format: InputFormat = "auto"
    text_field: str = "text"
    id_field: str | None = None

    @field_validator("uri")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("an empty list names no input (give at least one URI)")
        if isinstance(v, str):
            uris.check_location(v, "input.uri", glob=True, placeholders=True)
        else:
            for i, u in enumerate(v):
                uris.check_location(u, f"input.uri[{i}]", glob=True, placeholders=True)
        return v

    @property
    def uris(self) -> tuple[str, ...]:
        """``uri`` as a tuple, whether the job gave one URI or a list."""
        return (self.uri,) if isinstance(self.uri, str) else tuple(self.uri)


class TokenizerConfig(_Section):
    path: str
    eos: str | None = "<|endoftext|>"
    bos: str | None = None
    batch_documents: int = Field(DEFAULT_BATCH_DOCUMENTS, gt=0)
    max_segment_chars: int = Field(DEFAULT_MAX_SEGMENT_CHARS, ge=1024)

    _check_path = field_validator("path")(
        lambda cls, v: uris.check_location(v, "tokenizer.path"))


class OutputConfig(_Section):
    uri: str
    format: OutputFormat = "megatron"

    _check_uri = field_validator("uri")(lambda cls, v: uris.check_location(v, "output.uri"))


class PlanConfig(_Section):
    target_unit_bytes: int = DEFAULT_TARGET_UNIT_BYTES

    _parse_size = field_validator("target_unit_bytes", mode="before")(
        lambda cls, v: _byte_size(v))


class StorageConfig(_Section):
    """Options passed to fsspec. Credentials never go here: they come from the AWS chain."""

    endpoint_url: str | None = None
    region: str | None = None
    anon: bool = False
    profile: str | None = None

    _check_endpoint = field_validator("endpoint_url")(
        lambda cls, v: v if v is None else uris.check_endpoint(v, "storage.endpoint_url"))


class EngineConfig(_Section):
    kind: EngineKind = "dask"
    workers: int | None = Field(None, gt=0)
    #: address of a running Dask scheduler (tcp://host:8786); embedded LocalCluster if unset
    scheduler_address: str | None = None
    #: Spark master URL for engine spark; local[N] (N = workers) if unset
    spark_master: str | None = None
    #: attempts of a unit that failed with a transient error before the run gives up
    max_attempts: int = Field(4, ge=1)
    #: memory limit per embedded Dask worker ("auto" shares the machine's memory)
    memory_per_worker: str = "auto"
    dashboard_address: str = "127.0.0.1:8787"

    _check_scheduler = field_validator("scheduler_address")(
        lambda cls, v: v if v is None else uris.check_scheduler_address(
            v, "engine.scheduler_address"))
    _check_master = field_validator("spark_master")(
        lambda cls, v: v if v is None else uris.check_spark_master(v, "engine.spark_master"))
    _check_dashboard = field_validator("dashboard_address")(
        lambda cls, v: uris.check_host_port(v, "engine.dashboard_address"))

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, v: str) -> str:
        if v != "auto":
            _byte_size(v)
        return v


class JobConfig(_Section):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=63)
    input: InputConfig
    tokenizer: TokenizerConfig
    output: OutputConfig
    plan: PlanConfig = PlanConfig()
    storage: StorageConfig = StorageConfig()
    on_error: OnError = "fail"
    engine: EngineConfig = EngineConfig()

    def with_overrides(self, **changes: Any) -> "JobConfig":
        """A copy with dotted-path overrides applied, e.g. ``{"engine.kind": "local"}``."""
        data = self.model_dump()
        for dotted, value in changes.items():
            if value is None:
                continue
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            node[leaf] = value
        return _validated(data, "overrides")


def _resolve(uri: str, base: Path) -> str:
    if "://" in uri:
        return uri
    path = Path(os.path.expanduser(uri))
    if not path.is_absolute():
        path = base / path
    resolved = os.path.normpath(path)
    return resolved + ("/" if uri.endswith("/") else "")


def _fields_of(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = JobConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(
                field.annotation, BaseModel):
            break
        model = field.annotation
    return model


def _explain(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        dotted = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            valid = _fields_of(model)
            near = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            suggestion = f"did you mean '{'.'.join(loc[:-1] + (near[0],))}'?" if near else ""
            lines.append(f"unknown key '{dotted}' {suggestion} (valid here: {', '.join(valid)})")
        elif e["type"] == "missing":
            lines.append(f"'{dotted}' is required")
        else:
            cause = (e.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigError):  # a location check: field, value and fix
                lines.append(str(cause).rstrip("."))
                continue
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict) else ""
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"'{dotted}': {msg}{shown}")
    return ConfigError("; ".join(lines) + ".", source=source,
                       hint="See 'Job file' in the README for every key and its default.")


def _validated(data: dict, source: str) -> JobConfig:
    try:
        return JobConfig.model_validate(data)
    except ValidationError as err:
        raise _explain(err, source) from None


def parse_job(data: Any, *, source: str = "<job>", base_dir: Path | None = None) -> JobConfig:
    """Validate a job mapping; resolve relative local paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError("a job file must be a YAML mapping of keys to values.", source=source)
    job = _validated(data, source)
    if base_dir is not None:
        job = job.model_copy(update={
            "input": job.input.model_copy(update={"uri": _resolve(job.input.uri, base_dir)
                                                  if isinstance(job.input.uri, str) else
                                                  [_resolve(u, base_dir) for u in job.input.uri]}),
            "tokenizer": job.tokenizer.model_copy(
                update={"path": _resolve(job.tokenizer.path, base_dir)}),
            "output": job.output.model_copy(update={"uri": _resolve(job.output.uri, base_dir)}),
        })
    return job


def load_job(path: str | os.PathLike) -> JobConfig:
    """Read and validate a job file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist.",
                          hint="Give the path of a job YAML file, e.g. jobs/quickstart.yaml.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"job file {path} cannot be read: {err}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML ({getattr(err, 'problem', err)}).",
                          source=str(path)) from None
    return parse_job(data, source=str(path), base_dir=path.resolve().parent)
