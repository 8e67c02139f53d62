"""Offline validation of every manifest and job file tokenyard ships or renders.

* core kinds (ConfigMap, Pod, ServiceAccount, ...) with ``kubernetes-validate``, strict;
* custom resources (NodePool, EC2NodeClass, DaskCluster, DaskJob, DaskAutoscaler,
  SparkApplication) against the ``openAPIV3Schema`` of their CRDs with ``jsonschema``,
  the pod specs inside them as Pods with ``kubernetes-validate``, and the CEL rules that
  matter checked by hand (``karpenter_rules``);
* eksctl ``ClusterConfig`` against eksctl's JSON schema;
* tokenyard job files with ``pipelines.config.parse_job``, worker profiles with
  ``profiles.parse_profile`` and the sizing rules;
* every rendered pod against Pod Security "restricted" (``podsecurity``).

The upstream schemas are read from a folder laid out like ``../shared/schemas``
(``crds/*.yaml``, ``eksctl/*.schema.json``). A problem names the file, the object, the
field path and the rule.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from pipelines.errors import ConfigError, TokenyardError
from pipelines.kube.checks import karpenter_rules, podsecurity

#: the Kubernetes version core kinds are checked against (the eksctl cluster's)
KUBERNETES_VERSION = "1.34"
SCHEMA_DIR_ENV = "TOKENYARD_SCHEMA_DIR"
INSTALL_HINT = "Install the extra: pip install 'tokenyard[kubernetes]'."
_NAME_OK = __import__("re").compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Problem:
    source: str
    obj: str
    path: str
    rule: str

    def __str__(self) -> str:
        where = f"{self.obj}: " if self.obj else ""
        at = f"{self.path}: " if self.path else ""
        return f"{self.source}: {where}{at}{self.rule}"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"offline validation needs the {module} package. {INSTALL_HINT}") from None


def find_schema_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--schema-dir``, else ``$TOKENYARD_SCHEMA_DIR``, else ``../shared/schemas`` next to
    the working directory or the repository."""
    chosen = explicit or os.environ.get(SCHEMA_DIR_ENV)
    if chosen:
        path = Path(chosen)
        if not (path / "crds").is_dir():
            raise ConfigError(f"schema folder {path} has no crds/ folder.",
                              hint="Point --schema-dir or TOKENYARD_SCHEMA_DIR at a folder "
                                   "laid out like ../shared/schemas.")
        return path
    repo = Path(__file__).resolve().parents[3]
    for base in (Path.cwd(), repo):
        candidate = base.parent / "shared" / "schemas"
        if (candidate / "crds").is_dir():
            return candidate
    raise ConfigError("the upstream schemas were not found (looked for ../shared/schemas).",
                      hint="Pass --schema-dir DIR or set TOKENYARD_SCHEMA_DIR.")


@dataclass(frozen=True)
class Schemas:
    #: (apiVersion, kind) -> openAPIV3Schema of the CRD's storage version
    crds: dict[tuple[str, str], dict[str, Any]]
    eksctl: dict[str, Any] | None


@functools.cache
def load_schemas(schema_dir: Path) -> Schemas:
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((schema_dir / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                crds[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    eksctl_files = sorted((schema_dir / "eksctl").glob("*.json")) if (schema_dir / "eksctl").is_dir() else []
    eksctl = json.loads(eksctl_files[0].read_text(encoding="utf-8")) if eksctl_files else None
    return Schemas(crds=crds, eksctl=eksctl)


def _label(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name") or obj.get("name") or "?"
    return f"{obj.get('kind', '?')}/{name}"


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _jsonschema_problems(obj: Any, schema: dict[str, Any], source: str, label: str,
                         prefix: str = "") -> Iterator[Problem]:
    jsonschema = _require("jsonschema")
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = _path([*([prefix] if prefix else []), *err.absolute_path])
        yield Problem(source, label, path, f"schema: {err.message}")


def _core_problems(obj: dict[str, Any], source: str, label: str, prefix: str = "") -> Iterator[Problem]:
    kv = _require("kubernetes_validate")
    try:
        kv.validate(obj, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as err:
        inner = list(err.path)
        if prefix and inner[:1] == ["spec"]:
            inner = inner[1:]  # the pod wrapped around an embedded spec
        path = _path([*([prefix] if prefix else []), *inner])
        yield Problem(source, label, path, f"kubernetes {err.version} schema: {err.message}")
    except kv.SchemaNotFoundError:
        yield Problem(source, label, "", f"no schema for {obj.get('apiVersion')} "
                                         f"{obj.get('kind')} in Kubernetes {KUBERNETES_VERSION}")


def _as_pod(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "embedded", **(metadata or {})}, "spec": spec}


def embedded_pod_specs(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(path, pod spec)`` of the pods a custom resource describes."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    found: list[tuple[str, Any]] = []
    if kind == "DaskCluster":
        found = [("spec.scheduler.spec", (spec.get("scheduler") or {}).get("spec")),
                 ("spec.worker.spec", (spec.get("worker") or {}).get("spec"))]
    elif kind == "DaskJob":
        cluster = (spec.get("cluster") or {}).get("spec") or {}
        found = [("spec.job.spec", (spec.get("job") or {}).get("spec")),
                 ("spec.cluster.spec.scheduler.spec", (cluster.get("scheduler") or {}).get("spec")),
                 ("spec.cluster.spec.worker.spec", (cluster.get("worker") or {}).get("spec"))]
    elif kind == "SparkApplication":
        for role in ("driver", "executor"):
            template = (spec.get(role) or {}).get("template")
            if isinstance(template, dict):
                found.append((f"spec.{role}.template.spec", template.get("spec")))
    elif kind == "Pod":
        found = [("spec", spec)]
    return [(p, s) for p, s in found if isinstance(s, dict)]


def object_problems(obj: Any, source: str, schemas: Schemas, *, pod_security: bool = True
                    ) -> list[Problem]:
    """Every problem of one document (a manifest, a profile, or a job file)."""
    from pipelines.kube.capacity.profiles import is_profile

    if not isinstance(obj, dict):
        return [Problem(source, "", "", "a document must be a mapping")]
    label = _label(obj)
    api, kind = obj.get("apiVersion"), obj.get("kind")
    if is_profile(obj):
        return list(_profile_problems(obj, source, label))
    if not api or not kind:
        return [Problem(source, label, "", "neither a Kubernetes object (apiVersion and kind "
                                           "are required) nor a tokenyard job (input, "
                                           "tokenizer, output)")]
    problems: list[Problem] = []
    if str(api).startswith("eksctl.io/"):
        if schemas.eksctl is None:
            return [Problem(source, label, "", "no eksctl schema in the schema folder")]
        return list(_jsonschema_problems(obj, schemas.eksctl, source, label))
    schema = schemas.crds.get((api, kind))
    if schema is not None:
        problems += _jsonschema_problems(obj, schema, source, label)
        name = (obj.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not _NAME_OK.match(name) or len(name) > 253:
            problems.append(Problem(source, label, "metadata.name",
                                    "a name of lowercase letters, digits, '-' and '.' is required"))
        checks = {"NodePool": karpenter_rules.nodepool_findings,
                  "EC2NodeClass": karpenter_rules.ec2nodeclass_findings}.get(kind)
        if checks:
            problems += [Problem(source, label, p, r) for p, r in checks(obj)]
        for path, pod in embedded_pod_specs(obj):
            problems += _core_problems(_as_pod(pod), source, label, path)
    else:
        problems += _core_problems(obj, source, label)
    if pod_security:
        for path, pod in embedded_pod_specs(obj):
            problems += [Problem(source, label, p, r)
                         for p, r in podsecurity.restricted_findings(pod, path)]
    return problems


def _profile_problems(obj: dict[str, Any], source: str, label: str) -> Iterator[Problem]:
    from pipelines.kube.capacity.profiles import DaskProfile, parse_profile
    from pipelines.kube.render import dask, spark

    try:
        profile = parse_profile(obj, source=source)
        sample = sample_job()
        if isinstance(profile, DaskProfile):
            dask.plan(sample, profile)
        else:
            spark.plan(sample, profile)
    except TokenyardError as err:
        message = str(err)
        if message.startswith(f"{source}: "):
            message = message[len(source) + 2:]
        yield Problem(source, label, "", message)


def sample_job():
    """A job with remote URIs, used to render every profile during validation."""
    from pipelines.config import parse_job

    return parse_job({"name": "validate-sample",
                      "input": {"uri": "s3://raw-bucket/sample/*.jsonl"},
                      "tokenizer": {"path": "s3://models/sample/tokenizer.json"},
                      "output": {"uri": "s3://tokenized-bucket/sample/"}})


#: the sections every tokenyard job file has (and no Kubernetes object has at its top)
JOB_SECTIONS = frozenset({"input", "tokenizer", "output"})


def is_job(doc: Any) -> bool:
    """A tokenyard job, told by its content wherever the file is: a mapping without
    ``apiVersion`` or ``kind`` that has a job's sections."""
    return (isinstance(doc, dict) and "apiVersion" not in doc and "kind" not in doc
            and bool(JOB_SECTIONS & set(doc)))


def file_problems(path: Path, schemas: Schemas) -> list[Problem]:
    from pipelines.config import parse_job

    source = str(path)
    if path.suffix == ".json":
        return list(_json_problems(path))
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, UnicodeDecodeError) as err:
        return [Problem(source, "", "", f"cannot be read: {err}")]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        return [Problem(source, "", where, f"not valid YAML: {getattr(err, 'problem', err)}")]
    problems: list[Problem] = []
    for doc in docs:
        if is_job(doc):
            try:
                parse_job(doc, source=source, base_dir=path.resolve().parent)
            except TokenyardError as err:
                problems.append(Problem(source, f"job/{doc.get('name', '?')}", "",
                                        str(err).removeprefix(f"{source}: ")))
            continue
        problems += object_problems(doc, source, schemas)
    return problems


def _json_problems(path: Path) -> Iterator[Problem]:
    """IAM policy documents: well formed, and no wildcard actions or resources."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        yield Problem(str(path), "", "", f"not valid JSON: {err}")
        return
    if not isinstance(doc, dict) or "Statement" not in doc:
        return
    for i, statement in enumerate(doc["Statement"]):
        for key in ("Action", "Resource"):
            values = statement.get(key, [])
            values = [values] if isinstance(values, str) else values
            if any(v == "*" or v.endswith(":*") for v in values):
                yield Problem(str(path), f"Statement/{statement.get('Sid', i)}", f"Statement[{i}].{key}",
                              f"tokenyard rule: least privilege, no wildcard {key.lower()}")


def default_paths(root: Path) -> list[Path]:
    """Every YAML under nodepools/, cluster_specs/ and jobs/ (not jobs/airflow/), and the
    JSON policies under cluster_specs/."""
    out: list[Path] = []
    for folder in ("nodepools", "cluster_specs", "jobs"):
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "airflow" in path.relative_to(root).parts:
                continue
            if path.suffix in (".yaml", ".yml") or (folder == "cluster_specs" and path.suffix == ".json"):
                out.append(path)
    return out


def rendered_objects(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(label, object)`` of everything the renderers produce for the shipped profiles."""
    from pipelines.kube.capacity.pools import all_pools
    from pipelines.kube.capacity.profiles import DaskProfile, load_profile
    from pipelines.kube.render import dask, nodepools, spark

    job = sample_job()
    out: list[tuple[str, dict[str, Any]]] = []
    for obj in [*nodepools.node_class_objects(), *map(nodepools.nodepool_object, all_pools())]:
        out.append(("rendered nodepools", obj))
    for path in sorted((root / "cluster_specs").glob("*/*.yaml")):
        try:
            profile = load_profile(path)
        except TokenyardError:
            continue  # reported by the file check
        what = f"rendered from {path.relative_to(root)}"
        try:
            if isinstance(profile, DaskProfile):
                objects = dask.render(job, profile) + dask.render(job, profile, as_job=True)
            else:
                submit = spark.render_submit(job, profile)
                objects = submit.objects() + spark.render_operator(job, profile)
        except TokenyardError:
            continue  # reported by the file check
        out += [(what, o) for o in objects]
    return out


def validate(paths: list[Path] | None, *, root: Path, schema_dir: Path | None = None
             ) -> tuple[list[Problem], int]:
    """Problems in ``paths`` (or, with none, everything shipped and rendered), and how
    many objects or files were checked."""
    schemas = load_schemas(find_schema_dir(schema_dir))
    problems: list[Problem] = []
    checked = 0
    files = paths if paths else default_paths(root)
    for path in files:
        if not path.exists():
            problems.append(Problem(str(path), "", "", "no such file"))
            continue
        problems += file_problems(path, schemas)
        checked += 1
    if not paths:
        for label, obj in rendered_objects(root):
            problems += object_problems(obj, label, schemas)
            checked += 1
    return problems, checked
