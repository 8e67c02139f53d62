"""The whole data path on real components: S3 on loopback, a real process pool and Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from pipelines.config import parse_job
from pipelines.errors import PlanMismatchError
from pipelines.formats import iter_documents
from pipelines.run import run_job
from pipelines.testing.corpus import documents, write_jsonl
from tests.helpers import REPO, local_tree, make_job


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Three JSONL files (one large enough to be split, one gzip, one zstd)."""
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", 300_000, seed=1, id_prefix="a")
    write_jsonl(raw / "b.jsonl.gz", 60_000, seed=2, id_prefix="b")
    write_jsonl(raw / "c.jsonl.zst", 60_000, seed=3, id_prefix="c")
    write_jsonl(raw / "small" / "d.jsonl", 20_000, seed=4, id_prefix="d")
    write_jsonl(raw / "small" / "e.jsonl", 20_000, seed=5, id_prefix="e")
    return raw


def source_texts(raw: Path) -> list[str]:
    """Every text in the corpus, in plan order (files sorted by key, lines in order)."""
    import gzip

    import zstandard

    texts = []
    for path in sorted(p for p in raw.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        elif path.suffix == ".zst":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        texts += [json.loads(line)["text"] for line in data.decode().splitlines() if line]
    return texts


def upload(s3, raw: Path, prefix: str) -> None:
    for path in raw.rglob("*"):
        if path.is_file():
            s3.put(f"{prefix}/{path.relative_to(raw)}", path.read_bytes())


@pytest.mark.parametrize("fmt", ["megatron", "parquet"])
def test_round_trip_s3_to_s3_decodes_to_the_source_text(s3, corpus, tokenizer_bytes, fmt):
    s3.bucket("raw")
    s3.bucket("models")
    s3.bucket("tok")
    upload(s3, corpus, "raw/books")
    s3.put("models/tok/tokenizer.json", tokenizer_bytes)
    job = parse_job(make_job("s3://raw/books/**/*.jsonl*", "s3://models/tok/tokenizer.json",
                             "s3://tok/books/v1/", **{"output.format": fmt}))
    summary = run_job(job)

    texts = source_texts(corpus)
    assert summary.documents == len(texts) and summary.rejected == 0
    manifest = json.loads(s3.fs.cat_file("tok/books/v1/manifest.json"))
    assert manifest["format"] == fmt
    assert manifest["reconciliation"] == {"balanced": True, "documents_out": len(texts),
                                          "records_in": len(texts), "rejected": 0}
    tok = Tokenizer.from_str(tokenizer_bytes.decode())
    eos = tok.token_to_id("<|endoftext|>")
    decoded = []
    for ids in iter_documents("s3://tok/books/v1"):
        assert ids[-1] == eos
        decoded.append(tok.decode(ids[:-1].tolist(), skip_special_tokens=False))
    assert decoded == texts
    assert sum(s["tokens"] for s in manifest["shards"]) == manifest["totals"]["tokens"]


def test_engines_and_worker_counts_give_identical_bytes(tmp_path, corpus, tokenizer_file):
    trees = {}
    for label, engine, workers in [("local-2", "local", 2), ("dask-1", "dask", 1),
                                   ("dask-2", "dask", 2)]:
        out = tmp_path / f"out-{label}"
        job = parse_job(make_job(str(corpus), str(tokenizer_file), str(out),
                                 **{"engine.kind": engine, "engine.workers": workers}))
        run_job(job)
        trees[label] = local_tree(out)
    assert len(trees["local-2"]) > 10
    assert trees["local-2"] == trees["dask-1"] == trees["dask-2"]


def test_local_and_s3_runs_give_identical_shards(s3, tmp_path, corpus, tokenizer_file):
    s3.bucket("raw")
    s3.bucket("out")
    upload(s3, corpus, "raw/x")
    run_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(tmp_path / "out"))))
    run_job(parse_job(make_job("s3://raw/x/", str(tokenizer_file), "s3://out/x")))
    local = local_tree(tmp_path / "out")
    remote = {k: v for k, v in s3.listing("s3://out/x").items() if not k.startswith("_runs")}
    assert sorted(local) == sorted(remote)
    for name in local:
        if name.startswith("shards/") or name.startswith("rejects/"):
            assert local[name] == remote[name], name
    # the manifests differ only in the fingerprint (mtime on disk, ETag on S3)
    lm, rm = json.loads(local["manifest.json"]), json.loads(remote["manifest.json"])
    lm.pop("fingerprint"), rm.pop("fingerprint")
    assert lm == rm


def test_rerun_of_a_committed_dataset_is_a_no_op(tmp_path, corpus, tokenizer_file):
    job = parse_job(make_job(str(corpus), str(tokenizer_file), str(tmp_path / "out")))
    first = run_job(job)
    before = local_tree(tmp_path / "out")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}
    again = run_job(job)
    assert again.already_committed and again.units_run == 0
    assert again.documents == first.documents
    assert local_tree(tmp_path / "out") == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}


def test_a_different_tokenizer_or_option_on_the_same_prefix_is_refused(
        tmp_path, corpus, tokenizer_file):
    from pipelines.testing.corpus import tiny_tokenizer_json

    out = tmp_path / "out"
    run_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(out))))
    other = tmp_path / "other.json"
    other.write_bytes(tiny_tokenizer_json(300))
    with pytest.raises(PlanMismatchError) as err:
        run_job(parse_job(make_job(str(corpus), str(other), str(out))))
    assert "tokenizer differs" in str(err.value) and "--restart" in str(err.value)
    with pytest.raises(PlanMismatchError) as err:
        run_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(out),
                                   **{"output.format": "parquet"})))
    assert "output_format" in str(err.value)
    # told to start over, it does
    summary = run_job(parse_job(make_job(str(corpus), str(other), str(out))), restart=True)
    assert not summary.already_committed and summary.units_run == summary.units


def _write_job_file(tmp_path: Path, job: dict) -> Path:
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path, corpus, tokenizer_file):
    clean = tmp_path / "clean"
    run_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(clean),
                               **{"engine.workers": 1})))
    out = tmp_path / "out"
    # the hf backend: units slow enough for the kill to land mid-run
    job_file = _write_job_file(tmp_path, make_job(str(corpus), str(tokenizer_file), str(out),
                                                  **{"engine.workers": 1,
                                                     "tokenizer.backend": "hf"}))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(job_file)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    units = out / "_units"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if units.is_dir() and len(list(units.glob("0*.json"))) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(units.glob("0*.json")))
    assert not (out / "manifest.json").exists()
    total = len(json.loads((out / "_plan.json").read_bytes())["units"])
    assert done_before < total
    summary = run_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(out),
                                         **{"engine.workers": 1})))
    assert summary.units_skipped >= done_before
    assert local_tree(out) == local_tree(clean)


def test_unit_count_and_boundaries_do_not_depend_on_workers(tmp_path, corpus, tokenizer_file):
    from pipelines.run import plan_job

    plans = [plan_job(parse_job(make_job(str(corpus), str(tokenizer_file), str(tmp_path / "o"),
                                         **{"engine.workers": w}))) for w in (1, 2, 7)]
    assert plans[0].to_json() == plans[1].to_json() == plans[2].to_json()
    assert not (tmp_path / "o").exists()  # planning touches nothing


def test_documents_generator_is_stable():
    assert list(documents(5_000, seed=3)) == list(documents(5_000, seed=3))
