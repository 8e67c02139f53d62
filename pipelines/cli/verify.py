"""``tokenyard verify``: re-check a committed dataset against its manifest."""

from __future__ import annotations

import argparse
import sys

from pipelines.cli.display import human, human_bytes


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-check a committed dataset: files, checksums, "
                                      "idx vs bin, counts, vocabulary",
                       description="Re-check a committed dataset as a trainer would: every "
                                   "shard present with its size and sha256, indexes "
                                   "consistent with token files, counts reconciled, token "
                                   "ids within the vocabulary. Exit 1 listing every problem.")
    p.add_argument("output", help="the output URI of a job (where manifest.json is)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (or AWS_ENDPOINT_URL)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines import storage
    from pipelines.verify import verify

    opts = storage.storage_options(endpoint_url=args.endpoint_url)
    report = verify(args.output, opts)
    if report.problems:
        print(f"{report.output_uri}: FAILED verification, {len(report.problems)} problem(s):",
              file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{report.output_uri}: OK: {report.shards} shards, {report.files} files "
          f"({human_bytes(report.bytes)}), {human(report.documents)} documents, "
          f"{human(report.tokens)} tokens")
    return 0
