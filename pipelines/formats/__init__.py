"""Shard writers and readers, one module per output format.

``writer_for(format)`` gives the class that writes a unit's shard files; ``open_dataset``
reads a committed dataset's documents back through its manifest, for tests and for
users inspecting what a trainer will see.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipelines import layout, storage
from pipelines.records import ShardFile


def writer_for(output_format: str):
    if output_format == "megatron":
        from pipelines.formats.megatron import MegatronWriter

        return MegatronWriter
    if output_format == "parquet":
        from pipelines.formats.parquet import ParquetShardWriter

        return ParquetShardWriter
    raise ValueError(f"unknown output format {output_format!r}")


def open_shard(output_uri: str, files: tuple[ShardFile, ...], output_format: str,
               storage_options: storage.StorageOptions | None = None):
    """A reader (``len``, ``[i]``, iteration) for one unit's shard files."""
    data = next(f for f in files if f.path.endswith(layout.data_suffix(output_format)))
    uri = layout.file_uri(output_uri, data.path)
    if output_format == "megatron":
        from pipelines.formats.megatron import MegatronReader

        return MegatronReader(uri[:-len(layout.data_suffix(output_format))], storage_options)
    from pipelines.formats.parquet import ParquetShardReader

    return ParquetShardReader(uri, storage_options)


def iter_documents(output_uri: str,
                   storage_options: storage.StorageOptions | None = None) -> Iterator[np.ndarray]:
    """Every document's tokens of a committed dataset, in manifest order."""
    manifest = layout.read_manifest(output_uri, storage_options)
    if manifest is None:
        raise storage.StorageNotFoundError(layout.manifest_uri(output_uri), "read",
                                           "it does not exist")
    for shard in manifest.shards:
        yield from open_shard(output_uri, shard.files, manifest.format, storage_options)
