"""Shard formats: the Megatron .idx layout byte for byte, memmap reads, Parquet rows."""

from __future__ import annotations

import struct
from array import array
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.formats.megatron import MegatronReader, MegatronWriter, dtype_for, parse_index
from pipelines.formats.parquet import ParquetShardReader, ParquetShardWriter
from pipelines.storage import StorageOptions

DOCS = [np.array([5, 6, 7], np.uint16), np.array([], np.uint16), np.array([9], np.uint16),
        np.array([1, 2, 3, 4], np.uint16)]


def write_megatron(tmp_path, docs, dtype):
    base = str(tmp_path / "shards" / "000000")
    with MegatronWriter(base, "shards/000000", dtype, StorageOptions()) as w:
        flat = np.concatenate(docs).astype(dtype)
        w.write(flat, np.array([len(d) for d in docs], np.int64), ["x"] * len(docs))
    return base, w.files


def test_idx_header_and_arrays_match_the_layout_byte_for_byte(tmp_path):
    base, files = write_megatron(tmp_path, DOCS, np.uint16)
    idx = Path(base + ".idx").read_bytes()
    lengths = [3, 0, 1, 4]
    expected = (b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8)
                + struct.pack("<Q", 4) + struct.pack("<Q", 5)
                + array("i", lengths).tobytes()
                + np.array([0, 6, 6, 8], "<i8").tobytes()
                + np.arange(5, dtype="<i8").tobytes())
    assert idx == expected
    assert Path(base + ".bin").read_bytes() == np.array([5, 6, 7, 9, 1, 2, 3, 4], "<u2").tobytes()
    assert [f.path for f in files] == ["shards/000000.bin", "shards/000000.idx"]
    assert files[0].size == 16 and files[1].size == len(expected)


def test_numpy_memmap_reads_it_as_megatron_does(tmp_path):
    base, _ = write_megatron(tmp_path, DOCS, np.uint16)
    # what Megatron's IndexedDataset does: header fields, then memmap of the arrays
    raw = np.memmap(base + ".idx", mode="r", dtype=np.uint8)
    n = int(np.frombuffer(raw[18:26], "<u8")[0])
    lengths = np.frombuffer(raw, np.int32, n, 34)
    pointers = np.frombuffer(raw, np.int64, n, 34 + 4 * n)
    tokens = np.memmap(base + ".bin", mode="r", dtype=np.uint16)
    got = [tokens[p // 2:p // 2 + ln].tolist() for p, ln in zip(pointers, lengths)]
    assert got == [d.tolist() for d in DOCS]
    reader = MegatronReader(base)
    assert [reader[i].tolist() for i in range(len(reader))] == [d.tolist() for d in DOCS]


def test_int32_for_large_vocabularies(tmp_path):
    assert dtype_for(65_499) == np.uint16 and dtype_for(65_500) == np.int32
    docs = [np.array([70_000, 1], np.int32), np.array([3], np.int32)]
    base, _ = write_megatron(tmp_path, docs, np.int32)
    index = parse_index(Path(base + ".idx").read_bytes())
    assert index.dtype == np.int32 and index.pointers.tolist() == [0, 8]
    assert MegatronReader(base)[0].tolist() == [70_000, 1]


def test_empty_shard_is_valid(tmp_path):
    base, files = write_megatron(tmp_path, [np.array([], np.uint16)][:0] or
                                 [np.zeros(0, np.uint16)], np.uint16)
    assert len(MegatronReader(base)) == 1


def test_parquet_shard_has_one_row_per_document_with_ids_and_counts(tmp_path):
    base = str(tmp_path / "000000")
    with ParquetShardWriter(base, "shards/000000", np.uint16, StorageOptions()) as w:
        w.write(np.array([5, 6, 7, 9], np.uint16), np.array([3, 1]), ["a", "b"])
        w.write(np.array([1], np.uint16), np.array([1]), ["c"])
    table = pq.read_table(base + ".parquet")
    assert table.column_names == ["input_ids", "num_tokens", "id"]
    assert table.schema.field("input_ids").type.value_type == pa.uint16()
    assert table.column("input_ids").to_pylist() == [[5, 6, 7], [9], [1]]
    assert table.column("num_tokens").to_pylist() == [3, 1, 1]
    reader = ParquetShardReader(base + ".parquet")
    assert reader.ids == ["a", "b", "c"] and reader[2].tolist() == [1]
    assert w.files[0].size == len(Path(base + ".parquet").read_bytes())
