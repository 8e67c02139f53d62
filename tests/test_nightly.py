"""Nightly runs without Airflow: pipelines.nightly, pipelines.catalog, conditional writes."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines import catalog, nightly, nightly_kubernetes, storage
from pipelines.config import parse_job
from pipelines.errors import ConfigError
from pipelines.records import Manifest, Reconciliation, TokenizerFacts, Totals

DAY1, DAY2, DAY3 = "2026-11-20", "2026-11-21", "2026-11-22"


def jsonl(*texts: str) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def base_job(input_uri, output_uri, tokenizer_path, **extra):
    return parse_job({"name": "nightly-test", "input": {"uri": input_uri},
                      "tokenizer": {"path": str(tokenizer_path)},
                      "output": {"uri": output_uri},
                      "engine": {"kind": "local", "workers": 1}, **extra})


def other_tokenizer(tmp_path, tokenizer_bytes):
    """The same vocabulary saved differently: another file, another sha256."""
    path = tmp_path / "other-tokenizer.json"
    path.write_text(json.dumps(json.loads(tokenizer_bytes), indent=1))
    return path


def tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_fill_puts_the_night_into_every_date_placeholder_and_refuses_a_bad_date():
    assert nightly.fill("s3://b/dt={ds}/{yyyy}/{mm}/{dd}/{ds_nodash}*", DAY1) == \
        "s3://b/dt=2026-11-20/2026/11/20/20261120*"
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        nightly.fill("{ds}", "20261120")


def test_mode_is_chosen_by_placeholders_and_checked(tmp_path, tokenizer_file):
    templated = base_job("s3://raw/dt={ds}/*.jsonl", "s3://out/root/", tokenizer_file)
    plain = base_job("s3://raw/books/", "s3://out/root/", tokenizer_file)
    assert nightly.mode_of(templated) == nightly.PARTITION
    assert nightly.mode_of(plain) == nightly.WATERMARK
    with pytest.raises(ConfigError, match="needs a date placeholder"):
        nightly.mode_of(plain, nightly.PARTITION)
    with pytest.raises(ConfigError, match="has a date placeholder"):
        nightly.mode_of(templated, nightly.WATERMARK)
    with pytest.raises(ConfigError, match="unknown nightly mode"):
        nightly.mode_of(plain, "hourly")


def test_partition_mode_on_s3_versions_catalog_rerun_and_skip(s3, tokenizer_file):
    s3.bucket("raw")
    s3.bucket("tok")
    s3.put(f"s3://raw/books/dt={DAY1}/a.jsonl", jsonl("the first night", "two documents"))
    s3.put(f"s3://raw/books/dt={DAY2}/a.jsonl", jsonl("the second night"))
    s3.put(f"s3://raw/books/dt={DAY2}/b.jsonl", jsonl("and another file"))
    base = base_job("s3://raw/books/dt={ds}/*.jsonl", "s3://tok/books/", tokenizer_file)

    first = nightly.run_night(base, DAY1)
    second = nightly.run_night(base, DAY2)
    assert (first.documents, first.input_files, first.catalog_updated) == (2, 1, True)
    assert (second.documents, second.input_files) == (2, 2)
    cat = json.loads(s3.fs.cat_file("tok/books/catalog.json"))
    assert [v["version"] for v in cat["versions"]] == [f"v={DAY1}", f"v={DAY2}"]
    assert cat["latest"] == f"v={DAY2}"
    assert cat["tokenizer"]["sha256"] == first_manifest_sha(s3, DAY1)
    entry, manifest = catalog.latest("s3://tok/books", storage.StorageOptions())
    assert entry["manifest"] == f"v={DAY2}/manifest.json" and manifest.totals.documents == 2

    before = s3.listing("s3://tok/books")
    again = nightly.run_night(base, DAY1)
    assert again.already_committed and not again.catalog_updated
    assert s3.listing("s3://tok/books") == before

    empty = nightly.run_night(base, DAY3)
    assert empty.skipped and "no raw objects match" in empty.reason
    assert s3.listing("s3://tok/books") == before


def first_manifest_sha(s3, ds):
    return json.loads(s3.fs.cat_file(f"tok/books/v={ds}/manifest.json"))["tokenizer"]["sha256"]


def test_watermark_mode_takes_only_new_objects_and_reruns_are_no_ops(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(jsonl("alpha", "beta"))
    (raw / "b.jsonl").write_bytes(jsonl("gamma"))
    root = tmp_path / "tok"
    base = base_job(str(raw) + "/", str(root) + "/", tokenizer_file)

    first = nightly.run_night(base, DAY1)
    assert (first.mode, first.input_files, first.documents) == ("watermark", 2, 3)
    (raw / "c.jsonl").write_bytes(jsonl("delta", "epsilon"))
    second = nightly.run_night(base, DAY2)
    assert (second.input_files, second.documents) == (1, 2)
    marks = nightly.load_watermark(str(root), storage.StorageOptions())
    assert {k.rsplit("/", 1)[1]: (v["version"], v["state"]) for k, v in marks.items()} == {
        "a.jsonl": (f"v={DAY1}", "committed"), "b.jsonl": (f"v={DAY1}", "committed"),
        "c.jsonl": (f"v={DAY2}", "committed")}

    before = tree(root)
    again = nightly.run_night(base, DAY1)  # a backfill after a later night: still its own inputs
    assert again.already_committed and again.input_files == 2
    assert tree(root) == before

    skipped = nightly.run_night(base, DAY3)
    assert skipped.skipped and "3 listed" in skipped.reason
    assert tree(root) == before


def test_a_half_done_night_resumes_to_the_same_bytes(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    for i in range(3):
        (raw / f"dt={DAY1}").mkdir(parents=True, exist_ok=True)
        (raw / f"dt={DAY1}" / f"{i}.jsonl").write_bytes(jsonl(*(f"doc {i} {j}" for j in range(5))))
    root = tmp_path / "tok"
    base = base_job(str(raw) + "/dt={ds}/*.jsonl", str(root) + "/", tokenizer_file,
                    plan={"target_unit_bytes": 64})
    nightly.run_night(base, DAY1)
    whole = {k: v for k, v in tree(root).items() if not k.startswith(f"v={DAY1}/_runs")}
    version = root / f"v={DAY1}"
    (version / "manifest.json").unlink()
    (version / "_units" / "000001.json").unlink()
    (root / "catalog.json").unlink()
    result = nightly.run_night(base, DAY1)
    assert not result.already_committed and result.catalog_updated
    resumed = {k: v for k, v in tree(root).items() if not k.startswith(f"v={DAY1}/_runs")}
    assert resumed == whole


def test_another_tokenizer_is_refused_by_the_catalog(tmp_path, tokenizer_file, tokenizer_bytes):
    raw = tmp_path / "raw"
    for ds in (DAY1, DAY2):
        (raw / f"dt={ds}").mkdir(parents=True)
        (raw / f"dt={ds}" / "a.jsonl").write_bytes(jsonl(f"night {ds}"))
    root = str(tmp_path / "tok") + "/"
    nightly.run_night(base_job(str(raw) + "/dt={ds}/*.jsonl", root, tokenizer_file), DAY1)
    other = base_job(str(raw) + "/dt={ds}/*.jsonl", root, other_tokenizer(tmp_path, tokenizer_bytes))
    with pytest.raises(catalog.CatalogTokenizerMismatchError) as info:
        nightly.run_night(other, DAY2)
    assert "refused" in str(info.value) and "tokenizer.path" in str(info.value)
    assert not (tmp_path / "tok" / f"v={DAY2}").exists()  # refused before any work

    # the catalog itself refuses too, whoever calls it
    manifest = Manifest.from_json((tmp_path / "tok" / f"v={DAY1}" / "manifest.json").read_bytes())
    manifest = replace(manifest, tokenizer=replace(manifest.tokenizer, sha256="0" * 64))
    with pytest.raises(catalog.CatalogTokenizerMismatchError):
        catalog.add_version(root, catalog.entry_of("v=x", DAY2, manifest, 1), manifest,
                            storage.StorageOptions())


@pytest.mark.parametrize("where", ["s3", "local"])
def test_conditional_writes(where, request, tmp_path):
    if where == "s3":
        kit = request.getfixturevalue("s3")
        kit.bucket("cas")
        uri = "s3://cas/doc.json"
    else:
        uri = str(tmp_path / "doc.json")
    assert storage.read_bytes_versioned(uri) is None
    assert storage.write_bytes_if(uri, b"1", expected=None)
    assert not storage.write_bytes_if(uri, b"2", expected=None)
    data, version = storage.read_bytes_versioned(uri)
    assert data == b"1"
    assert storage.write_bytes_if(uri, b"3", expected=version)
    assert not storage.write_bytes_if(uri, b"4", expected=version)
    assert storage.read_bytes(uri) == b"3"


def test_concurrent_catalog_updates_lose_nothing(s3, tokenizer_file):
    s3.bucket("tok")
    manifest = Manifest(
        job="j", fingerprint="f" * 64, format="megatron",
        tokenizer=TokenizerFacts("t.json", "a" * 64, 512, "uint16", None, None, None, None),
        max_token_id=9, shards=(), rejects=(),
        totals=Totals(units=0, documents=1, tokens=2, records=1, rejected=0, input_bytes=3),
        reconciliation=Reconciliation(1, 1, 0, True))
    days = [f"2026-11-{d:02d}" for d in range(1, 9)]
    errors = []

    def publish(ds):
        try:
            catalog.add_version("s3://tok/root", catalog.entry_of(f"v={ds}", ds, manifest, 1),
                                manifest, storage.StorageOptions())
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=publish, args=(ds,)) for ds in reversed(days)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cat = catalog.load("s3://tok/root", storage.StorageOptions())
    assert [v["ds"] for v in cat["versions"]] == days and cat["latest"] == f"v={days[-1]}"


def test_render_night_names_objects_per_night_and_attempt(s3, tokenizer_file):
    from tests.helpers import REPO

    s3.bucket("raw")
    s3.bucket("models")
    s3.put(f"s3://raw/books/dt={DAY1}/a.jsonl", jsonl("one"))
    s3.put("s3://models/tok.json", tokenizer_file.read_bytes())
    base = base_job("s3://raw/books/dt={ds}/*.jsonl", "s3://tok/books/", "s3://models/tok.json")
    night = nightly.resolve_night(base, DAY1)
    objects = nightly_kubernetes.render_night(
        night, "daskjob", str(REPO / "cluster_specs/dask/general-1cpu.yaml"), attempt=2)
    kinds = [o["kind"] for o in objects]
    assert kinds[:2] == ["ConfigMap", "DaskJob"]
    assert all("20261120-a2" in o["metadata"]["name"] for o in objects)
    assert f"s3://tok/books/v={DAY1}/" in objects[0]["data"]["job.yaml"]
    with pytest.raises(ConfigError, match="unknown Kubernetes kind"):
        nightly_kubernetes.render_night(night, "pod", "x.yaml")


def test_a_handed_on_watermark_night_renders_its_input_list_without_listing(s3, tokenizer_file):
    """What select decided travels as JSON; rendering reads none of the inputs again."""
    import yaml

    from tests.helpers import REPO

    s3.bucket("raw")
    s3.bucket("models")
    s3.put("s3://raw/books/a.jsonl", jsonl("one"))
    s3.put("s3://raw/books/b.jsonl", jsonl("two"))
    s3.put("s3://models/tok.json", tokenizer_file.read_bytes())
    base = base_job("s3://raw/books/", "s3://tok/books/", "s3://models/tok.json")
    decided = json.dumps(nightly.resolve_night(base, DAY1).as_dict())
    s3.fs.rm(["raw/books/a.jsonl", "raw/books/b.jsonl"])
    s3.fs.rm("models/tok.json")
    s3.put("s3://raw/books/c.jsonl", jsonl("three, after select"))

    night = nightly.Night.from_dict(json.loads(decided))
    assert night.mode == "watermark" and not night.skipped
    objects = nightly_kubernetes.render_night(night, "daskjob",
                                              str(REPO / "cluster_specs/dask/general-1cpu.yaml"))
    job = yaml.safe_load(objects[0]["data"]["job.yaml"])
    assert job["input"]["uri"] == ["s3://raw/books/a.jsonl", "s3://raw/books/b.jsonl"]


def test_a_night_survives_its_json_form_unchanged(s3, tmp_path, tokenizer_file):
    s3.bucket("raw")
    s3.put(f"s3://raw/books/dt={DAY1}/a.jsonl", jsonl("one"))
    partition = base_job("s3://raw/books/dt={ds}/*.jsonl", str(tmp_path / "p") + "/",
                         tokenizer_file, plan={"target_unit_bytes": "64MiB"},
                         storage={"endpoint_url": s3.endpoint})
    watermark = base_job("s3://raw/books/", str(tmp_path / "w") + "/", tokenizer_file)
    nights = [nightly.resolve_night(partition, DAY1), nightly.resolve_night(watermark, DAY1),
              nightly.resolve_night(partition, DAY2)]  # the last one has nothing: skipped
    assert [n.skipped for n in nights] == [False, False, True]
    for night in nights:
        again = nightly.Night.from_dict(json.loads(json.dumps(night.as_dict())))
        assert again == night
        assert again.output_uri == night.output_uri


@pytest.mark.parametrize("bad", [None, {"format": 99}, {"format": nightly.NIGHT_FORMAT}])
def test_a_night_that_is_not_one_is_refused_clearly(bad):
    with pytest.raises(ConfigError, match="select"):
        nightly.Night.from_dict(bad)


def test_the_nightly_core_knows_nothing_of_kubernetes():
    import ast
    import subprocess
    import sys

    from tests.helpers import REPO

    source = ast.parse(Path(nightly.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(source) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(source)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not [m for m in imported if "kube" in m or "airflow" in m]
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, pipelines.nightly; print(sorted(m for m in "
         "sys.modules if 'kube' in m or m.split('.')[0] == 'airflow'))"],
        capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"


def test_logging_progress_reports_units_tokens_and_throughput(tmp_path, tokenizer_file, caplog):
    import logging

    from pipelines.progress_log import LoggingProgress

    raw = tmp_path / "raw" / f"dt={DAY1}"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_bytes(jsonl("some words to count"))
    base = base_job(str(tmp_path / "raw") + "/dt={ds}/*.jsonl", str(tmp_path / "tok") + "/",
                    tokenizer_file)
    logger = logging.getLogger("test.nightly.progress")
    with caplog.at_level(logging.INFO, logger=logger.name):
        result = nightly.run_night(base, DAY1, progress=LoggingProgress(logger))
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert any(line.startswith("tokenize: 1 units (0 done earlier), 1 to run") for line in lines)
    assert any(line.startswith("units 1/1 done,") and "tokens/s" in line for line in lines)
    assert f"{result.tokens} tokens" in result.summary_line()
