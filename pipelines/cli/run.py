"""``tokenyard run``: run a job to a committed dataset, resuming what is done."""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from pipelines.cli.display import BarProgress, duration, human, human_bytes
from pipelines.config import load_job

log = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def add_job_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="the job file (YAML)")
    p.add_argument("--engine", choices=["local", "dask", "spark"],
                   help="override engine.kind: where the units run")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="override engine.workers: worker processes of an embedded cluster "
                        "(local, a Dask LocalCluster, Spark local[N])")
    p.add_argument("--output", metavar="URI",
                   help="override output.uri: the prefix the shards and manifest go to")
    p.add_argument("--on-error", choices=["fail", "skip"],
                   help="override on_error: stop at a bad record, or reject it and go on")
    p.add_argument("--tokenizer-backend", choices=["auto", "fastokens", "hf"],
                   help="override tokenizer.backend: hf is the reference, fastokens the fast "
                        "one (fails if it cannot run the tokenizer), auto uses fastokens where "
                        "it loads the file and passes the identity checks; output bytes are "
                        "the same")


def job_from_args(args: argparse.Namespace):
    from pipelines import uris

    job = load_job(args.job)
    if args.output is not None:
        uris.check_location(args.output, "--output")
    scheduler = getattr(args, "scheduler", None)
    master = getattr(args, "master", None)
    if scheduler is not None:
        uris.check_scheduler_address(scheduler, "--scheduler")
    if master is not None:
        uris.check_spark_master(master, "--master")
    return job.with_overrides(**{
        "engine.kind": args.engine,
        "engine.workers": args.workers,
        "output.uri": args.output,
        "on_error": args.on_error,
        "tokenizer.backend": args.tokenizer_backend,
        "engine.scheduler_address": scheduler,
        "engine.spark_master": master,
    })


RESTART_HELP = ("start over: delete what earlier runs wrote under the output prefix (its "
                "plan, unit markers, shards, rejects and manifest, even a committed dataset; "
                "run records under _runs/ stay), saying what it deletes first, then run afresh")


def register(sub) -> None:
    p = sub.add_parser("run", help="run a job (resumes what is done)",
                       description="Run a job to a committed dataset. Units already done are "
                                   "skipped; a committed dataset is left as it is.")
    add_job_overrides(p)
    p.add_argument("--restart", action="store_true", help=RESTART_HELP)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="engine dask: a running scheduler (tcp://host:8786) instead of an "
                        "embedded LocalCluster")
    p.add_argument("--master", metavar="URL",
                   help="engine spark: the Spark master URL (local[N], spark://host:7077, "
                        "k8s://...)")
    p.add_argument("--cluster", choices=["local", "kubernetes"], default="local",
                   help="engine dask: where the workers run (kubernetes needs --profile)")
    p.add_argument("--profile", help="with --cluster kubernetes: a Dask worker profile "
                                     "(cluster_specs/dask/<profile>.yaml)")
    p.add_argument("--keep-cluster", action="store_true",
                   help="with --cluster kubernetes: leave the cluster running at the end")
    p.set_defaults(handler=handle)


def check_engine_options(args: argparse.Namespace, job) -> None:
    """Refuse command-line options that do nothing for the chosen engine, and warn about
    job-file settings the run will not use."""
    from pipelines.errors import ConfigError

    kind = job.engine.kind
    kube = args.cluster == "kubernetes"
    refused = []
    if args.scheduler is not None and kind != "dask":
        refused.append(f"--scheduler is for engine dask, and the engine is {kind}")
    if args.master is not None and kind != "spark":
        refused.append(f"--master is for engine spark, and the engine is {kind}")
    if kube and kind != "dask":
        refused.append(f"--cluster kubernetes works with engine dask, and the engine is {kind} "
                       "(for Spark on Kubernetes use 'tokenyard render spark')")
    if kube and not args.profile:
        refused.append("--cluster kubernetes needs --profile cluster_specs/dask/<profile>.yaml")
    if not kube and args.profile:
        refused.append("--profile is used only with --cluster kubernetes")
    if not kube and args.keep_cluster:
        refused.append("--keep-cluster is used only with --cluster kubernetes")
    if kube and args.scheduler is not None:
        refused.append("--scheduler and --cluster kubernetes each name the cluster; give one")
    if args.workers is not None and (kube or (kind == "dask" and job.engine.scheduler_address)):
        refused.append("--workers sizes an embedded cluster; an existing scheduler or a "
                       "Kubernetes profile decides its own workers")
    if args.workers is not None and kind == "spark" and job.engine.spark_master and \
            not job.engine.spark_master.startswith("local["):
        refused.append(f"--workers sizes local[N]; the Spark master "
                       f"{job.engine.spark_master} decides its own executors")
    if refused:
        raise ConfigError("; ".join(refused) + ".",
                          hint="Drop the option, or choose the engine it belongs to with "
                               "--engine.")
    from pipelines.config import EngineConfig

    defaults = EngineConfig()
    embedded_dask = kind == "dask" and not kube and not job.engine.scheduler_address
    ignored = []
    if kind != "dask" and args.scheduler is None and job.engine.scheduler_address:
        ignored.append("engine.scheduler_address (engine dask only)")
    if kube and job.engine.scheduler_address:
        ignored.append("engine.scheduler_address (--cluster kubernetes makes the cluster)")
    if kind != "spark" and args.master is None and job.engine.spark_master:
        ignored.append("engine.spark_master (engine spark only)")
    if args.workers is None and job.engine.workers and kind == "dask" and not embedded_dask:
        ignored.append("engine.workers (an embedded cluster only; the scheduler or the "
                       "Kubernetes profile decides)")
    for key in ("memory_per_worker", "dashboard_address"):
        if not embedded_dask and getattr(job.engine, key) != getattr(defaults, key):
            ignored.append(f"engine.{key} (an embedded Dask LocalCluster only)")
    if ignored:
        log.warning("%s: engine %s does not use %s", args.job, kind, " or ".join(ignored))


def _engine_kwargs(args, job) -> dict:
    if args.cluster != "kubernetes":
        return {}
    from pipelines.kube.cluster import check_kube_cluster, make_kube_cluster

    check_kube_cluster(job, args.profile)  # offline checks and credentials, before any write
    return {"make_cluster": functools.partial(make_kube_cluster, job, args.profile,
                                              keep_cluster=args.keep_cluster),
            "close_cluster": True}


def print_summary(summary, out=None) -> None:
    """The closing lines of a run: the dataset's totals, then what this run did."""
    from pipelines import layout

    out = out if out is not None else sys.stdout
    if summary.already_committed:
        print(f"{summary.output_uri} is committed already: {human(summary.documents)} documents, "
              f"{human(summary.tokens)} tokens. Nothing to do.", file=out)
        return
    print(f"committed {layout.manifest_uri(summary.output_uri)}", file=out)
    print(f"  units      {summary.units} ({summary.units_run} run now, {summary.units_skipped} "
          f"done before)", file=out)
    print(f"  documents  {summary.documents:,}", file=out)
    print(f"  tokens     {summary.tokens:,}", file=out)
    print(f"  rejected   {summary.rejected:,}"
          + (f" (see {layout.file_uri(summary.output_uri, layout.REJECTS)}/)"
             if summary.rejected else ""), file=out)
    print(f"  this run   {summary.units_run} unit(s), {summary.run_tokens:,} tokens from "
          f"{human_bytes(summary.run_input_bytes)} in {duration(summary.seconds)}: "
          f"{human(summary.tokens_per_s)} tokens/s, {summary.input_mb_per_s:.1f} MB/s", file=out)
    if summary.retries:
        print(f"  retries    {summary.retries}", file=out)


def handle(args: argparse.Namespace) -> int:
    from pipelines.run import run_job

    job = job_from_args(args)
    check_engine_options(args, job)
    engine_kwargs = _engine_kwargs(args, job)
    progress = BarProgress()
    progress.note(f"job {job.name}: {job.input.uri} -> {job.output.uri} "
                  f"(engine {job.engine.kind}, format {job.output.format})")
    summary = run_job(job, restart=args.restart, progress=progress, engine_kwargs=engine_kwargs)
    print_summary(summary)
    return 0
