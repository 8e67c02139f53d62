"""``tokenyard plan``: what a run would do, without touching anything."""

from __future__ import annotations

import argparse

from pipelines.cli.display import duration, human, human_bytes
from pipelines.cli.run import add_job_overrides, job_from_args


def register(sub) -> None:
    p = sub.add_parser("plan", help="show the work units, bytes and an estimate; writes nothing")
    add_job_overrides(p)
    p.add_argument("--units", type=_count, default=20, metavar="N",
                   help="list at most N units (default 20; 0 for all)")
    p.set_defaults(handler=handle)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def _output_state(found) -> str:
    """What a run would find under the output prefix, in a few words."""
    from pipelines import commit

    if found.committed:
        totals = found.manifest.totals
        return (f"committed already ({totals.documents:,} documents, {totals.tokens:,} "
                "tokens): a run does nothing")
    if found.differences:
        return ("holds another job's plan (" + "; ".join(found.differences) + "): a run "
                "refuses; --restart deletes it first")
    if found.saved is None:
        return "empty: a run starts here"
    done = commit.done_units(found.plan, found.output_uri, found.storage_options)
    return f"{len(done)} of {len(found.plan.units)} units done: a run resumes"


def handle(args: argparse.Namespace) -> int:
    import os

    from pipelines.plan import estimate
    from pipelines.run import choose_job_backend, storage_of, survey

    job = job_from_args(args)
    found = survey(job)
    plan = found.plan
    workers = job.engine.workers or os.cpu_count() or 1
    choice = choose_job_backend(job, plan, storage_of(job))
    est = estimate(plan, workers, choice.backend, job.engine.kind)
    print(f"job {plan.job}  fingerprint {plan.fingerprint[:16]}")
    print(f"inputs     {len(plan.inputs)} files, {human_bytes(sum(f.size for f in plan.inputs))}")
    target = plan.options.target_unit_bytes
    how = "auto, from the input size" if job.plan.target_unit_bytes == "auto" else "set"
    print(f"units      {len(plan.units)} (target {human_bytes(target)} each: {how})")
    tok = plan.tokenizer
    print(f"tokenizer  {tok.name} (vocab {tok.vocab_size}, {tok.dtype}, "
          f"sha256 {tok.sha256[:12]})")
    print(f"backend    {choice.backend} ({choice.reason})")
    print(f"output     {job.output.uri} ({job.output.format}): {_output_state(found)}")
    busy = "" if est.busy_workers >= workers else \
        f"; only {est.busy_workers} of them get a unit: set plan.target_unit_bytes lower"
    print(f"estimate   ~{human(est.tokens)} tokens, ~{duration(est.seconds)} on {workers} "
          f"{job.engine.kind} workers with {choice.backend} (rough: {human_bytes(est.text_bytes)} "
          f"of text{busy})")
    shown = plan.units if args.units == 0 else plan.units[:args.units]
    print()
    print(f"{'unit':>6}  {'bytes':>10}  slices")
    for u in shown:
        parts = []
        for s in u.slices:
            if s.whole_file or s.file.compression:
                parts.append(s.file.key)
            elif s.file.format == "parquet":
                parts.append(f"{s.file.key}[row groups {s.start}:{s.stop}]")
            else:
                parts.append(f"{s.file.key}[bytes {s.start}:{s.stop}]")
        listed = ", ".join(parts[:3]) + (f" +{len(parts) - 3} more" if len(parts) > 3 else "")
        print(f"{u.name:>6}  {human_bytes(u.input_bytes):>10}  {listed}")
    if len(shown) < len(plan.units):
        print(f"... {len(plan.units) - len(shown)} more units (--units 0 lists all)")
    return 0
