"""Storage options: how to reach storage, as one typed value that travels to workers.

A :class:`StorageOptions` is frozen, so it is hashable (a cache key) and picklable (it
travels to Dask and Spark workers inside the unit options). It never holds a
credential: those come from the standard AWS chain, on whichever machine reads.
Everything that touches storage takes it as ``storage_options`` (None: the defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from pipelines.errors import ConfigError


@dataclass(frozen=True)
class StorageOptions:
    """Settings of the storage backend besides credentials (the job's ``storage:``)."""

    #: an S3-compatible endpoint; None: ``AWS_ENDPOINT_URL`` or AWS itself
    endpoint_url: str | None = None
    region: str | None = None
    #: unsigned requests (public buckets)
    anon: bool = False
    #: a profile of the AWS config files
    profile: str | None = None

    @classmethod
    def of(cls, value: "StorageOptions | Mapping | None") -> "StorageOptions":
        """Options from themselves, a mapping with the same keys, or None (the defaults)."""
        if value is None:
            return DEFAULT_STORAGE_OPTIONS
        if isinstance(value, StorageOptions):
            return value
        if isinstance(value, Mapping):
            known = [f.name for f in fields(cls)]
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise ConfigError(
                    f"unknown storage option {unknown[0]!r}; the options are "
                    f"{', '.join(known)}.",
                    hint="Credentials never go here: they come from the AWS chain.")
            return cls(**dict(value))
        raise ConfigError(f"storage options must be StorageOptions or a mapping, not "
                          f"{type(value).__name__}.")


DEFAULT_STORAGE_OPTIONS = StorageOptions()
