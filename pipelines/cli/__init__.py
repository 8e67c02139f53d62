"""The ``tokenyard`` command line: the only part of the package that prints.

Each subcommand lives in a module of this package that defines ``register(subparsers)``;
the handler it sets returns an exit status. Errors that tokenyard raises on purpose
print as one paragraph (``--debug`` shows the traceback); exit status 0 is success,
1 a failed run, 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import textwrap

from pipelines.errors import TokenyardError

#: subcommand modules, in the order ``--help`` lists them
COMMANDS = (
    "run",
    "plan",
    "status",
    "verify",
    "sample",
    "train_tokenizer",
    "kube",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenyard",
        description="Turn raw text in object storage into tokenized shards for training.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pipelines.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"pipelines.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


class RedactCredentials(logging.Filter):
    """Masks AWS credentials in log records: botocore's DEBUG logs print request headers,
    whose ``Authorization`` holds the access key id, and libraries may echo settings."""

    _PATTERN = re.compile(r"(Credential=)[^/,\s'\"]+|(Signature=)[0-9a-f]+"
                          r"|(X-Amz-Credential=)[^&\s'\"]+|(X-Amz-Security-Token=)[^&\s'\"]+")
    _ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._PATTERN.sub(
            lambda m: next(g for g in m.groups() if g) + "<redacted>", message)
        for name in self._ENV:
            value = os.environ.get(name)
            if value and len(value) >= 8:
                redacted = redacted.replace(value, "<redacted>")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def fail(message: str, code: int) -> int:
    width = 100
    print("\n".join(textwrap.wrap("error: " + message, width, break_long_words=False,
                                  break_on_hyphens=False)), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = os.environ.get("TOKENYARD_LOGGING_LEVEL", "DEBUG" if args.debug else "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactCredentials())
    if not args.debug:
        # Dask logs every worker start and stop at INFO; the progress bar says what matters.
        # Read when distributed is first imported, here and in worker processes.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        if "dask" in sys.modules:  # else dask reads the variable when first imported
            import dask

            dask.config.set({"logging.distributed": os.environ["DASK_LOGGING__DISTRIBUTED"]})
    try:
        return int(args.handler(args) or 0)
    except TokenyardError as err:
        if args.debug:
            raise
        return fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        print("\ninterrupted: finished units are kept; run the same command again to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
