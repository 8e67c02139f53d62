"""The ``tokenyard`` command line: the only part of the package that prints.

Each subcommand lives in a module of this package that defines ``register(subparsers)``;
the handler it sets returns an exit status. Errors that tokenyard raises on purpose
print as one paragraph; anything else is a bug and says so. ``--debug`` (before or after
the subcommand) adds the traceback and debug logs and never changes the exit status:
0 is success, 1 a failed run (or a bug), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import textwrap
import traceback

from pipelines import __version__
from pipelines.errors import TokenyardError, describe_failure

#: subcommand modules, in the order ``--help`` lists them
COMMANDS = (
    "run",
    "plan",
    "status",
    "verify",
    "sample",
    "train_tokenizer",
    "kube",
    "cost",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenyard",
        description="Turn raw text in object storage into tokenized shards for training.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"tokenyard {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pipelines.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"pipelines.cli.{name}":
                continue
            raise
        module.register(sub)
    for command in sub.choices.values():
        # also after the subcommand; SUPPRESS keeps a --debug given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=DEBUG_HELP)
    return parser


DEBUG_HELP = "show tracebacks and debug logs (the exit status stays the same)"
#: Dask's loggers quieted in non-debug runs: a worker's "Compute Failed" report (with its
#: traceback) and its state machine's notes would bury the one message that says what
#: failed; embedded workers take the driver's level (``engines.dask``)
QUIET_LOGGERS = ("distributed.worker",)


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


class StderrHandler(logging.StreamHandler):
    """Log records to the ``sys.stderr`` of the moment (never a stream closed since)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler sets it; the property decides
        pass


def fail(message: str, code: int) -> int:
    width = 100
    print("\n".join(textwrap.wrap("error: " + message, width, break_long_words=False,
                                  break_on_hyphens=False)), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    level = os.environ.get("TOKENYARD_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    if logging.getLevelName(level.upper()) not in range(0, 51) or not level.strip():
        return fail(f"TOKENYARD_LOGGING_LEVEL {level!r} is not a log level; use DEBUG, INFO, "
                    "WARNING or ERROR.", 2)
    level = level.upper()
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactCredentials())
        root.addHandler(handler)
    root.setLevel(level)
    if not debug:
        # Dask logs every worker start and stop at INFO, and each failed task with its
        # traceback; the progress bar and the one error paragraph say what matters. Read
        # when distributed is first imported, here and in worker processes.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        if "dask" in sys.modules:  # else dask reads the variable when first imported
            import dask

            dask.config.set({"logging.distributed": os.environ["DASK_LOGGING__DISTRIBUTED"]})
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return int(args.handler(args) or 0)
    except TokenyardError as err:
        if debug:
            traceback.print_exc()
        return fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        print("\ninterrupted: finished units are kept; run the same command again to resume.",
              file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so, in one paragraph; the traceback with --debug
        if debug:
            traceback.print_exc()
        return fail(describe_failure(err), 1)


if __name__ == "__main__":
    sys.exit(main())
