"""The output layout: one module knows the names under a prefix; the rest asks it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipelines import layout, storage
from pipelines.records import ShardFile, UnitResult

PACKAGE = Path(layout.__file__).parent
NAMES = {layout.PLAN, layout.MANIFEST, layout.BACKEND_SWITCH, layout.MARKERS, layout.SHARDS,
         layout.REJECTS, layout.RUNS, layout.CATALOG, layout.WATERMARK}
#: a name on its own ("shards" is also a manifest key, so bare folder names that are
#: plain words are looked for only as the start of a path)
SPELLED = {n for n in NAMES if "." in n or n.startswith("_")}
FOLDER = re.compile(rf"^({'|'.join(map(re.escape, sorted(NAMES)))})/")
#: the layout itself, and the cost estimator's calibration, which still lists run records
#: by name (layout.read_run_records reads them the same way)
OUTSIDE = ("layout.py", "cost/calibration.py")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _uses_of_layout_names(path: Path, root: Path = PACKAGE) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in skip and (node.value in SPELLED or FOLDER.match(node.value)):
            found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value!r}")
    return found


def test_only_the_layout_module_names_what_is_under_a_prefix():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(OUTSIDE):
            found += _uses_of_layout_names(path)
    assert not found, "ask pipelines.layout instead:\n" + "\n".join(found)


def test_the_scan_finds_a_name_written_out(tmp_path):
    """The check above can fail: a module that spells a name itself is found."""
    module = tmp_path / "pipelines" / "x.py"
    module.parent.mkdir()
    module.write_text('"""Writes manifest.json (a docstring may say so)."""\n'
                      'URI = "s3://b/p/" + "manifest.json"\n'
                      'MARKER = f"_units/{1:06d}.json"\n')
    found = _uses_of_layout_names(module, module.parent)
    assert [f.split(": ", 1)[1] for f in found] == ["'manifest.json'", "'_units/'"]


def test_relative_paths_and_uris():
    assert layout.shard_base(42) == "shards/000042"
    assert layout.shard_paths(42, "megatron") == ("shards/000042.bin", "shards/000042.idx")
    assert layout.shard_paths(7, "parquet") == ("shards/000007.parquet",)
    assert layout.rejects_path(3) == "rejects/000003.jsonl"
    assert layout.marker_uri("s3://b/p/", 5) == "s3://b/p/_units/000005.json"
    assert layout.manifest_uri("/d") == "/d/manifest.json"
    assert layout.run_record_uri("/d", "r1") == "/d/_runs/r1.json"
    assert layout.version_manifest_path("v=2026-11-21") == "v=2026-11-21/manifest.json"
    assert layout.split_manifest_uri("s3://b/p/manifest.json") == "s3://b/p"
    assert layout.split_manifest_uri("manifest.json") == "."
    assert layout.split_manifest_uri("s3://b/p") is None
    # what an input glob must never match: visible names only
    assert "manifest.json" in layout.written_names()
    assert not any(storage.is_hidden(n) for n in layout.written_names())


def _result(index: int, fingerprint: str, size: int) -> UnitResult:
    return UnitResult(index=index, fingerprint=fingerprint, records=1, documents=1, tokens=2,
                      rejected=0, input_bytes=10, max_token_id=5,
                      files=(ShardFile(layout.shard_base(index) + ".bin", size, "0" * 64),))


def test_markers_count_only_when_they_belong_to_the_plan_and_their_files_are_there(tmp_path):
    out = str(tmp_path / "out")
    opts = storage.StorageOptions()
    storage.write_bytes(layout.file_uri(out, layout.shard_base(0) + ".bin"), b"xxxx", opts)
    layout.write_marker(out, _result(0, "fp", 4), opts)
    layout.write_marker(out, _result(1, "fp", 4), opts)  # its shard is missing
    layout.write_marker(out, _result(2, "other", 4), opts)
    storage.write_bytes(layout.file_uri(out, layout.MARKERS + "/notes.txt"), b"", opts)
    storage.write_bytes(layout.marker_uri(out, 3), b"{not json", opts)
    assert layout.marker_indexes(out, opts) == {0, 1, 2, 3}
    assert layout.read_done_marker(out, 0, "fp", opts) == _result(0, "fp", 4)
    assert [layout.read_done_marker(out, i, "fp", opts) for i in (1, 2, 3, 4)] == [None] * 4
    assert layout.read_marker(out, 2, opts).fingerprint == "other"


def test_restart_names_keep_run_records_and_removal_takes_the_manifest_first(tmp_path):
    out = str(tmp_path / "out")
    opts = storage.StorageOptions()
    for name in (layout.PLAN, layout.MANIFEST, layout.marker_path(0), layout.shard_base(0) + ".bin",
                 layout.rejects_path(0), layout.BACKEND_SWITCH, "notes.txt"):
        storage.write_bytes(layout.file_uri(out, name), b"{}", opts)
    layout.write_run_record(out, "r1", {"run_id": "r1"}, opts)
    names = layout.restart_names(out, opts)
    assert set(names) == {layout.PLAN, layout.MANIFEST, layout.marker_path(0),
                          layout.shard_base(0) + ".bin", layout.rejects_path(0),
                          layout.BACKEND_SWITCH}
    layout.remove_run_outputs(out, opts)
    assert storage.list_names(out, opts) == ["_runs/r1.json", "notes.txt"]


def test_run_records_are_read_back_in_the_order_runs_started(tmp_path):
    out = str(tmp_path / "out")
    opts = storage.StorageOptions()
    assert layout.read_run_records(out, opts) == []
    for run_id in ("20261121T000002.000Z-b", "20261121T000001.000Z-a"):
        layout.write_run_record(out, run_id, {"run_id": run_id}, opts)
    storage.write_bytes(layout.run_record_uri(out, "broken"), b"{not json", opts)
    assert [r for r, _ in layout.read_run_records(out, opts)] == [
        "20261121T000001.000Z-a", "20261121T000002.000Z-b"]


def test_the_backend_switch_round_trips(tmp_path):
    out = str(tmp_path / "out")
    opts = storage.StorageOptions()
    assert layout.read_backend_switch(out, opts) is None and not layout.backend_switched(out, opts)
    layout.write_backend_switch(out, "unit 000003 differed", opts)
    assert layout.backend_switched(out, opts)
    assert layout.read_backend_switch(out, opts) == "unit 000003 differed"


def test_a_manifest_that_is_not_one_is_a_dataset_error(tmp_path):
    from pipelines.errors import DatasetError

    opts = storage.StorageOptions()
    assert layout.read_manifest(str(tmp_path), opts) is None
    storage.write_bytes(layout.manifest_uri(str(tmp_path)), b'{"version": 1}', opts)
    with pytest.raises(DatasetError, match="manifest.json is not a tokenyard manifest"):
        layout.read_manifest(str(tmp_path), opts)
