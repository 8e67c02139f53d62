"""The typed things that flow through the pipeline.

``Plan`` (saved as the plan) holds ``WorkUnit``s made of ``Slice``s of input files,
the ``PlanOptions`` that shape output bytes and the ``TokenizerFacts`` of the tokenizer
file; ``run_unit`` turns one unit into a ``UnitResult`` (saved as its marker); the
commit step turns all results into the ``Manifest``. Where each is saved is
:mod:`pipelines.layout`'s business. Everything here is a frozen dataclass that
round-trips through JSON with sorted keys, so saved files are byte-stable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.storage import StorageOptions

PLAN_VERSION = 1


def dumps(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace variance, UTF-8, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class InputFile:
    """One input object as listed at plan time."""

    uri: str
    #: the name relative to the input's base: shown in messages, used in rejects and ids
    key: str
    size: int
    #: ETag on object stores, mtime (ns) on local disks: changes when the content does
    version: str
    format: str
    compression: str | None


@dataclass(frozen=True)
class Slice:
    """A part of one input file that belongs to a unit.

    For JSONL and text, ``start``/``stop`` are byte offsets: the slice owns every
    line that *starts* in ``[start, stop)``. For Parquet they are row-group indices
    and ``first_row`` is the file row number of the first row of ``start``.
    """

    file: InputFile
    start: int
    stop: int
    first_row: int = 0

    @property
    def whole_file(self) -> bool:
        return self.start == 0 and (self.stop >= self.file.size or self.file.format == "text")


@dataclass(frozen=True)
class WorkUnit:
    index: int
    slices: tuple[Slice, ...]
    input_bytes: int

    @property
    def name(self) -> str:
        return f"{self.index:06d}"

    @classmethod
    def from_dict(cls, d: dict) -> "WorkUnit":
        return cls(
            index=d["index"],
            input_bytes=d["input_bytes"],
            slices=tuple(
                Slice(file=InputFile(**s["file"]), start=s["start"], stop=s["stop"],
                      first_row=s.get("first_row", 0))
                for s in d["slices"]
            ),
        )


@dataclass(frozen=True)
class UnitOptions:
    """Everything ``run_unit`` needs besides the unit: small, picklable, engine-free."""

    fingerprint: str
    output_uri: str
    output_format: str
    storage_options: StorageOptions
    tokenizer_path: str
    tokenizer_sha256: str
    eos: str | None
    bos: str | None
    text_field: str
    id_field: str | None
    batch_documents: int | None
    max_segment_chars: int
    on_error: str
    #: who encodes: "hf" or "fastokens" (resolved by the driver; never "auto")
    backend: str = "hf"
    #: what the job asked for (auto | fastokens | hf): decides what a mismatch does
    requested_backend: str = "hf"
    split_special_tokens: bool = False
    batch_chars: int = 1_000_000


@dataclass(frozen=True)
class ShardFile:
    """One file a unit wrote, relative to the output prefix."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UnitResult:
    """What a finished unit reports; its JSON form is the unit's marker."""

    index: int
    fingerprint: str
    records: int
    documents: int
    tokens: int
    rejected: int
    input_bytes: int
    max_token_id: int
    files: tuple[ShardFile, ...]
    rejects: ShardFile | None = None
    # what this attempt measured; never saved, so markers are the same whoever ran them
    #: set by the driver when the marker was already there
    skipped: bool = field(default=False, compare=False)
    #: the tokenizer backend that encoded the unit
    backend: str = field(default="", compare=False)
    #: wall seconds the unit took in its worker, and those of its identity checks
    seconds: float = field(default=0.0, compare=False)
    check_seconds: float = field(default=0.0, compare=False)
    checked_documents: int = field(default=0, compare=False)

    def to_json(self) -> bytes:
        d = asdict(self)
        for name in _RUN_ONLY:
            d.pop(name)
        return dumps(d)

    @classmethod
    def from_dict(cls, d: dict) -> "UnitResult":
        names = {f.name for f in fields(cls)} - _RUN_ONLY
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown marker fields {sorted(unknown)}")
        return cls(
            **{k: v for k, v in d.items() if k not in ("files", "rejects")},
            files=tuple(ShardFile(**f) for f in d["files"]),
            rejects=ShardFile(**d["rejects"]) if d.get("rejects") else None,
        )


_RUN_ONLY = frozenset(f.name for f in fields(UnitResult) if not f.compare)


class _ByName:
    """Mapping-style reads (``plan.tokenizer["sha256"]``) of a record's fields, for code
    written against the dict the record replaced (the cost estimator)."""

    def __getitem__(self, name: str) -> Any:
        if name not in {f.name for f in fields(self)}:
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class PlanOptions(_ByName):
    """The job options that shape output bytes, and only those: saved in the plan and
    hashed into its fingerprint."""

    input_format: str
    text_field: str
    id_field: str | None
    eos: str | None
    bos: str | None
    max_segment_chars: int
    output_format: str
    #: resolved: a plan never says ``auto``
    target_unit_bytes: int
    #: saved only when true: plans made before the option existed behaved as false, and
    #: their fingerprints must not change
    split_special_tokens: bool = False

    def to_dict(self) -> dict:
        """The saved form (and what the fingerprint hashes)."""
        d = asdict(self)
        if not self.split_special_tokens:
            del d["split_special_tokens"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PlanOptions":
        return cls(**d)


@dataclass(frozen=True)
class TokenizerFacts(_ByName):
    """What a dataset records of its tokenizer file: in the plan, and (``dtype`` apart,
    which the manifest keeps at its top level) in the manifest."""

    #: the file's name, without its folder: paths are not part of a dataset's identity
    name: str
    sha256: str
    vocab_size: int
    #: the token dtype of the shards (``uint16`` below 65,500 entries, else ``int32``)
    dtype: str
    eos: str | None
    eos_id: int | None
    bos: str | None
    bos_id: int | None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerFacts":
        return cls(**d)


@dataclass(frozen=True)
class Plan:
    """The saved plan: inputs, units, fingerprint and output-shaping options."""

    job: str
    fingerprint: str
    options: PlanOptions
    tokenizer: TokenizerFacts
    inputs: tuple[InputFile, ...]
    units: tuple[WorkUnit, ...]
    version: int = PLAN_VERSION

    @property
    def input_bytes(self) -> int:
        return sum(u.input_bytes for u in self.units)

    def to_json(self) -> bytes:
        return dumps({
            "version": self.version,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "options": self.options.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "inputs": [asdict(f) for f in self.inputs],
            "units": [
                {"index": u.index, "input_bytes": u.input_bytes,
                 "slices": [asdict(s) for s in u.slices]}
                for u in self.units
            ],
        })

    @classmethod
    def from_json(cls, raw: bytes) -> "Plan":
        d = json.loads(raw)
        return cls(
            version=d["version"],
            job=d["job"],
            fingerprint=d["fingerprint"],
            options=PlanOptions.from_dict(d["options"]),
            tokenizer=TokenizerFacts.from_dict(d["tokenizer"]),
            inputs=tuple(InputFile(**f) for f in d["inputs"]),
            units=tuple(WorkUnit.from_dict(u) for u in d["units"]),
        )


MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestShard:
    """One unit's shard files, in plan order, with their counts."""

    unit: int
    documents: int
    tokens: int
    files: tuple[ShardFile, ...]


@dataclass(frozen=True)
class ManifestRejects:
    """One unit's rejects file and how many input records it stands for."""

    unit: int
    records: int
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Totals:
    units: int
    records: int
    documents: int
    tokens: int
    rejected: int
    input_bytes: int


@dataclass(frozen=True)
class Reconciliation:
    """Every input record is either tokenized or rejected: records in = documents out +
    rejected."""

    records_in: int
    documents_out: int
    rejected: int
    balanced: bool


@dataclass(frozen=True)
class Manifest:
    """A committed dataset: what training nodes read (``manifest.json``), and nothing else.

    No timestamps, hosts or engine names, so the same job gives the same bytes
    everywhere. In its JSON form the tokenizer's ``dtype`` is a top-level key and
    each rejects entry is flat (its file's path, size and sha256, unit, records).
    """

    job: str
    fingerprint: str
    #: the output format: ``megatron`` or ``parquet``
    format: str
    tokenizer: TokenizerFacts
    max_token_id: int
    shards: tuple[ManifestShard, ...]
    rejects: tuple[ManifestRejects, ...]
    totals: Totals
    reconciliation: Reconciliation
    version: int = MANIFEST_VERSION

    @property
    def dtype(self) -> str:
        return self.tokenizer.dtype

    def to_dict(self) -> dict:
        tokenizer = self.tokenizer.to_dict()
        dtype = tokenizer.pop("dtype")
        return {
            "version": self.version,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "format": self.format,
            "dtype": dtype,
            "tokenizer": tokenizer,
            "max_token_id": self.max_token_id,
            "shards": [asdict(s) for s in self.shards],
            "rejects": [asdict(r) for r in self.rejects],
            "totals": asdict(self.totals),
            "reconciliation": asdict(self.reconciliation),
        }

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        """Raises ``KeyError``, ``TypeError`` or ``ValueError`` for anything that is not a
        manifest of this shape."""
        return cls(
            version=d["version"],
            job=d["job"],
            fingerprint=d["fingerprint"],
            format=d["format"],
            tokenizer=TokenizerFacts.from_dict({**d["tokenizer"], "dtype": d["dtype"]}),
            max_token_id=d["max_token_id"],
            # one pass, no per-field conversion: a manifest may list many thousand shards
            shards=tuple([ManifestShard(s["unit"], s["documents"], s["tokens"],
                                        tuple([ShardFile(**f) for f in s["files"]]))
                          for s in d["shards"]]),
            rejects=tuple(ManifestRejects(**r) for r in d["rejects"]),
            totals=Totals(**d["totals"]),
            reconciliation=Reconciliation(**d["reconciliation"]),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "Manifest":
        import orjson  # a manifest of many shards parses several times faster

        d = orjson.loads(raw)
        if not isinstance(d, dict):
            raise ValueError(f"a JSON {type(d).__name__}, not an object")
        return cls.from_dict(d)
