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
from pydantic import BaseModel, ByteSize, ConfigDict, Field, TypeAdapter, ValidationError, \
    field_validator

from pipelines import uris
from pipelines.defaults import DEFAULT_BATCH_CHARS, DEFAULT_MAX_SEGMENT_CHARS
from pipelines.errors import ConfigError

#: bounds of the automatic work-unit size (``plan.target_unit_bytes: auto``): the input
#: divided by ``AUTO_UNITS``, so that small inputs give every worker several units and
#: large ones give shards big enough for training readers
AUTO_UNIT_MIN_BYTES = 8 * 2**20
AUTO_UNIT_MAX_BYTES = 256 * 2**20
AUTO_UNITS = 128

InputFormat = Literal["auto", "jsonl", "parquet", "text"]
OutputFormat = Literal["megatron", "parquet"]
EngineKind = Literal["local", "dask", "spark"]
BackendChoice = Literal["auto", "fastokens", "hf"]
OnError = Literal["fail", "skip"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_BYTE_SIZE = TypeAdapter(ByteSize)


def parse_byte_size(value: Any) -> int:
    """A size in bytes from an int or a string such as ``'128MiB'``, ``'1GB'``, ``'64 KiB'``."""
    if isinstance(value, str):
        try:
            value = int(_BYTE_SIZE.validate_python(value.strip()))
        except ValidationError:
            raise ValueError(f"{value!r} is not a size (write 134217728, '128MiB' or "
                             "'1GB')") from None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive size in bytes")
    return value


def auto_unit_bytes(input_bytes: int) -> int:
    """The work-unit size ``plan.target_unit_bytes: auto`` gives an input of this size.

    ``input_bytes / AUTO_UNITS`` within ``[AUTO_UNIT_MIN_BYTES, AUTO_UNIT_MAX_BYTES]``,
    rounded up to a MiB: 96 MiB of input gives 8 MiB units (12 or more units, enough for
    every core of a laptop or a large node), 1 TiB gives 256 MiB units (4,096 shards of
    about 60 M tokens each). It depends on the input only, never on workers.
    """
    wanted = -(-input_bytes // AUTO_UNITS)
    wanted = -(-wanted // 2**20) * 2**20
    return max(AUTO_UNIT_MIN_BYTES, min(AUTO_UNIT_MAX_BYTES, wanted))


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
    #: who encodes: ``hf`` (the reference), ``fastokens`` (fails if it cannot), or
    #: ``auto``: fastokens where it loads the file and passes the identity checks
    backend: BackendChoice = "auto"
    #: special-token strings inside document text (``<|endoftext|>``, ``<s>``) are
    #: tokenized as ordinary text; false turns them into control tokens (the behaviour
    #: of the tokenizers library's defaults). Changes output bytes.
    split_special_tokens: bool = True
    #: characters of text per tokenizer call
    batch_chars: int = Field(DEFAULT_BATCH_CHARS, gt=0)
    #: an optional cap on documents per tokenizer call
    batch_documents: int | None = Field(None, gt=0)
    max_segment_chars: int = Field(DEFAULT_MAX_SEGMENT_CHARS, ge=1024)

    _check_path = field_validator("path")(
        lambda cls, v: uris.check_location(v, "tokenizer.path"))


class OutputConfig(_Section):
    uri: str
    format: OutputFormat = "megatron"

    _check_uri = field_validator("uri")(lambda cls, v: uris.check_location(v, "output.uri"))


class PlanConfig(_Section):
    #: a size ('64MiB') or ``auto``: see :func:`auto_unit_bytes`
    target_unit_bytes: int | Literal["auto"] = "auto"

    @field_validator("target_unit_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> int | str:
        return value if value == "auto" else parse_byte_size(value)


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
            parse_byte_size(v)
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
