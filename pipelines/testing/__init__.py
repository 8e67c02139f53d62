"""A small public test kit for users, benchmarks and the quickstart.

* ``s3``: a real S3 HTTP API on loopback (moto's server) and the environment that points
  s3fs at it;
* ``corpus``: generated text and small tokenizers;
* ``measure``: peak memory of a command and its worker processes.

The fault-injection helpers (S3 fault proxy, Dask worker killer, execution log, driver
kill) are test code, in ``tests/faults/kit.py``. Nothing in the pipeline imports this
package.
"""
