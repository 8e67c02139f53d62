"""Reading from S3 on loopback: the same samples as locally, one download per shard for
a whole node, a bounded cache, throttling storms survived, damage named clearly."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import time
from collections import Counter

import numpy as np
import pytest

from pipelines.errors import ConfigError, DatasetError
from pipelines.storage import RetryPolicy
from pipelines.training.cache import CacheSettings
from pipelines.training.dataset import Order, SequenceDataset
from tests.faults.kit import FaultProxy, wait_until
from tests.training.helpers import SEQ_LEN, delivered, upload

SEED = 3
#: quick retries for tests: the defaults wait patiently, for training jobs
QUICK = RetryPolicy(attempts=12, base_delay_s=0.05, max_delay_s=0.5, deadline_s=90.0)


def settings(tmp_path, **kw) -> CacheSettings:
    kw.setdefault("directory", str(tmp_path / "cache"))
    kw.setdefault("max_bytes", 2**30)
    return CacheSettings(retry=QUICK, **kw)


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def data_files(built) -> list[dict]:
    return [f for s in built.manifest["shards"] for f in s["files"] if f["path"].endswith(".bin")]


def test_s3_gives_the_local_samples_through_a_content_addressed_cache(s3, dataset_a, tmp_path):
    uri = upload(s3, dataset_a, "data/a")
    local = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED, boundaries=True))
    remote_ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, boundaries=True,
                                storage_options={"endpoint_url": s3.endpoint},
                                cache=settings(tmp_path))
    remote = list(remote_ds)
    assert len(remote) == len(local)
    for x, y in zip(remote, local):
        assert all(np.array_equal(x[k], y[k]) for k in ("tokens", "position_ids", "cu_seqlens"))
    files = [f for s in dataset_a.manifest["shards"] for f in s["files"]]
    cached = {p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()
              and not p.name.startswith(".") and ".locks" not in str(p)}
    assert cached == {f["sha256"] + os.path.splitext(f["path"])[1] for f in files}
    stats = remote_ds._cache.stats
    assert stats.downloads == len(files) and stats.downloaded_bytes == sum(f["size"] for f in files)
    again = SequenceDataset(uri, SEQ_LEN, seed=SEED, cache=settings(tmp_path))
    assert same(list(again), [x["tokens"] for x in local])
    assert again._cache.stats.downloads == 0   # a second reader on the node downloads nothing


def _read_in_process(args) -> tuple[int, bytes]:
    uri, endpoint, directory, barrier = args
    ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, storage_options={"endpoint_url": endpoint},
                         cache=CacheSettings(directory=directory, max_bytes=2**30, retry=QUICK))
    barrier.wait(timeout=60)
    digest = b"".join(x.tobytes() for x in ds)
    return ds._cache.stats.downloads, digest


def test_processes_of_a_node_download_each_shard_once(s3, dataset_a, tmp_path):
    uri = upload(s3, dataset_a, "data/a")
    # spawned, as a node's training processes are: a fork of this process would copy the
    # locks its threads (moto's server, the Dask loop) hold, and could hang in the child
    ctx = multiprocessing.get_context("spawn")
    processes = 3
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        barrier = manager.Barrier(processes)   # all start reading at once
        results = pool.map(_read_in_process, [(uri, s3.endpoint, str(tmp_path / "cache"), barrier)]
                           * processes)
    expected = b"".join(x.tobytes() for x in SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    assert all(digest == expected for _, digest in results)
    assert sum(downloads for downloads, _ in results) == len(data_files(dataset_a))


def test_the_cache_stays_within_its_bound(s3, dataset_a, tmp_path):
    uri = upload(s3, dataset_a, "data/a")
    largest = max(f["size"] for f in data_files(dataset_a))
    bound = int(2.5 * largest)
    ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, order=Order(window_samples=64),
                         storage_options={"endpoint_url": s3.endpoint},
                         cache=settings(tmp_path, max_bytes=bound, prefetch_samples=64))
    got = []
    for item in ds:   # two prefetch threads download while the reader reads
        got.append(item)
        if len(got) % 25 == 0:
            assert ds._cache.used_bytes() <= bound
    assert same(got, list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED,
                                          order=Order(window_samples=64))))
    assert ds._cache.used_bytes() <= bound
    assert ds._cache.stats.evicted > 0
    with pytest.raises(ConfigError, match="room for at least two"):
        SequenceDataset(uri, SEQ_LEN, storage_options={"endpoint_url": s3.endpoint},
                        cache=settings(tmp_path, max_bytes=largest))


def test_a_throttling_storm_changes_nothing(s3, dataset_a, tmp_path):
    """Half of all requests fail (mostly 503 SlowDown), and for two seconds every request
    is throttled: the reader backs off and delivers exactly the undisturbed samples."""
    uri = upload(s3, dataset_a, "data/a")
    expected = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED, boundaries=True))
    kinds = ("slowdown", "slowdown", "slowdown", "internal", "reset", "truncate")
    with FaultProxy(s3.endpoint, rate=0.5, seed=11, kinds=kinds) as proxy:
        ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, boundaries=True,
                             storage_options={"endpoint_url": proxy.endpoint},
                             cache=settings(tmp_path))

        def storm() -> None:
            wait_until(lambda: proxy.stats["requests"] >= 4, timeout_s=30)
            proxy.set_outage("503")
            time.sleep(2.0)
            proxy.heal()

        thread = threading.Thread(target=storm, daemon=True)
        thread.start()
        got = list(ds)
        thread.join(timeout=60)
        stats = dict(proxy.stats)
    print(f"\nrequests {stats.get('requests')}, faults {proxy.faults}: {stats}")
    assert stats.get("outage", 0) >= 3 and stats.get("slowdown", 0) >= 3
    assert proxy.faults >= 10
    assert len(got) == len(expected)
    assert all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(got, expected))


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_shard_on_s3_is_named(s3, dataset_a, tmp_path, damage):
    uri = upload(s3, dataset_a, "data/a")
    victim = data_files(dataset_a)[2]
    key = f"data/a/{victim['path']}"
    if damage == "missing":
        s3.fs.rm(key)
    else:
        raw = bytearray(s3.fs.cat_file(key))
        raw[len(raw) // 2] ^= 0xFF
        s3.put(f"s3://{key}", bytes(raw))
    ds = SequenceDataset(uri, SEQ_LEN, seed=SEED, order=Order(shuffle=False),
                         storage_options={"endpoint_url": s3.endpoint},
                                cache=settings(tmp_path))
    with pytest.raises(DatasetError) as info:
        list(ds)
    message = str(info.value)
    assert uri in message and victim["path"] in message
    assert ("missing" in message) if damage == "missing" else ("sha256" in message
                                                              and "corrupt" in message)
    assert not list((tmp_path / "cache").rglob(victim["sha256"] + "*"))  # nothing bad cached


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_a_missing_or_corrupt_local_shard_is_named(dataset_a, tmp_path, damage):
    copy = tmp_path / "a"
    shutil.copytree(dataset_a.root, copy)
    victim = data_files(dataset_a)[1]
    path = copy / victim["path"]
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    else:
        raw = bytearray(path.read_bytes())
        raw[100] ^= 0xFF
        path.write_bytes(bytes(raw))
    if damage == "flipped":   # same size: only a checksum finds it, so ask for one
        SequenceDataset(str(copy), SEQ_LEN)   # opens: sizes are checked when read
        with pytest.raises(DatasetError, match=f"{victim['path']}: sha256"):
            SequenceDataset(str(copy), SEQ_LEN, verify="full")
        return
    with pytest.raises(DatasetError, match=victim["path"]) as info:
        list(SequenceDataset(str(copy), SEQ_LEN, order=Order(shuffle=False)))
    assert ("missing" if damage == "missing" else "bytes, the manifest says") in str(info.value)
    with pytest.raises(DatasetError, match=victim["path"]):
        SequenceDataset(str(copy), SEQ_LEN, verify="sizes")
    assert delivered(SequenceDataset(dataset_a.uri, SEQ_LEN)) == Counter(dataset_a.windows())


def test_dataloader_workers_read_s3_through_the_node_cache(s3, dataset_a, tmp_path):
    torch = pytest.importorskip("torch")
    from pipelines.training.pytorch import SequenceDataset as TorchDataset
    from pipelines.training.pytorch import SequenceLoader

    uri = upload(s3, dataset_a, "data/a")
    expected = list(SequenceDataset(dataset_a.uri, SEQ_LEN, seed=SEED))
    ds = TorchDataset(uri, SEQ_LEN, seed=SEED, storage_options={"endpoint_url": s3.endpoint},
                      cache=settings(tmp_path))
    loader = SequenceLoader(ds, batch_size=16, num_workers=2, persistent_workers=True)
    got = [row for batch in loader for row in batch.numpy()]
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert same(got, expected)
    cached = [p for p in (tmp_path / "cache").rglob("*.bin")]
    assert len(cached) == len(data_files(dataset_a))


def test_an_unusable_cache_is_explained(s3, dataset_a, tmp_path, monkeypatch):
    uri = upload(s3, dataset_a, "data/a")
    opts = {"endpoint_url": s3.endpoint}
    with pytest.raises(ConfigError, match="cannot be used.*TOKENYARD_CACHE_DIR"):
        SequenceDataset(uri, SEQ_LEN, storage_options=opts,
                        cache=CacheSettings(directory="/proc/no-such-place"))
    monkeypatch.setenv("TOKENYARD_CACHE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("TOKENYARD_CACHE_BYTES", "lots")
    with pytest.raises(ConfigError, match="TOKENYARD_CACHE_BYTES is 'lots'"):
        SequenceDataset(uri, SEQ_LEN, storage_options=opts)
    monkeypatch.setenv("TOKENYARD_CACHE_BYTES", "1GiB")
    ds = SequenceDataset(uri, SEQ_LEN, storage_options=opts)
    assert ds._cache.directory == str(tmp_path / "from-env" / "shards")
    assert ds._cache.max_bytes == 2**30
