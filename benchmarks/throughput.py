"""Throughput of the whole pipeline as a ratio of the tokenizer's best raw rate.

In one run, on the same generated corpus and tokenizer:

  (a) raw:   ``Tokenizer.encode_batch_fast`` on in-memory text, batches of 1,000, its
             Rayon thread pool across every core (the best the library does alone);
  (b) local: ``tokenyard run --engine local``, one process per core;
  (c) dask:  ``tokenyard run --engine dask``, a LocalCluster with one worker per core;
  (d) spark: ``tokenyard run --engine spark`` on local[N] (with --engines ...,spark).

(b)-(d) are timed from command start to committed manifest (interpreter start, cluster
start, planning, reading JSONL, tokenizing, writing shards, commit), and reported as
tokens/s and as a ratio of (a). Peak RSS is sampled per process of the command's tree.
Each measurement is repeated (--repeat) and the median is printed; machines are shared
and noisy.

    python benchmarks/throughput.py                      # 64 MB corpus, all cores
    python benchmarks/throughput.py --mb 200 --repeat 5 --engines local,dask,spark
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.testing.measure import PeakRSS  # noqa: E402


def make_corpus(root: Path, total_mb: int, files: int) -> list[Path]:
    from pipelines.testing.corpus import write_jsonl

    paths = []
    for i in range(files):
        path = root / "raw" / f"part-{i:03d}.jsonl"
        write_jsonl(path, total_mb * 10**6 // files, seed=100 + i, id_prefix=f"p{i}")
        paths.append(path)
    return paths


def make_tokenizer(root: Path, vocab: int) -> Path:
    from pipelines.testing.corpus import documents
    from pipelines.train import train_bpe

    path = root / "tokenizer.json"
    path.write_bytes(train_bpe(documents(8 * 10**6, seed=99), vocab_size=vocab,
                               special_tokens=["<|endoftext|>"]))
    return path


def raw_rate(paths: list[Path], tokenizer: Path, batch: int = 1000) -> dict:
    """(a): encode_batch_fast with all cores, on texts already in memory."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ.pop("RAYON_NUM_THREADS", None)
    from tokenizers import Tokenizer

    texts = [json.loads(line)["text"] for p in paths for line in p.open(encoding="utf-8")]
    tok = Tokenizer.from_file(str(tokenizer))
    tok.encode_batch_fast(texts[:batch], add_special_tokens=False)  # warm the pool
    started = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), batch):
        tokens += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i:i + batch],
                                                                add_special_tokens=False))
    seconds = time.perf_counter() - started
    tokens += len(texts)  # the pipeline appends eos to every document: count it alike
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def pipeline_rate(root: Path, tokenizer: Path, engine: str, workers: int, target: str,
                  run_no: int) -> dict:
    out = root / f"out-{engine}-{run_no}"
    job = {
        "name": f"bench-{engine}",
        "input": {"uri": str(root / "raw" / "*.jsonl"), "id_field": "id"},
        "tokenizer": {"path": str(tokenizer)},
        "output": {"uri": str(out)},
        "plan": {"target_unit_bytes": target},
        "engine": {"kind": engine, "workers": workers, "dashboard_address": "127.0.0.1:0"},
    }
    job_file = root / f"job-{engine}-{run_no}.json"
    job_file.write_text(json.dumps(job))  # JSON is YAML
    env = dict(os.environ, PYTHONPATH=str(REPO), PYSPARK_PYTHON=sys.executable)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(job_file)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with PeakRSS(proc.pid) as rss:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"engine {engine} failed:\n{stdout}\n{stderr}")
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = manifest["totals"]["tokens"]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "worker_peak_mb": rss.worker_peak_mb(), "driver_peak_mb": rss.driver_peak_mb(),
            "units": len(manifest["shards"])}


def default_engines() -> str:
    import importlib.util
    import shutil

    spark = importlib.util.find_spec("pyspark") is not None and shutil.which("java")
    return "local,dask,spark" if spark else "local,dask"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64, help="corpus size in MB (default 64)")
    parser.add_argument("--files", type=int, default=8, help="JSONL files (default 8)")
    parser.add_argument("--vocab", type=int, default=32_000, help="BPE vocabulary size")
    parser.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--target-unit", default="8MiB", help="plan.target_unit_bytes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default=default_engines(),
                        help="comma-separated (default: local,dask, and spark when pyspark "
                             "and java are installed)")
    parser.add_argument("--workdir", help="keep the corpus and outputs here")
    args = parser.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="tokenyard-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    paths = sorted((root / "raw").glob("*.jsonl")) or make_corpus(root, args.mb, args.files)
    tokenizer = Path(args.tokenizer) if args.tokenizer else (
        root / "tokenizer.json" if (root / "tokenizer.json").exists()
        else make_tokenizer(root, args.vocab))
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"corpus {size_mb:.1f} MB in {len(paths)} files; tokenizer {tokenizer}; "
          f"{args.workers} workers; {os.cpu_count()} cores; median of {args.repeat}")

    results: dict[str, list[dict]] = {"raw": []}
    for i in range(args.repeat):
        results["raw"].append(raw_rate(paths, tokenizer))
        for engine in args.engines.split(","):
            results.setdefault(engine, []).append(
                pipeline_rate(root, tokenizer, engine, args.workers, args.target_unit, i))

    raw = statistics.median(r["tokens_per_s"] for r in results["raw"])
    print(f"\n{'':8}{'tokens/s':>12}{'ratio':>8}{'seconds':>9}{'worker RSS':>12}"
          f"{'driver RSS':>12}")
    print(f"{'raw':8}{raw:12,.0f}{1.0:8.2f}"
          f"{statistics.median(r['seconds'] for r in results['raw']):9.1f}")
    for engine in args.engines.split(","):
        rows = results[engine]
        rate = statistics.median(r["tokens_per_s"] for r in rows)
        print(f"{engine:8}{rate:12,.0f}{rate / raw:8.2f}"
              f"{statistics.median(r['seconds'] for r in rows):9.1f}"
              f"{max(r['worker_peak_mb'] for r in rows):10.0f}MB"
              f"{max(r['driver_peak_mb'] for r in rows):10.0f}MB")
    print("\nratio = pipeline tokens/s (command start to committed manifest) / raw "
          "encode_batch_fast tokens/s on all cores, same corpus, same run")
    print("runs:", json.dumps({k: [round(r["tokens_per_s"]) for r in v]
                               for k, v in results.items()}))


if __name__ == "__main__":
    main()
