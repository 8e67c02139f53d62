"""Does engine spark's one-job-per-unit design cost throughput? Measured in one session.

On one ``local[N]`` session (started once, so the JVM start is not counted), on the same
corpus and units, alternating, each into a fresh output prefix:

  (a) per-unit: ``SparkEngine.run``: one Spark job per unit from driver threads, about
      two jobs per task slot in flight, FAIR scheduler (what ``--engine spark`` does);
  (b) one-job:  a single Spark job with one partition per unit (no per-unit progress,
      the obvious alternative);

and, in the same run, the tokenizer's raw ``encode_batch_fast`` rate on every core.
Prints medians of ``--repeat`` runs as tokens/s and as a ratio of the raw rate.

    python benchmarks/spark_jobs.py --mb 64 --target-unit 4MiB --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--target-unit", default="4MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", help="keep (and reuse) the corpus and tokenizer here")
    args = parser.parse_args()

    os.environ.setdefault("PYTHONPATH", str(REPO))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from throughput import make_corpus, make_tokenizer, raw_rate

    from pipelines.config import parse_job
    from pipelines.engines.spark import SparkEngine, _task
    from pipelines.run import prepare, unit_options

    root = Path(args.workdir or tempfile.mkdtemp(prefix="tokenyard-spark-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    paths = sorted((root / "raw").glob("*.jsonl")) or make_corpus(root, args.mb, args.files)
    tokenizer = root / "tokenizer.json"
    if not tokenizer.exists():
        make_tokenizer(root, args.vocab)

    def job(out: str):
        return parse_job({
            "name": "bench-spark-jobs",
            "input": {"uri": str(root / "raw" / "*.jsonl"), "id_field": "id"},
            "tokenizer": {"path": str(tokenizer)},
            "output": {"uri": out},
            "plan": {"target_unit_bytes": args.target_unit},
            "engine": {"kind": "spark", "workers": args.workers},
        })

    rates: dict[str, list[float]] = {"raw": [], "per-unit": [], "one-job": []}
    with SparkEngine(job("x").engine, job_name="bench") as engine:
        sc = engine.spark.sparkContext
        sc.setLogLevel("ERROR")
        for i in range(args.repeat):
            rates["raw"].append(raw_rate(paths, tokenizer)["tokens_per_s"])
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            for mode in ("per-unit", "one-job"):
                out = str(root / f"out-{mode}-{time.time_ns()}")
                plan, storage_options, _ = prepare(job(out))
                options = unit_options(job(out), plan, storage_options)
                started = time.perf_counter()
                if mode == "per-unit":
                    outcome = engine.run(options, list(plan.units))
                    results = list(outcome.results.values())
                else:
                    answers = sc.parallelize([(options, u) for u in plan.units],
                                             len(plan.units)).map(_task).collect()
                    results = [r for r, _, _ in answers]
                seconds = time.perf_counter() - started
                tokens = sum(r.tokens for r in results)
                rates[mode].append(tokens / seconds)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()),
                  flush=True)

        slots = sc.defaultParallelism

    raw = statistics.median(rates["raw"])
    print(f"\n{len(plan.units)} units of {args.target_unit}, {slots} task slots, "
          f"median of {args.repeat}")
    for mode, values in rates.items():
        rate = statistics.median(values)
        print(f"{mode:9}{rate:12,.0f} tokens/s{rate / raw:8.2f}")


if __name__ == "__main__":
    main()
