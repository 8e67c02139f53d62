"""Planning: every JSONL line read exactly once whatever the cuts; coalescing; Parquet."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import parse_job
from pipelines.plan import cut_units, list_inputs
from pipelines.read import UnitReader
from pipelines.records import UnitOptions
from pipelines.storage import StorageOptions
from tests.helpers import write_jsonl


def options(**kw) -> UnitOptions:
    base = dict(fingerprint="f", output_uri="o", output_format="megatron",
                storage_options=StorageOptions(),
                tokenizer_path="t", tokenizer_sha256="s", eos=None, bos=None,
                text_field="text", id_field="id", batch_documents=7,
                max_segment_chars=4096, on_error="fail")
    base.update(kw)
    return UnitOptions(**base)


def plan_units(tmp_path, target):
    job = parse_job({"name": "j", "input": {"uri": str(tmp_path / "raw")},
                     "tokenizer": {"path": "t"}, "output": {"uri": "o"}})
    return cut_units(list(list_inputs(job, StorageOptions())), target, StorageOptions())


def read_all(units, opts=None):
    out = []
    for u in units:
        reader = UnitReader(opts or options(), lambda r: None)
        for batch in reader.batches(u.slices):
            out += batch.texts
    return out


@pytest.mark.parametrize("target", [37, 100, 1000, 4096, 10**9])
def test_jsonl_cut_anywhere_reads_each_line_once(tmp_path, target):
    texts = [("x" * (i % 50)) + f" line {i} é" for i in range(300)]
    write_jsonl(tmp_path / "raw" / "a.jsonl", [{"text": t} for t in texts])
    units = plan_units(tmp_path, target)
    assert read_all(units) == texts
    if target < 1000:
        assert len(units) > 5


def test_small_files_coalesce_and_compressed_files_stand_alone(tmp_path):
    for name in ("a", "b", "c"):
        write_jsonl(tmp_path / "raw" / f"{name}.jsonl", [{"text": name}] * 10)
    import gzip

    (tmp_path / "raw" / "d.jsonl.gz").write_bytes(gzip.compress(b'{"text": "d"}\n'))
    units = plan_units(tmp_path, 10_000)
    assert [[s.file.key for s in u.slices] for u in units] == [["a.jsonl", "b.jsonl", "c.jsonl"],
                                                             ["d.jsonl.gz"]]


def test_parquet_splits_at_row_groups_with_absolute_rows(tmp_path):
    path = tmp_path / "raw" / "p.parquet"
    path.parent.mkdir()
    texts = [f"row {i} " + "y" * 200 for i in range(100)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=10)
    units = plan_units(tmp_path, 3000)
    assert len(units) > 2 and all(len(u.slices) == 1 for u in units)
    assert read_all(units, options(id_field=None)) == texts
    assert units[1].slices[0].first_row == units[0].slices[0].stop * 10


def test_line_numbers_of_later_slices_are_exact(tmp_path):
    lines = [json.dumps({"text": f"t{i}"}) for i in range(100)]
    lines[77] = "{broken"
    write_jsonl(tmp_path / "raw" / "a.jsonl", lines)
    rejects = []
    for u in plan_units(tmp_path, 200):
        reader = UnitReader(options(on_error="skip"), rejects.append)
        for _ in reader.batches(u.slices):
            pass
    assert [(r.source, r.line) for r in rejects] == [("a.jsonl", 78)]
