"""``tokenyard render``, ``tokenyard validate`` and ``tokenyard check-scheduling``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pipelines.config import load_job
from pipelines.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    render = subparsers.add_parser(
        "render", help="print the Kubernetes objects that run a job (YAML to stdout)",
        description="Print the Kubernetes objects that run JOB with a worker profile.")
    render.add_argument("engine", choices=("dask", "spark"),
                        help="dask: a DaskCluster (or DaskJob); spark: spark-submit "
                             "configuration and pod templates (or a SparkApplication)")
    render.add_argument("job", metavar="JOB", help="a job YAML file")
    render.add_argument("--profile", required=True,
                        help="a profile under cluster_specs/dask/ or cluster_specs/spark/")
    render.add_argument("--job", dest="as_job", action="store_true",
                        help="dask: a DaskJob (and its job ConfigMap) that runs the job "
                             "inside the cluster, instead of a DaskCluster")
    render.add_argument("--operator", action="store_true",
                        help="spark: a SparkApplication for the Spark operator, instead of "
                             "spark-submit configuration and pod templates")
    render.add_argument("--output-dir", type=Path,
                        help="spark-submit: write spark.conf, the pod templates and the job "
                             "ConfigMap to this folder")
    render.set_defaults(handler=_render)

    validate = subparsers.add_parser(
        "validate", help="check manifests, profiles and job files offline",
        description="Check files offline against the upstream schemas; with no PATH, every "
                    "YAML under nodepools/, cluster_specs/ and jobs/ and every rendered object.")
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                          help="manifests, profiles or job files to check (default: all "
                               "shipped ones and every rendered object)")
    validate.add_argument("--schema-dir", type=Path,
                          help="upstream schemas (default: $TOKENYARD_SCHEMA_DIR, else "
                               "../shared/schemas)")
    validate.set_defaults(handler=_validate)

    check = subparsers.add_parser(
        "check-scheduling", help="which NodePools can run each pod of a job, offline",
        description="For every pod the job would create, which NodePools can take it, "
                    "spot or on-demand, and why the others cannot.")
    check.add_argument("job", metavar="JOB", help="a job YAML file")
    check.add_argument("--profile", required=True,
                       help="a profile under cluster_specs/dask/ or cluster_specs/spark/")
    check.add_argument("--nodepools", type=Path, default=Path("nodepools"),
                       help="folder of NodePool manifests (default: nodepools/)")
    check.add_argument("--prices", type=Path,
                       help='JSON of on-demand prices, e.g. {"m6i.xlarge": 0.192}, for '
                            "absolute hourly estimates")
    check.set_defaults(handler=_check)


def _render(args: argparse.Namespace) -> int:
    from pipelines.kube.capacity.profiles import load_dask_profile, load_spark_profile
    from pipelines.kube.render import dask, spark, yamlio

    job = load_job(args.job)
    if args.engine == "dask":
        if args.operator or args.output_dir:
            raise ConfigError("--operator and --output-dir are for render spark.")
        profile = load_dask_profile(args.profile)
        dask.plan(job, profile, source=args.profile)  # a profile's errors name the profile
        sys.stdout.write(yamlio.dump_all(dask.render(job, profile, as_job=args.as_job,
                                                     source=args.job)))
        return 0
    if args.as_job:
        raise ConfigError("--job is for render dask; for Spark, the driver always runs the job.")
    profile = load_spark_profile(args.profile)
    if args.operator:
        sys.stdout.write(yamlio.dump_all(spark.render_operator(job, profile, source=args.job)))
        return 0
    submit = spark.render_submit(job, profile, source=args.job)
    command = shlex.join(submit.command)
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in submit.files().items():
            (args.output_dir / name).write_text(text, encoding="utf-8")
        print(f"# wrote {', '.join(submit.files())} to {args.output_dir}; then:")
        print(f"kubectl apply -f {args.output_dir / 'job-configmap.yaml'}")
        print(f"cd {args.output_dir} && {command}")
        return 0
    header = ("spark-submit in cluster mode. Save the pod templates below as "
              f"{spark.DRIVER_TEMPLATE_FILE} and\n{spark.EXECUTOR_TEMPLATE_FILE}, the "
              f"configuration as {spark.PROPERTIES_FILE} (or use --output-dir DIR), apply the\n"
              f"ConfigMap, then run:\n\n  {command}\n\n{spark.PROPERTIES_FILE}:\n\n"
              + "".join(f"  {k} {v}\n" for k, v in submit.conf.items()))
    sys.stdout.write(yamlio.dump_all(submit.objects(), header=header))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pipelines.kube.checks.validate import validate

    problems, checked = validate(args.paths or None, root=Path.cwd(), schema_dir=args.schema_dir)
    for problem in problems:
        print(problem)
    what = "file(s)" if args.paths else "file(s) and rendered object(s)"
    print(f"{checked} {what} checked, {len(problems)} problem(s).",
          file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def _check(args: argparse.Namespace) -> int:
    from pipelines.kube.capacity.profiles import DaskProfile, load_profile
    from pipelines.kube.checks import feasibility
    from pipelines.kube.render import dask, spark

    job = load_job(args.job)
    profile = load_profile(args.profile)
    if isinstance(profile, DaskProfile):
        plan = dask.plan(job, profile, source=args.profile)
        pods = plan.pods(with_runner=True)
        sizes = {"scheduler": plan.scheduler, "worker": plan.worker, "job runner": plan.runner}
    else:
        plan = spark.plan(job, profile, source=args.profile)
        pods = plan.pods()
        sizes = {"driver": plan.driver, "executor": plan.executor}
    for role, size in sizes.items():
        if size.shrunk:  # said, never silent
            print(f"note: {role}: {size.describe()}")
    pools = feasibility.load_pools(args.nodepools)
    prices = feasibility.load_prices(args.prices) if args.prices else {}
    verdicts = feasibility.check(pods, pools)
    for verdict in verdicts:
        _print_verdict(verdict, prices)
    stuck = [v.pod.role for v in verdicts if not v.schedulable]
    if stuck:
        print(f"error: {', '.join(stuck)} would stay Pending forever: no NodePool can take "
              "it (see above).", file=sys.stderr)
        return 1
    return 0


def _print_verdict(verdict, prices: dict[str, float]) -> None:
    pod = verdict.pod
    selector = ", ".join(f"{k}={v}" for k, v in pod.node_selector.items()) or "none"
    print(f"{pod.role}: requests {verdict.request_text()}; node selector {selector}")
    for fit in verdict.fits:
        fallback = f", falls back to {fit.fallback} when spot has no capacity" if fit.fallback else ""
        print(f"  ok    {fit.pool.name}: {len(fit.instance_types)} instance types; Karpenter "
              f"tries {fit.first_choice} first{fallback}")
        print(f"        {fit.spot_summary()}")
        spot = "spot" in fit.pool.capacity_types
        examples = fit.best() if spot else sorted(fit.instance_types,
                                                  key=lambda i: (i.vcpu, i.name))[:5]
        for i in examples:
            price = ""
            if i.name in prices:
                od = prices[i.name]
                price = f", on-demand ${od:.3f}/h"
                if spot and i.spot_savings_pct is not None:
                    price += f", spot about ${od * (1 - i.spot_savings_pct / 100):.3f}/h"
            saving = (f", spot -{i.spot_savings_pct}%, interruption {i.interruption}"
                      if spot and i.spot_savings_pct is not None else "")
            print(f"        {i.name}: {i.vcpu} vCPU, {i.memory_mib // 1024} GiB{saving}{price}")
    for name, reasons in verdict.rejected.items():
        print(f"  no    {name}: " + "; ".join(reasons))
