"""Spark's main program in the tokenyard image: ``python -m pipelines`` with Spark's
application arguments (``run /etc/tokenyard/job.yaml --engine spark``)."""

import runpy

runpy.run_module("pipelines", run_name="__main__", alter_sys=True)
