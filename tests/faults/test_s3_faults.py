"""S3 misbehaving: a seeded fraction of requests answered with 503 SlowDown, 500s,
resets, stalls and truncated responses; then a sustained outage."""

from __future__ import annotations

import time

import pytest

from pipelines.config import parse_job
from pipelines.errors import RunFailedError, StorageError
from pipelines.run import run_job
from pipelines.storage import StorageOptions
from tests.faults.helpers import assert_verifies, make_job
from tests.faults.kit import FaultProxy


def upload_corpus(s3, corpus) -> tuple[str, str]:
    bucket = s3.bucket("raw")
    for p in sorted(corpus.raw.iterdir()):
        s3.put(f"{bucket}/in/{p.name}", p.read_bytes())
    s3.put(f"{bucket}/tokenizer.json", corpus.tokenizer.read_bytes())
    s3.bucket("out")
    return f"{bucket}/in/", f"{bucket}/tokenizer.json"


def s3_job(corpus, s3, endpoint: str, out: str = "s3://out/ds", **kw):
    """The job over S3 inputs, reached through ``endpoint``; runs the undisturbed
    reference into ``s3://out/ref`` first (S3 inputs have ETags, not mtimes, so the
    plan and markers differ from a local run's)."""
    inp, tok = upload_corpus(s3, corpus)
    ref = make_job(inp, tok, "s3://out/ref", target=corpus.target)
    ref["storage"] = {"endpoint_url": s3.endpoint}
    run_job(parse_job(ref))
    job = make_job(inp, tok, out, target=corpus.target, **kw)
    job["storage"] = {"endpoint_url": endpoint}
    return job


def committed(s3, out="s3://out/ds") -> dict[str, bytes]:
    return {k: v for k, v in s3.listing(out).items() if not k.startswith("_runs")}


def reference(s3) -> dict[str, bytes]:
    return committed(s3, "s3://out/ref")


@pytest.mark.parametrize("engine", ["local"])
def test_flaky_s3_changes_nothing(corpus12, s3, engine):
    with FaultProxy(s3.endpoint, rate=0.15, seed=3, stall_s=1.0) as proxy:
        job = parse_job(s3_job(corpus12, s3, proxy.endpoint, kind=engine))
        run_job(job)
        stats = dict(proxy.stats)
    print(f"\nrequests {stats.get('requests')}, faults injected {proxy.faults}: {stats}")
    assert proxy.faults >= 20
    assert all(stats.get(k, 0) > 0 for k in ("slowdown", "internal", "reset", "stall",
                                              "truncate"))
    assert committed(s3) == reference(s3)
    assert_verifies("s3://out/ds", StorageOptions(endpoint_url=s3.endpoint))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["503", "refuse"])
@pytest.mark.timeout(300)  # the bound: the retry stack gives up well within it (README table)
def test_outage_fails_in_bounded_time_then_resumes(corpus12, s3, mode):
    with FaultProxy(s3.endpoint, rate=0.0, seed=1) as proxy:
        job = parse_job(s3_job(corpus12, s3, proxy.endpoint, workers=2,
                               **{"engine.max_attempts": 4}))
        # the first half of the run goes through; then the endpoint goes down
        import threading

        def outage_later():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proxy.stats["requests"] < 150:
                time.sleep(0.02)
            proxy.set_outage(mode)

        t = threading.Thread(target=outage_later, daemon=True)
        t.start()
        t0 = time.monotonic()
        with pytest.raises((RunFailedError, StorageError)) as info:
            run_job(job)
        elapsed = time.monotonic() - t0
        t.join()
        message = str(info.value)
        print(f"\noutage {mode}: failed after {elapsed:.1f}s: {message[:300]}")
        assert proxy.endpoint in message
        proxy.heal()
        summary = run_job(job)
    assert summary.units_skipped > 0 or summary.already_committed
    assert committed(s3) == reference(s3)
    assert_verifies("s3://out/ds", StorageOptions(endpoint_url=s3.endpoint))
