"""Shard writers and readers, one module per output format.

``writer_for(format)`` gives the class that writes a unit's shard files; ``open_dataset``
reads a committed dataset's documents back through its manifest, for tests and for
users inspecting what a trainer will see.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipelines import storage


def writer_for(output_format: str):
    if output_format == "megatron":
        from pipelines.formats.megatron import MegatronWriter

        return MegatronWriter
    if output_format == "parquet":
        from pipelines.formats.parquet import ParquetShardWriter

        return ParquetShardWriter
    raise ValueError(f"unknown output format {output_format!r}")


def open_shard(output_uri: str, files: list[dict], output_format: str,
               storage_options: storage.StorageOptions | None = None):
    """A reader (``len``, ``[i]``, iteration) for one unit's shard files."""
    first = files[0]["path"]
    if output_format == "megatron":
        from pipelines.formats.megatron import MegatronReader

        return MegatronReader(storage.join(output_uri, first.rsplit(".", 1)[0]), storage_options)
    from pipelines.formats.parquet import ParquetShardReader

    return ParquetShardReader(storage.join(output_uri, first), storage_options)


def iter_documents(output_uri: str,
                   storage_options: storage.StorageOptions | None = None) -> Iterator[np.ndarray]:
    """Every document's tokens of a committed dataset, in manifest order."""
    import json

    manifest = json.loads(storage.read_bytes(storage.join(output_uri, "manifest.json"),
                                             storage_options))
    for shard in manifest["shards"]:
        yield from open_shard(output_uri, shard["files"], manifest["format"], storage_options)
