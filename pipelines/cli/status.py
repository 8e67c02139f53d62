"""``tokenyard status``: units done and pending, counts, and whether it is committed."""

from __future__ import annotations

import argparse

from pipelines.cli.display import human


def register(sub) -> None:
    p = sub.add_parser("status", help="show the state of an output prefix")
    p.add_argument("output", help="the output URI of a job (its output.uri)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (or AWS_ENDPOINT_URL)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines.cli.verify import output_location
    from pipelines.commit import status

    storage_options = output_location(args)
    st = status(args.output.rstrip("/"), storage_options)
    if not st.planned:
        print(f"{st.output_uri}: no tokenyard plan here (nothing has run against this prefix)")
        return 1
    state = "committed" if st.committed else ("complete, not committed" if st.pending == 0
                                              else "in progress or stopped")
    print(f"{st.output_uri}: job {st.job}, {state}")
    print(f"  units      {st.done} done, {st.pending} pending, {st.units} in all")
    print(f"  documents  {st.documents:,} ({human(st.documents)})")
    print(f"  tokens     {st.tokens:,} ({human(st.tokens)})")
    print(f"  records    {st.records:,} read, {st.rejected:,} rejected")
    print(f"  fingerprint {st.fingerprint[:16]}")
    return 0
