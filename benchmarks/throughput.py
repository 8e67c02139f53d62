"""Throughput of the whole pipeline as a ratio of the HF tokenizer's raw rate.

In one run, on the same corpus and tokenizer:

  raw hf     ``Tokenizer.encode_batch_fast`` on in-memory text with its Rayon pool on every
             core (the best HF ``tokenizers`` does alone): the ceiling of the old pipeline
             and the baseline of every ratio below;
  raw fast   fastokens ``encode_batch_flat`` on in-memory text, one process per core,
             single-threaded each (what tokenization alone costs with the fast backend);
  ENGINE/BACKEND
             ``tokenyard run`` with engine local, dask or spark and tokenizer backend auto
             (the default), fastokens or hf, timed from command start to committed
             manifest (interpreter start, workers, planning, backend checks, reading,
             tokenizing, writing, commit). Every job uses default settings: only the
             engine and backend are set.

Printed per row: tokens/s, the ratio to raw hf, seconds, peak RSS of the largest worker
process and of the driver, and for the fast backend the cost of the identity checks
(the qualification plus every unit's re-check with HF, in CPU seconds, as a share of the
CPU seconds of the run's whole process tree). The first run of each row starts with an empty verdict cache (a first run on
a new machine: qualification included); later ones reuse it. Every row's shards are
compared with the hf row's: they must be byte-identical. Medians of --repeat runs;
machines are shared and noisy.

    python benchmarks/throughput.py                                # generated text, 96 MiB
    python benchmarks/throughput.py --corpus debian                # /usr/share/doc as JSONL
    python benchmarks/throughput.py --corpus-dir DIR --tokenizer tokenizer.json
    python benchmarks/throughput.py --engines local --backends auto,hf --repeat 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.testing.measure import PeakRSS  # noqa: E402

MiB = 2**20


# -- corpora and tokenizer ------------------------------------------------------------


def generated_corpus(root: Path, total_bytes: int, files: int) -> list[Path]:
    from pipelines.testing.corpus import write_jsonl

    paths = []
    for i in range(files):
        path = root / "raw" / f"part-{i:03d}.jsonl"
        write_jsonl(path, total_bytes // files, seed=100 + i, id_prefix=f"p{i}")
        paths.append(path)
    return paths


def debian_corpus(root: Path, total_bytes: int, files: int,
                  source: Path = Path("/usr/share/doc")) -> list[Path]:
    """Real third-party text: every readable file under /usr/share/doc, one document each."""
    if not source.is_dir():
        raise SystemExit(f"{source} is absent: use --corpus generated or --corpus-dir")
    records = []
    for dirpath, dirnames, filenames in sorted(os.walk(source)):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            try:
                raw = path.read_bytes()
                text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode("utf-8")
            except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
                continue
            if text.strip():
                records.append(json.dumps({"id": str(path), "text": text},
                                          ensure_ascii=False).encode() + b"\n")
    out = root / "raw"
    out.mkdir(parents=True, exist_ok=True)
    per_file = min(total_bytes, sum(map(len, records))) // files + 1
    paths, buf, written = [], [], 0
    for record in records:
        if written >= total_bytes:
            break
        buf.append(record)
        written += len(record)
        if sum(map(len, buf)) >= per_file:
            paths.append(out / f"part-{len(paths):03d}.jsonl")
            paths[-1].write_bytes(b"".join(buf))
            buf = []
    if buf:
        paths.append(out / f"part-{len(paths):03d}.jsonl")
        paths[-1].write_bytes(b"".join(buf))
    return paths


def train_tokenizer(root: Path, paths: list[Path], vocab: int) -> Path:
    """A GPT-2-shaped byte-level BPE trained on the corpus itself."""
    from pipelines.train import train_bpe

    def texts():
        taken = 0
        for path in paths:
            for line in path.open(encoding="utf-8"):
                text = json.loads(line)["text"]
                yield text
                taken += len(text)
                if taken > 30_000_000:
                    return

    path = root / "tokenizer.json"
    path.write_bytes(train_bpe(texts(), vocab_size=vocab, special_tokens=["<|endoftext|>"]))
    return path


def load_texts(paths: list[Path]) -> list[str]:
    return [json.loads(line)["text"] for p in paths for line in p.open(encoding="utf-8")]


# -- raw rates (each in a subprocess of its own, with its own environment) ------------


def _raw_hf(paths: list[str], tokenizer: str, cores: int, out) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ["RAYON_NUM_THREADS"] = str(cores)
    from tokenizers import Tokenizer

    texts = load_texts([Path(p) for p in paths])
    tok = Tokenizer.from_file(tokenizer)
    tok.encode_batch_fast(texts[:1000], add_special_tokens=False)  # start the pool
    started = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), 1000):
        tokens += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i:i + 1000],
                                                                add_special_tokens=False))
    out.send((tokens + len(texts), time.perf_counter() - started))  # + an eos each


def _fast_worker(args) -> tuple[int, float]:
    tokenizer, texts = args
    import fastokens

    tok = fastokens.Tokenizer.from_file(tokenizer)
    tok.encode_batch_flat(texts[:10])
    started = time.process_time()
    tokens = 0
    batch, chars = [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= 1_000_000:
            tokens += len(tok.encode_batch_flat(batch, split_special_tokens=True)[0]) // 4
            batch, chars = [], 0
    if batch:
        tokens += len(tok.encode_batch_flat(batch, split_special_tokens=True)[0]) // 4
    return tokens + len(texts), time.process_time() - started


def _raw_fast(paths: list[str], tokenizer: str, cores: int, out) -> None:
    os.environ["FASTOKENS_BPE_THREADS"] = "1"
    texts = load_texts([Path(p) for p in paths])
    shares = [texts[i::cores] for i in range(cores)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cores) as pool:
        results = pool.map(_fast_worker, [(tokenizer, share) for share in shares])
    tokens = sum(r[0] for r in results)
    # all processes in parallel: the slowest one's CPU time is the wall time of the pass
    out.send((tokens, max(r[1] for r in results)))


def raw_rate(fn, paths: list[Path], tokenizer: Path, cores: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=fn, args=([str(p) for p in paths], str(tokenizer), cores, send))
    proc.start()
    tokens, seconds = receive.recv()
    proc.join()
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


# -- the pipeline ------------------------------------------------------------------------


def pipeline_rate(root: Path, tokenizer: Path, engine: str, backend: str, run_no: int,
                  cache: Path) -> dict:
    out = root / f"out-{engine}-{backend}-{run_no}"
    shutil.rmtree(out, ignore_errors=True)  # a whole run each time, never a resumed one
    job = {
        "name": "bench",  # the same job whatever the engine or backend: identical bytes
        "input": {"uri": str(root / "raw" / "*.jsonl")},
        "tokenizer": {"path": str(tokenizer), "backend": backend},
        "output": {"uri": str(out)},
        "engine": {"kind": engine, "dashboard_address": "127.0.0.1:0"},
    }
    job_file = root / f"job-{engine}-{backend}.json"
    job_file.write_text(json.dumps(job))  # JSON is YAML
    env = dict(os.environ, PYTHONPATH=str(REPO), PYSPARK_PYTHON=sys.executable,
               TOKENYARD_CACHE_DIR=str(cache))
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(job_file)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with PeakRSS(proc.pid) as rss:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"engine {engine} backend {backend} failed:\n{stdout}\n{stderr}")
    manifest = json.loads((out / "manifest.json").read_text())
    record = json.loads(next((out / "_runs").glob("*.json")).read_text())
    tokens = manifest["totals"]["tokens"]
    checks = record.get("qualification_seconds", 0) + record.get("identity_check_seconds", 0)
    cpu = rss.cpu_seconds()
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "cpu_s": cpu,
            "worker_peak_mb": rss.worker_peak_mb(), "driver_peak_mb": rss.driver_peak_mb(),
            "units": len(manifest["shards"]), "backend": record.get("backend"),
            "check_share": checks / cpu if cpu else 0.0,
            "qualification_s": record.get("qualification_seconds", 0), "out": out}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(("_runs", "."))}


def default_engines() -> str:
    import importlib.util

    spark = importlib.util.find_spec("pyspark") is not None and shutil.which("java")
    return "local,dask,spark" if spark else "local,dask"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["generated", "debian"], default="generated",
                        help="generated text (default) or the Debian documentation on this "
                             "machine (/usr/share/doc), as JSONL")
    parser.add_argument("--corpus-dir", help="use the *.jsonl files of this folder instead")
    parser.add_argument("--mb", type=int, default=96, help="corpus size in MiB (default 96)")
    parser.add_argument("--files", type=int, default=8, help="JSONL files (default 8)")
    parser.add_argument("--vocab", type=int, default=50_257,
                        help="vocabulary of the trained byte-level BPE (GPT-2's by default)")
    parser.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default=default_engines(),
                        help="comma-separated (default: local,dask, and spark when pyspark "
                             "and java are installed)")
    parser.add_argument("--backends", default="auto,hf",
                        help="comma-separated tokenizer backends (default auto,hf)")
    parser.add_argument("--workdir", help="keep the corpus and outputs here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    root = Path(args.workdir or tempfile.mkdtemp(prefix="tokenyard-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.corpus_dir:
        paths = sorted(Path(args.corpus_dir).glob("*.jsonl"))
        (root / "raw").mkdir(exist_ok=True)
        for p in paths:
            target = root / "raw" / p.name
            if not target.exists():
                shutil.copy(p, target)
    paths = sorted((root / "raw").glob("*.jsonl"))
    if not paths:
        make = debian_corpus if args.corpus == "debian" else generated_corpus
        paths = make(root, args.mb * MiB, args.files)
    tokenizer = Path(args.tokenizer) if args.tokenizer else root / "tokenizer.json"
    if not tokenizer.exists():
        tokenizer = train_tokenizer(root, paths, args.vocab)
    size = sum(p.stat().st_size for p in paths)
    engines, backends = args.engines.split(","), args.backends.split(",")
    print(f"corpus {size / MiB:.1f} MiB in {len(paths)} files ({args.corpus_dir or args.corpus});"
          f" tokenizer {tokenizer}; {cores} cores; median of {args.repeat}")

    results: dict[str, list[dict]] = {"raw hf": [], "raw fast": []}
    caches = {}
    for i in range(args.repeat):
        results["raw hf"].append(raw_rate(_raw_hf, paths, tokenizer, cores))
        results["raw fast"].append(raw_rate(_raw_fast, paths, tokenizer, cores))
        for engine in engines:
            for backend in backends:
                name = f"{engine}/{backend}"
                cache = caches.setdefault(name, Path(tempfile.mkdtemp(prefix="verdicts-")))
                results.setdefault(name, []).append(
                    pipeline_rate(root, tokenizer, engine, backend, i, cache))

    base = statistics.median(r["tokens_per_s"] for r in results["raw hf"])
    print(f"\n{'':14}{'tokens/s':>12}{'ratio':>8}{'seconds':>9}{'CPU s':>8}{'worker RSS':>12}"
          f"{'driver RSS':>12}{'checks':>9}  backend ran")
    for name, rows in results.items():
        rate = statistics.median(r["tokens_per_s"] for r in rows)
        line = (f"{name:14}{rate:12,.0f}{rate / base:8.2f}"
                f"{statistics.median(r['seconds'] for r in rows):9.2f}")
        if "worker_peak_mb" in rows[0]:
            share = statistics.median(r["check_share"] for r in rows)
            line += (f"{statistics.median(r['cpu_s'] for r in rows):8.1f}"
                     f"{max(r['worker_peak_mb'] for r in rows):10.0f}MB"
                     f"{max(r['driver_peak_mb'] for r in rows):10.0f}MB"
                     f"{100 * share:8.1f}%  {rows[0]['backend']}")
        print(line)
    first = [r for name, rows in results.items() if "/" in name for r in rows[:1]]
    cold = [r["check_share"] for r in first if r["backend"] == "fastokens"]
    if cold:
        print(f"\nchecks in a first run (empty verdict cache): "
              f"{100 * max(cold):.1f}% of its CPU time at most")
    reference = next((rows[0]["out"] for name, rows in results.items()
                      if name.endswith("/hf")), None)
    if reference is not None:
        expected = tree(reference)
        same = all(tree(r["out"]) == expected for name, rows in results.items()
                   if "/" in name for r in rows)
        print(f"shards and manifests byte-identical to the hf run: {'yes' if same else 'NO'}")
    print("\nratio = tokens/s (command start to committed manifest for engines) / raw hf "
          f"encode_batch_fast tokens/s on {cores} threads, same corpus, same run; checks = "
          "qualification + per-unit HF re-checks, as a share of the run's CPU time (every "
          "process of the run)")
    print("runs:", json.dumps({k: [round(r["tokens_per_s"]) for r in v]
                               for k, v in results.items()}))


if __name__ == "__main__":
    main()
