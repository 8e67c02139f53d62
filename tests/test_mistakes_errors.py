"""Errors classified by cause: transient stays transient, a user's mistake is exit 2
naming the file and key, a bug is a bug (its traceback under ``--debug``), never
"could not read"."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
from botocore.exceptions import ClientError

from pipelines import storage
from pipelines.config import parse_job
from pipelines.engines.base import retryable
from pipelines.errors import (
    RunFailedError,
    StorageAccessError,
    StorageError,
    TokenizerError,
    TransientStorageError,
)
from pipelines.run import read_tokenizer, run_job, storage_of
from tests.helpers import make_job, write_jsonl

BUGS = [TypeError("unsupported operand"), AttributeError("'NoneType' has no attribute 'x'"),
        KeyError("fingerprint"), ValueError("bad value"), IndexError("list index")]


@pytest.mark.parametrize("bug", BUGS, ids=lambda e: type(e).__name__)
def test_programming_errors_are_never_translated_nor_retried(bug):
    assert storage.translate_error(bug, "s3://b-1/k", "read") is bug
    calls = []

    def broken():
        calls.append(1)
        raise bug

    with pytest.raises(type(bug)) as err:
        storage.RetryPolicy(attempts=4, base_delay_s=0.01).call(broken, uri="s3://b-1/k",
                                                                operation="read")
    assert err.value is bug and calls == [1]


@pytest.mark.parametrize("failure", [
    ConnectionResetError(104, "reset"), FileNotFoundError(2, "gone"),
    PermissionError(13, "denied"),
    ClientError({"Error": {"Code": "SlowDown"}}, "GetObject"),
    ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"),
], ids=lambda e: type(e).__name__)
def test_storage_failures_are_translated(failure):
    assert isinstance(storage.translate_error(failure, "s3://b-1/k", "read"), StorageError)


def test_a_bug_in_a_write_surfaces_as_itself_locally_and_on_s3(s3, tmp_path):
    s3.bucket("out-bucket")
    for uri in (str(tmp_path / "x.json"), "s3://out-bucket/x.json"):
        with pytest.raises(TypeError):
            storage.write_bytes(uri, 123)  # type: ignore[arg-type]


@pytest.fixture
def fault(monkeypatch):
    """Replace the storage read of one URI by the error storage raises for ``cause``."""
    real = storage.read_bytes

    def inject(uri: str, cause: BaseException):
        def read_bytes(u, storage_options=None, **kw):
            if u == uri:
                raise storage.translate_error(cause, u, "read", storage_options) from cause
            return real(u, storage_options, **kw)

        monkeypatch.setattr(storage, "read_bytes", read_bytes)

    return inject


CAUSES = {
    "throttled": (ClientError({"Error": {"Code": "SlowDown"}}, "GetObject"),
                  TransientStorageError, True),
    "reset": (ConnectionResetError(104, "reset by peer"), TransientStorageError, True),
    "denied": (ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"),
               StorageAccessError, False),
}


@pytest.mark.parametrize("cause", sorted(CAUSES))
def test_loading_the_tokenizer_keeps_the_storage_error_class(tmp_path, tokenizer_file, fault,
                                                             cause):
    from pipelines.task import _tokenizer_bytes

    error, expected, transient = CAUSES[cause]
    fault(str(tokenizer_file), error)
    job = parse_job(make_job(str(tmp_path), str(tokenizer_file), str(tmp_path / "o")))
    with pytest.raises(expected) as err:  # on the driver
        read_tokenizer(job, storage_of(job))
    assert retryable(err.value) is transient
    _tokenizer_bytes.cache_clear()
    with pytest.raises(expected) as err:  # in a worker
        _tokenizer_bytes(str(tokenizer_file), "0" * 64, storage.StorageOptions())
    assert retryable(err.value) is transient and not isinstance(err.value, TokenizerError)


def test_a_tokenizer_gone_since_planning_is_a_tokenizer_error(tmp_path):
    from pipelines.task import _tokenizer_bytes

    with pytest.raises(TokenizerError, match="is gone"):
        _tokenizer_bytes(str(tmp_path / "gone.json"), "0" * 64, storage.StorageOptions())


def test_a_bug_as_first_failure_is_reported_as_a_bug():
    err = RunFailedError([3], KeyError("fingerprint"), "s3://out-bucket/x")
    assert "internal error in tokenyard (KeyError: 'fingerprint')" in str(err)
    assert "--debug" in str(err) and "this is a bug" in str(err)


def test_dask_killed_worker_is_a_transient_workers_lost_error():
    from distributed.scheduler import KilledWorker

    from pipelines.errors import WorkersLostError
    from pipelines.engines.dask import _lost
    from pipelines.records import WorkUnit

    lost = _lost(KilledWorker("tokenize-000003-ab", None, 20), WorkUnit(3, (), 0))
    assert isinstance(lost, WorkersLostError) and lost.transient and "000003" in str(lost)


def _is_pool_worker(process: psutil.Process) -> bool:
    """A process-pool worker: spawned, or forked by the fork server (not the server)."""
    if "spawn_main" in " ".join(process.cmdline()):
        return True
    parent = process.parent()
    return parent is not None and "multiprocessing.forkserver" in " ".join(parent.cmdline())


def _kill_pool_workers(stop: threading.Event) -> None:
    """SIGKILL every process-pool worker this test starts."""
    me, since = psutil.Process(), time.time() - 1
    while not stop.is_set():
        for child in me.children(recursive=True):
            try:
                if _is_pool_worker(child) and child.create_time() >= since:
                    os.kill(child.pid, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        time.sleep(0.01)


def test_a_local_pool_that_keeps_dying_fails_the_run_transiently(tmp_path, tokenizer_file,
                                                                 monkeypatch):
    """Not a bare RuntimeError: the units in flight fail with a transient WorkersLostError."""
    import pipelines.engines.local as local
    from pipelines.errors import WorkersLostError

    monkeypatch.setattr(local, "MAX_POOL_RESTARTS", 1)
    # enough work (about 11 MB: seconds, on the reference backend) that the run
    # cannot finish between a worker's start and the killer's next look
    words = " ".join(f"word{i} Wörter {i * 7} 😀" for i in range(120))
    write_jsonl(tmp_path / "raw" / "a.jsonl", [{"text": f"doc {i} {words}"} for i in range(3200)])
    job = parse_job(make_job(str(tmp_path / "raw"), str(tokenizer_file), str(tmp_path / "out"),
                             **{"engine.workers": 1, "tokenizer.backend": "hf"}))
    stop = threading.Event()
    killer = threading.Thread(target=_kill_pool_workers, args=(stop,), daemon=True)
    killer.start()
    try:
        with pytest.raises(RunFailedError) as err:
            run_job(job)
    finally:
        stop.set()
        killer.join()
    assert isinstance(err.value.first, WorkersLostError) and err.value.first.transient
    assert "worker processes died" in str(err.value)
