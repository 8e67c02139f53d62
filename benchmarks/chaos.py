"""A long fault campaign: Dask workers SIGKILLed at random through a run, over a flaky
S3 (a seeded fault proxy in front of a loopback moto server), compared with an
undisturbed run. Prints kills survived, faults injected, documents lost, documents
duplicated and rework (units that did real work more than once).

    .venv/bin/python benchmarks/chaos.py --units 120 --kills 40 --workers 4 --fault-rate 0.1

Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# the fault kit lives with the tests (tests/faults/kit.py); Dask's worker processes
# unpickle its ExecutionLog plugin, so they need the checkout on their path too
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def census(output_uri: str, storage_options) -> Counter:
    from pipelines.formats import iter_documents

    return Counter(hashlib.sha256(d.tobytes()).hexdigest()
                   for d in iter_documents(output_uri, storage_options))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--unit-bytes", type=int, default=96_000)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--backend", default="hf", choices=["hf", "fastokens", "auto"],
                    help="tokenizer backend (default hf: its units last long enough for "
                         "kills to land inside them)")
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from pipelines.config import parse_job
    from pipelines.run import run_job
    from pipelines.storage import StorageOptions
    from pipelines.testing.corpus import tiny_tokenizer_json, write_jsonl
    from pipelines.testing.s3 import s3_server
    from pipelines.verify import verify
    from tests.faults.kit import ExecutionLog, FaultProxy, WorkerKiller, read_execution_log

    root = Path(tempfile.mkdtemp(prefix="tokenyard-chaos-"))
    try:
        files = max(1, args.units // 12)
        for i in range(files):
            write_jsonl(root / "raw" / f"part-{i:03d}.jsonl", 12 * args.unit_bytes - 60_000,
                        seed=i, id_prefix=f"p{i}")
        (root / "tok.json").write_bytes(tiny_tokenizer_json(512))

        def job(out: str, endpoint: str | None, kind: str) -> object:
            spec = {"name": "chaos", "input": {"uri": str(root / "raw")},
                    "tokenizer": {"path": str(root / "tok.json"), "backend": args.backend},
                    "output": {"uri": out},
                    "plan": {"target_unit_bytes": args.unit_bytes},
                    "engine": {"kind": kind, "workers": args.workers, "max_attempts": 8,
                               "dashboard_address": "127.0.0.1:0"}}
            if endpoint:
                spec["storage"] = {"endpoint_url": endpoint}
            return parse_job(spec)

        with s3_server() as server:
            fs = server.filesystem()
            fs.mkdir("out")
            direct = StorageOptions(endpoint_url=server.endpoint)
            t0 = time.monotonic()
            run_job(job("s3://out/reference", server.endpoint, "local"))
            t_ref = time.monotonic() - t0
            log_path = root / "executions.jsonl"
            with FaultProxy(server.endpoint, rate=args.fault_rate, seed=args.seed,
                            stall_s=1.0) as proxy:
                with dask.config.set({"distributed.scheduler.allowed-failures": 100}):
                    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           dashboard_address="127.0.0.1:0", host="127.0.0.1",
                                           scheduler_kwargs={"host": "127.0.0.1"},
                                           memory_limit="1GiB")
                with cluster, Client(cluster) as client:
                    client.register_plugin(ExecutionLog(str(log_path)))
                    killer = WorkerKiller(cluster, kills=args.kills, seed=args.seed,
                                          interval_s=(0.1, 0.6), min_alive=2, max_seconds=1800)
                    t0 = time.monotonic()
                    with killer:
                        chaos = run_job(job("s3://out/chaos", proxy.endpoint, "dask"),
                                        engine_kwargs={"cluster": cluster})
                    t_chaos = time.monotonic() - t0
                stats = dict(proxy.stats)
                faults = proxy.faults
            rework = read_execution_log(log_path)
            ref_c, got_c = census("s3://out/reference", direct), census("s3://out/chaos", direct)
            strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_runs")}  # noqa: E731
            listing = lambda p: {q[len(p) + 1:]: fs.cat_file(q) for q in fs.find(p)}  # noqa: E731
            identical = strip(listing("out/reference")) == strip(listing("out/chaos"))
            report = verify("s3://out/chaos", direct)
        figures = {
            "units": chaos.units, "documents": chaos.documents,
            "kills_survived": len(killer.killed), "s3_requests": stats.get("requests", 0),
            "s3_faults_injected": faults,
            "s3_faults_by_kind": {k: v for k, v in stats.items() if k != "requests"},
            "documents_lost": sum((ref_c - got_c).values()),
            "documents_duplicated": sum((got_c - ref_c).values()),
            "task_starts": rework.starts, "rework_units": rework.rework,
            "units_reworked": rework.units_reworked,
            "byte_identical": identical, "verify_ok": report.ok,
            "seconds_undisturbed_local": round(t_ref, 1), "seconds_chaos": round(t_chaos, 1),
        }
        print(json.dumps(figures, indent=1))
        ok = identical and report.ok and not figures["documents_lost"] \
            and not figures["documents_duplicated"]
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
