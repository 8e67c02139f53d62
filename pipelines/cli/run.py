"""``tokenyard run``: run a job to a committed dataset, resuming what is done."""

from __future__ import annotations

import argparse
import sys

from pipelines.cli.display import BarProgress, duration, human, human_bytes
from pipelines.config import load_job


def add_job_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--engine", choices=["local", "dask", "spark"], help="override engine.kind")
    p.add_argument("--workers", type=int, help="override engine.workers")
    p.add_argument("--output", help="override output.uri")
    p.add_argument("--on-error", choices=["fail", "skip"], help="override on_error")
    p.add_argument("--tokenizer-backend", choices=["auto", "fastokens", "hf"],
                   help="override tokenizer.backend: hf is the reference, fastokens the fast "
                        "one (fails if it cannot run the tokenizer), auto uses fastokens where "
                        "it loads the file and passes the identity checks; output bytes are "
                        "the same")


def job_from_args(args: argparse.Namespace):
    job = load_job(args.job)
    return job.with_overrides(**{
        "engine.kind": args.engine,
        "engine.workers": args.workers,
        "output.uri": args.output,
        "on_error": args.on_error,
        "tokenizer.backend": args.tokenizer_backend,
        "engine.scheduler_address": getattr(args, "scheduler", None),
        "engine.spark_master": getattr(args, "master", None),
    })


def register(sub) -> None:
    p = sub.add_parser("run", help="run a job (resumes what is done)",
                       description="Run a job to a committed dataset. Units already done are "
                                   "skipped; a committed dataset is left as it is.")
    add_job_overrides(p)
    p.add_argument("--restart", action="store_true",
                   help="delete another job's output under the prefix and start over")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="engine dask: a running scheduler (tcp://host:8786)")
    p.add_argument("--master", metavar="URL", help="engine spark: the Spark master URL")
    p.add_argument("--cluster", choices=["local", "kubernetes"], default="local",
                   help="engine dask: where the workers run (kubernetes needs --profile)")
    p.add_argument("--profile", help="a Dask worker profile under cluster_specs/ "
                                     "(with --cluster kubernetes)")
    p.add_argument("--keep-cluster", action="store_true",
                   help="with --cluster kubernetes: leave the cluster running at the end")
    p.set_defaults(handler=handle)


def _engine_kwargs(args, job) -> dict:
    if args.cluster != "kubernetes":
        return {}
    from pipelines.errors import ConfigError

    if job.engine.kind != "dask":
        raise ConfigError("--cluster kubernetes works with engine dask; for Spark on "
                          "Kubernetes use 'tokenyard render spark'.")
    if not args.profile:
        raise ConfigError("--cluster kubernetes needs --profile cluster_specs/dask/<profile>.yaml.")
    from pipelines.kube.cluster import make_kube_cluster

    cluster, note = make_kube_cluster(job, args.profile, keep_cluster=args.keep_cluster)
    return {"cluster": cluster, "cluster_note": note, "close_cluster": True}


def handle(args: argparse.Namespace) -> int:
    from pipelines.run import run_job

    job = job_from_args(args)
    progress = BarProgress()
    progress.note(f"job {job.name}: {job.input.uri} -> {job.output.uri} "
                  f"(engine {job.engine.kind}, format {job.output.format})")
    summary = run_job(job, restart=args.restart, progress=progress,
                      engine_kwargs=_engine_kwargs(args, job))
    out = sys.stdout
    if summary.already_committed:
        print(f"{summary.output_uri} is committed already: {human(summary.documents)} documents, "
              f"{human(summary.tokens)} tokens. Nothing to do.", file=out)
        return 0
    rate = summary.tokens_per_s
    print(f"committed {summary.output_uri}/manifest.json", file=out)
    print(f"  units      {summary.units} ({summary.units_run} run, {summary.units_skipped} "
          f"done before)", file=out)
    print(f"  documents  {summary.documents:,}", file=out)
    print(f"  tokens     {summary.tokens:,}", file=out)
    print(f"  rejected   {summary.rejected:,}"
          + (f" (see {summary.output_uri}/rejects/)" if summary.rejected else ""), file=out)
    print(f"  input      {human_bytes(summary.input_bytes)} in {duration(summary.seconds)}: "
          f"{human(rate)} tokens/s, {summary.input_bytes / 1e6 / max(summary.seconds, 1e-9):.1f} "
          f"MB/s", file=out)
    if summary.retries:
        print(f"  retries    {summary.retries}", file=out)
    return 0
