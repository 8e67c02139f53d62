"""Output bytes pinned: two small datasets, every file under their prefixes, against golden files.

Each case writes a fixed corpus (fixed names, bytes and mtimes) and runs a job on it
with the tokenizer in ``tests/golden/tokenizer.json``. The ``_plan.json`` and
``manifest.json`` bytes are compared whole (``tests/golden/<case>/``; the temporary
folder's path in the plan's input URIs is written ``@TMP@``), and every other file
under the prefix (markers, shards, rejects) by sha256 (``files.json``). A change to
any byte a job writes fails here. ``TOKENYARD_UPDATE_GOLDEN=1`` rewrites the files:
only for a change of output that is meant, and reviewed in the diff.

Parquet shards carry the writer's version in their footer, so the Parquet case is
compared only under the pyarrow version its golden files were made with.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipelines.config import parse_job
from pipelines.records import Manifest, Plan
from pipelines.run import run_job
from tests.helpers import local_tree, make_job

GOLDEN = Path(__file__).parent / "golden"
TOKENIZER = GOLDEN / "tokenizer.json"
#: every input's mtime, so that its version (and the fingerprint) is the same each run
MTIME_NS = 1_700_000_000 * 10**9
TMP = "@TMP@"

DOCS = [
    "The tokenizer turns text into ids, and the ids go into shards.",
    "Every unit writes its shard first and its marker second. <|endoftext|> stays text.",
    "Les données sont découpées en unités de travail: ünïcödé, 日本語, emoji 🚀.",
    "",
    "A manifest lists the shards in plan order with their counts and checksums.",
    "Training nodes read the manifest and nothing else; " * 6,
]

CASES = {
    # Megatron, several units (files cut at byte offsets), bad records skipped to rejects/,
    # eos and bos, split_special_tokens true (saved in the plan's options)
    "megatron": {
        "files": {
            "a.jsonl": [json.dumps({"id": f"a{i}", "text": t}, ensure_ascii=False)
                        for i, t in enumerate(DOCS)]
                       + ["{not json", json.dumps({"id": "a-no-text"})]
                       + [json.dumps({"id": f"a{i + 10}", "text": t}) for i, t in
                          enumerate(DOCS[:3])],
            "sub/b.jsonl": [json.dumps({"id": f"b{i}", "text": t.upper()})
                            for i, t in enumerate(DOCS)],
        },
        "job": {"on_error": "skip", "tokenizer.bos": "<s>", "plan.target_unit_bytes": 400,
                "tokenizer.split_special_tokens": True},
    },
    # Parquet, split_special_tokens false: absent from the plan's options, as in plans
    # saved before the option existed
    "parquet": {
        "files": {
            "c.jsonl": [json.dumps({"id": f"c{i}", "text": t}) for i, t in enumerate(DOCS)],
        },
        "job": {"output.format": "parquet", "tokenizer.split_special_tokens": False},
    },
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run_case(tmp_path: Path, case: str) -> dict[str, bytes]:
    spec = CASES[case]
    raw = tmp_path / "raw"
    for name, lines in spec["files"].items():
        path = raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    out = tmp_path / "out"
    job = parse_job(make_job(str(raw), str(TOKENIZER), str(out), **{
        "name": f"golden-{case}", "engine.workers": 1, "tokenizer.backend": "hf",
        "tokenizer.eos": "<|endoftext|>", **spec["job"]}))
    run_job(job)
    return local_tree(out)


def _golden_parquet_pyarrow() -> str | None:
    path = GOLDEN / "parquet" / "pyarrow.txt"
    return path.read_text().strip() if path.exists() else None


def _check(name: str, found: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("TOKENYARD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(found)
    assert path.exists(), f"{path} is missing; run with TOKENYARD_UPDATE_GOLDEN=1 to write it"
    assert found == path.read_bytes(), (
        f"{name} differs from its golden file: output bytes changed. If that is intended, "
        "rerun with TOKENYARD_UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_bytes_match_the_golden_files(tmp_path, case):
    if case == "parquet" and os.environ.get("TOKENYARD_UPDATE_GOLDEN") != "1":
        import pyarrow

        made_with = _golden_parquet_pyarrow()
        if made_with is not None and made_with != pyarrow.__version__:
            pytest.skip(f"the Parquet golden files were made with pyarrow {made_with}, "
                        f"this is {pyarrow.__version__}")
    tree = _run_case(tmp_path, case)
    plan = tree.pop("_plan.json").replace(str(tmp_path).encode(), TMP.encode())
    _check(f"{case}/_plan.json", plan)
    _check(f"{case}/manifest.json", tree.pop("manifest.json"))
    listing = {name: _sha(data) for name, data in sorted(tree.items())}
    _check(f"{case}/files.json", (json.dumps(listing, indent=1, sort_keys=True) + "\n").encode())
    if case == "parquet" and os.environ.get("TOKENYARD_UPDATE_GOLDEN") == "1":
        import pyarrow

        (GOLDEN / "parquet" / "pyarrow.txt").write_text(pyarrow.__version__ + "\n")


@pytest.mark.parametrize("case", sorted(CASES))
def test_saved_plans_load_and_save_to_the_same_bytes(case):
    """A plan saved by this or an earlier version loads, and saves back byte for byte."""
    raw = (GOLDEN / case / "_plan.json").read_bytes()
    plan = Plan.from_json(raw)
    assert plan.to_json() == raw
    assert plan.options.split_special_tokens is (case == "megatron")
    # reads by field name, as the dicts these replaced were read
    assert plan.tokenizer["sha256"] == plan.tokenizer.sha256
    assert plan.options["target_unit_bytes"] == plan.options.target_unit_bytes
    with pytest.raises(KeyError):
        plan.options["engine"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_parse_and_write_back_to_the_same_bytes(case):
    raw = (GOLDEN / case / "manifest.json").read_bytes()
    manifest = Manifest.from_json(raw)
    assert manifest.to_json() == raw
    assert manifest.dtype == "uint16" and manifest.totals.units == len(manifest.shards)
    assert manifest.reconciliation.balanced
