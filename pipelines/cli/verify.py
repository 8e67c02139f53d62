"""``tokenyard verify``: re-check a committed dataset against its manifest."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pipelines.cli.display import human, human_bytes

if TYPE_CHECKING:
    from pipelines.storage import StorageOptions


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


def output_location(args: argparse.Namespace) -> "StorageOptions":
    """Check the OUTPUT argument and --endpoint-url; the storage options they give."""
    from pipelines import layout, storage, uris
    from pipelines.errors import ConfigError

    uris.check_location(args.output, "OUTPUT")
    if args.endpoint_url is not None:
        uris.check_endpoint(args.endpoint_url, "--endpoint-url")
    if storage.is_local(args.output):
        path = args.output.removeprefix("file://")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"OUTPUT {args.output} is a file; give the output folder of a "
                              f"job (its output.uri), where {layout.MANIFEST} and "
                              f"{layout.PLAN} are.")
    return storage.StorageOptions(endpoint_url=args.endpoint_url)


def handle(args: argparse.Namespace) -> int:
    from pipelines.verify import verify

    storage_options = output_location(args)
    report = verify(args.output, storage_options)
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
