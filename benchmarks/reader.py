"""Training reader throughput per process, against a plain memmap of the same windows,
and time to the first batch with thousands of shards.

In one run, on a dataset the pipeline makes from a generated corpus (``--mb`` of text):

  (a) baseline: the reader's windows, in its order, copied as int64 out of the ``.bin``
      files ``numpy.memmap``'d once each: the least any reader of these shards does;
  (b) reader, local disk: ``SequenceDataset`` over the local dataset;
  (c) reader, S3 cold: the dataset on moto's S3 server on loopback, an empty shard cache
      (every shard downloaded, checked by size and sha256, memory-mapped);
  (d) reader, S3 warm: a second reader on the same node's cache;
  (e) for scale: fetching every shard with s3fs ``cat_file`` alone, no reader (what
      the server and loopback allow; (c) cannot beat it).

Each reads whole epochs in this process (``--epochs``; one for S3 cold), reported as
samples/s and label tokens/s (``samples * seq_len``) and as a ratio of (a); medians of
``--repeat`` runs.

Then time to the first batch (open the manifest, build the order, read ``--batch``
samples) on a synthetic dataset of ``--shards`` small shards, against parsing its
``manifest.json`` alone (the floor for any manifest reader), and the same on a dataset
of a tenth of the shards: opening is O(shards), never O(tokens) or O(documents).

    python benchmarks/reader.py                       # 24 MB of text, seq_len 2048
    python benchmarks/reader.py --mb 64 --repeat 5 --shards 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.training.cache import CacheSettings  # noqa: E402
from pipelines.training.dataset import SequenceDataset  # noqa: E402


def make_dataset(root: Path, mb: int) -> Path:
    from pipelines.config import parse_job
    from pipelines.run import run_job
    from pipelines.testing.corpus import tiny_tokenizer_json, write_jsonl

    for i in range(4):
        write_jsonl(root / "raw" / f"part-{i}.jsonl", mb * 10**6 // 4, seed=300 + i,
                    id_prefix=f"p{i}")
    (root / "tokenizer.json").write_bytes(tiny_tokenizer_json(8192))
    out = root / "dataset"
    run_job(parse_job({
        "name": "reader-bench", "input": {"uri": str(root / "raw")},
        "tokenizer": {"path": str(root / "tokenizer.json")}, "output": {"uri": str(out)},
        "plan": {"target_unit_bytes": "2MiB"}, "engine": {"kind": "local", "workers": 2}}))
    return out


def baseline(uri: str, seq_len: int, windows: np.ndarray, epochs: int) -> dict:
    """(a): the same windows out of memmaps opened once, no order or cache logic."""
    manifest = json.loads((Path(uri) / "manifest.json").read_text())
    dtype = np.dtype(manifest["dtype"])
    maps, counts = [], []
    for shard in manifest["shards"]:
        path = next(f["path"] for f in shard["files"] if f["path"].endswith(".bin"))
        maps.append(np.memmap(Path(uri) / path, dtype=dtype, mode="r") if shard["tokens"]
                    else np.zeros(0, dtype))
        counts.append(shard["tokens"])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    started = time.perf_counter()
    checksum = 0
    for k in windows.tolist() * epochs:
        start, stop = k * seq_len, k * seq_len + seq_len + 1
        out = np.empty(stop - start, np.int64)
        s = int(np.searchsorted(offsets, start, "right")) - 1
        pos = start
        while pos < stop:
            hi = min(stop, int(offsets[s + 1]))
            if hi > pos:
                out[pos - start:hi - start] = maps[s][pos - offsets[s]:hi - offsets[s]]
                pos = hi
            s += 1
        checksum += int(out[0])
    return {"seconds": time.perf_counter() - started, "samples": len(windows) * epochs,
            "checksum": checksum}


def read_epochs(ds: SequenceDataset, epochs: int) -> dict:
    """Whole epochs through the reader (each epoch in its own order; same windows)."""
    started = time.perf_counter()
    checksum = 0
    n = 0
    for _ in range(epochs):
        for sample in ds:
            checksum += int(sample[0])
            n += 1
    return {"seconds": time.perf_counter() - started, "samples": n, "checksum": checksum}


def get_only(probe: SequenceDataset, fs, samples: int) -> dict:
    """(e): every shard's .bin fetched whole with s3fs, as samples/s of one epoch."""
    started = time.perf_counter()
    for shard in probe.sources[0].shards:
        fs.cat_file(f"bench/data/{shard.data_file.path}")
    return {"seconds": time.perf_counter() - started, "samples": samples, "checksum": None}


def make_many_shards(root: Path, shards: int, tokens_per_shard: int) -> Path:
    """A committed-looking dataset of many small Megatron shards (synthetic tokens)."""
    from array import array

    from pipelines import layout
    from pipelines.formats.megatron import write_index
    from pipelines.records import (Manifest, ManifestShard, Reconciliation, ShardFile,
                                   TokenizerFacts, Totals)

    rng = np.random.default_rng(0)
    entries = []
    for unit in range(shards):
        lengths = array("i", [tokens_per_shard // 4] * 4)
        tokens = rng.integers(1, 8000, tokens_per_shard, dtype=np.uint16)
        tokens[np.cumsum(lengths) - 1] = 0   # eos at each document's end
        files = []
        for rel in layout.shard_paths(unit, "megatron"):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                if rel.endswith(".bin"):
                    f.write(tokens.tobytes())
                else:
                    write_index(f, lengths, np.dtype(np.uint16))
            data = path.read_bytes()
            files.append(ShardFile(rel, len(data), hashlib.sha256(data).hexdigest()))
        entries.append(ManifestShard(unit=unit, documents=4, tokens=tokens_per_shard,
                                     files=tuple(files)))
    documents = 4 * shards
    manifest = Manifest(
        job="many", fingerprint=f"synthetic-{shards}", format="megatron",
        tokenizer=TokenizerFacts("tokenizer.json", "0" * 64, 8192, "uint16", "<|endoftext|>",
                                 0, None, None),
        max_token_id=7999, shards=tuple(entries), rejects=(),
        totals=Totals(units=shards, records=documents, documents=documents,
                      tokens=tokens_per_shard * shards, rejected=0, input_bytes=0),
        reconciliation=Reconciliation(documents, documents, 0, True))
    (root / layout.MANIFEST).write_bytes(manifest.to_json())
    return root


_FIRST_BATCH = """
import json, sys, time
import orjson
from pathlib import Path
from pipelines.training.dataset import SequenceDataset
uri, seq_len, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
ds = SequenceDataset(uri, seq_len, seed=1)
opened = time.perf_counter()
it = iter(ds)
for _ in range(batch):
    next(it)
done = time.perf_counter()
orjson.loads((Path(uri) / "manifest.json").read_bytes())
parse = time.perf_counter() - done
print(json.dumps({"open_s": opened - started, "first_batch_s": done - started, "parse_s": parse}))
"""


def first_batch(uri: str, seq_len: int, batch: int) -> dict:
    """Open and read the first batch in a fresh process (after its imports), as a
    training process starting up would."""
    out = subprocess.run([sys.executable, "-c", _FIRST_BATCH, uri, str(seq_len), str(batch)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=24, help="MB of text in the dataset")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per measurement (local and warm); S3 cold reads one")
    parser.add_argument("--shards", type=int, default=5000,
                        help="shards of the time-to-first-batch dataset")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from pipelines.testing.s3 import s3_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # moto logs every request
    with tempfile.TemporaryDirectory(prefix="tokenyard-reader-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        local = str(make_dataset(root, args.mb))
        probe = SequenceDataset(local, args.seq_len, seed=1)
        n = probe.samples_per_epoch
        shards = len(probe.sources[0].shards)
        windows = np.array([probe.locate(p).window for p in range(n)], dtype=np.int64)
        print(f"dataset: {args.mb} MB of text, {probe.sources[0].versions[0].tokens:,} tokens "
              f"in {shards} shards, {n:,} samples of {args.seq_len} + 1 "
              f"(made in {time.perf_counter() - t0:.0f}s); median of {args.repeat}")
        rows: dict[str, list[dict]] = {"baseline": [], "local": [], "s3 cold": [], "s3 warm": [],
                                       "s3 GET only": []}
        with s3_server() as server:
            fs = server.filesystem()
            fs.mkdir("bench")
            for path in Path(local).rglob("*"):
                rel = path.relative_to(local)
                if path.is_file() and not str(rel).startswith("_"):
                    fs.pipe_file(f"bench/data/{rel}", path.read_bytes())
            remote = "s3://bench/data"
            opts = {"endpoint_url": server.endpoint}
            for run in range(args.repeat):
                e = args.epochs
                rows["baseline"].append(baseline(local, args.seq_len, windows, e))
                rows["local"].append(read_epochs(SequenceDataset(local, args.seq_len, seed=1), e))
                cache = CacheSettings(directory=str(root / f"cache-{run}"), max_bytes=2**34)
                rows["s3 cold"].append(read_epochs(SequenceDataset(
                    remote, args.seq_len, seed=1, storage_options=opts, cache=cache), 1))
                rows["s3 warm"].append(read_epochs(SequenceDataset(
                    remote, args.seq_len, seed=1, storage_options=opts, cache=cache), e))
                rows["s3 GET only"].append(get_only(probe, server.filesystem(), n))
        # the same windows: the first token of every sample adds up alike in every epoch
        per_epoch = {name: {r["checksum"] * n // r["samples"] for r in runs}
                     for name, runs in rows.items() if name != "s3 GET only"}
        assert len(set.union(*per_epoch.values())) == 1, per_epoch
        base = statistics.median(r["samples"] / r["seconds"] for r in rows["baseline"])
        print(f"\n{'':22} {'samples/s':>11} {'tokens/s':>11} {'vs memmap':>10}")
        for name, runs in rows.items():
            rate = statistics.median(r["samples"] / r["seconds"] for r in runs)
            print(f"{name:22} {rate:11,.0f} {rate * args.seq_len / 1e6:10.1f}M "
                  f"{rate / base:10.2f}")

        many = []
        for count in (args.shards // 10, args.shards):
            uri = str(make_many_shards(root / f"many-{count}", count, 4 * args.seq_len))
            runs = [first_batch(uri, args.seq_len, args.batch) for _ in range(args.repeat)]
            many.append((count, _median_run(runs)))
        print(f"\ntime to the first batch of {args.batch} (a fresh process, after imports):")
        for count, r in many:
            print(f"  {count:6,} shards: open {r['open_s'] * 1e3:7.1f} ms, first batch "
                  f"{r['first_batch_s'] * 1e3:7.1f} ms = {r['first_batch_s'] / r['parse_s']:.1f}x "
                  f"parsing manifest.json alone ({r['parse_s'] * 1e3:.1f} ms)")
        small, large = many[0][1]["first_batch_s"], many[1][1]["first_batch_s"]
        print(f"  {many[1][0] // many[0][0]}x the shards: {large / small:.1f}x the time")


def _median_run(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["first_batch_s"])
    return runs[len(runs) // 2]


if __name__ == "__main__":
    main()
