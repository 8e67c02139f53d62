"""The README's "What will it cost?" example, and how well calibration predicts a run.

Builds a stand-in for a JSONL corpus (generated English prose and code, ``--mb`` MB in
``--files`` uncompressed files) and a ``--vocab`` byte-level BPE trained on the same
kind of text, writes a job with 128 MiB units, then:

  (a) runs ``tokenyard cost JOB --profile P --assume-input-bytes 1TB --simulate R
      --sensitivity`` (``--repeat`` times; calibration is timed, so medians are printed)
      and prints the last report in full;
  (b) checks the calibration against a real run of the stand-in: ``tokenyard cost
      --calibrate`` without ``--assume-input-bytes`` predicts the corpus's tokens and its
      units' work; ``tokenyard run --engine local --workers 1`` then tokenizes it, and
      the ratios of real to predicted tokens, CPU-seconds (the whole command's and its
      workers', sampled with psutil) and unit seconds (the run record's ``unit_seconds``: wall seconds in
      the worker) are printed. The prediction's 0.5 s per unit for S3 round trips is left
      out, as a local run makes none.

    python benchmarks/cost_example.py                    # 64 MB, 32k vocabulary, 1 TB
    python benchmarks/cost_example.py --backend hf       # the reference tokenizer backend
    python benchmarks/cost_example.py --mb 128 --repeat 5 --assume 5TB --workers 160
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_corpus(root: Path, total_mb: int, files: int) -> None:
    from pipelines.testing.corpus import write_jsonl

    for i in range(files):
        write_jsonl(root / "raw" / f"part-{i:03d}.jsonl", total_mb * 10**6 // files,
                    seed=100 + i, id_prefix=f"p{i}")


def make_tokenizer(root: Path, vocab: int) -> Path:
    from pipelines.testing.corpus import documents
    from pipelines.train import train_bpe

    path = root / "tokenizer.json"
    path.write_bytes(train_bpe(documents(8 * 10**6, seed=99), vocab_size=vocab,
                               special_tokens=["<|endoftext|>"]))
    return path


def cpu_of_tree(args: list[str]) -> float:
    """Run ``tokenyard ARGS``; the CPU-seconds of it and every process under it (sampled
    every 20 ms with psutil, so processes forked by a server are counted too)."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                t = p.cpu_times()
                seen[p.pid] = max(seen.get(p.pid, 0.0), t.user + t.system)
            except psutil.Error:
                continue
        time.sleep(0.02)
    if proc.wait() != 0:
        raise SystemExit(f"tokenyard {' '.join(args)} failed: {proc.stderr.read()[-2000:]}")
    return sum(seen.values())


def tokenyard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO,
                          capture_output=True, text=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32_000)
    ap.add_argument("--assume", default="1TB")
    ap.add_argument("--workers", type=int, default=80)
    ap.add_argument("--profile", default="cluster_specs/dask/compute-1cpu.yaml")
    ap.add_argument("--simulate", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", default="auto", choices=("auto", "fastokens", "hf"),
                    help="the job's tokenizer.backend")
    ap.add_argument("--skip-run", action="store_true", help="leave out (b)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tokenyard-cost-example-"))
    make_corpus(root, args.mb, args.files)
    tokenizer = make_tokenizer(root, args.vocab)
    job = root / "job.yaml"
    job.write_text(yaml.safe_dump({
        "name": "cost-example", "input": {"uri": str(root / "raw"), "id_field": "id"},
        "tokenizer": {"path": str(tokenizer), "backend": args.backend},
        "output": {"uri": str(root / "out")},
        "plan": {"target_unit_bytes": "128MiB"}}))
    common = ["cost", str(job), "--profile", args.profile, "--workers", str(args.workers)]
    print(f"corpus: {args.mb} MB of generated JSONL in {args.files} files, "
          f"{args.vocab}-token byte-level BPE, under {root}")

    reports = []
    text = ""
    for _ in range(args.repeat):
        done = tokenyard(*common, "--assume-input-bytes", args.assume,
                         "--simulate", str(args.simulate), "--json")
        reports.append(json.loads(done.stdout))
    text = tokenyard(*common, "--assume-input-bytes", args.assume, "--simulate",
                     str(args.simulate), "--sensitivity").stdout
    print(f"\n(a) {args.assume} on {args.profile}, {args.workers} workers: medians of "
          f"{args.repeat} calibrations")
    for key in ("tokens", "cpu_seconds", "wall_seconds", "usd", "on_demand_usd", "spot_usd",
                "usd_per_billion_tokens"):
        print(f"    {key:24} {statistics.median(r[key] for r in reports):,.4g}")
    sims = [r["simulation"] for r in reports]
    for key in ("p50_wall_seconds", "p90_wall_seconds", "p50_usd", "p90_usd",
                "rework_cpu_seconds", "on_demand_share"):
        print(f"    simulation {key:24} {statistics.median(s[key] for s in sims):,.4g}")
    rates = [r["calibration"]["tokens_per_cpu_second"] for r in reports]
    print(f"    tokens per CPU-second: median {statistics.median(rates):,.0f} "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    print("\nlast report:\n" + text)

    if args.skip_run:
        return 0
    rows = []
    for i in range(args.repeat):
        out = root / f"out-{i}"
        run_job = root / f"job-{i}.yaml"
        spec = yaml.safe_load(job.read_text())
        spec["output"]["uri"] = str(out)
        run_job.write_text(yaml.safe_dump(spec))
        predicted = json.loads(tokenyard("cost", str(run_job), "--profile", args.profile,
                                         "--workers", "1", "--calibrate", "--json").stdout)
        cpu = cpu_of_tree(["run", str(run_job), "--engine", "local", "--workers", "1"])
        [record] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
        overhead = predicted["units"] * predicted["calibration"]["unit_overhead_seconds"]
        work = predicted["cpu_seconds"] - overhead
        rows.append((record["tokens"] / predicted["tokens"], cpu / work,
                     record["unit_seconds"] / work, work, cpu, record["backend"]))
    print(f"(b) calibration against {args.repeat} real runs of the {args.mb} MB stand-in, one "
          f"worker, backend {rows[0][5]} (ratio of real to predicted: median, min, max):")
    for name, k in (("tokens", 0), ("CPU-seconds of the whole command (start-up, planning, "
                                    "the backend's check and commit included)", 1),
                    ("wall seconds of the units in the worker (unit_seconds)", 2)):
        values = [r[k] for r in rows]
        print(f"    {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})  "
              f"{name}")
    print("    predicted CPU-s " + ", ".join(f"{r[3]:.1f}" for r in rows)
          + "; real CPU-s " + ", ".join(f"{r[4]:.1f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
