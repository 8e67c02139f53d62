"""The simulator against the real engine: Dask workers killed where the simulator puts
its spot losses, and the units redone compared.

The job is calibrated here (``run_unit`` on a sample), the run is simulated as Dask on a
``LocalCluster`` is: four nodes of one single-threaded worker each, hard losses (a
SIGKILL, no notice), and a restarted worker after about a second (the nanny). The
simulator draws the losses; the real run then kills a busy worker at the same point of
its progress (units finished, as the fault campaign drives kills, so a fast or slow
machine cannot shift them), and an execution log counts every unit that ran twice.
The short form runs in CI; the campaign is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import dask
import pytest
from distributed import Client, LocalCluster

from pipelines.config import parse_job
from pipelines.cost import calibration
from pipelines.cost.pricing import RootVolume
from pipelines.cost.simulation import (
    BandCapacity,
    Claim,
    Loss,
    Scenario,
    Timing,
    run_seed,
    simulate,
)
from pipelines.cost.workload import from_plan, unit_target
from pipelines.run import plan_job, run_job, storage_of
from pipelines.testing.corpus import write_jsonl
from tests.helpers import make_job
from tests.faults.kit import ExecutionLog, read_execution_log, unit_of_key, wait_until

WORKERS = 4
#: a killed worker's nanny brings a new process up in about this long
RESTART_SECONDS = 1.0
#: losses are drawn within this share of the run's progress, while every worker is busy
BUSY_SHARE = 0.75


def _corpus(root, tokenizer_bytes, files: int) -> dict:
    for i in range(files):
        write_jsonl(root / "raw" / f"part-{i:02d}.jsonl", 1_500_000, seed=i, id_prefix=f"p{i}")
    (root / "tok.json").write_bytes(tokenizer_bytes)
    return make_job(str(root / "raw"), str(root / "tok.json"), str(root / "out"),
                    **{"name": "engine-cost", "engine.kind": "dask", "engine.workers": WORKERS,
                       "engine.max_attempts": 8, "plan.target_unit_bytes": 300_000,
                       # the reference backend: units long enough for a kill to land inside
                       "tokenizer.backend": "hf"})


class BusyKiller:
    """SIGKILLs a worker that has a unit in flight each time the run's progress reaches
    the next threshold: a spot node taken with its work, as the simulator has it."""

    def __init__(self, cluster: LocalCluster, out, thresholds: list[int]) -> None:
        self.cluster = cluster
        self.markers = out / "_units"
        self.thresholds = thresholds
        self.killed: list[str] = []
        #: (wall time, worker pid) of each kill
        self.kills: list[tuple[float, int]] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._guarded, daemon=True)

    def _done(self) -> int:
        return len(list(self.markers.glob("0*.json"))) if self.markers.is_dir() else 0

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as err:  # once the run is over the cluster may be closing
            if not self.finished.is_set():
                self.error = err

    def _run(self) -> None:
        with Client(self.cluster) as client:
            def in_flight(key) -> bool:
                unit = unit_of_key(key)
                return unit is not None and not (self.markers / f"{unit:06d}.json").exists()

            def target() -> tuple[str, object] | None:
                """A worker with a unit in flight (its marker not written yet), and its
                nanny."""
                nannies = {n.worker_address: n for n in list(self.cluster.workers.values())}
                for address, keys in sorted(client.processing().items()):
                    nanny = nannies.get(address)
                    if nanny is not None and nanny.pid and any(in_flight(k) for k in keys):
                        return address, nanny
                return None

            for threshold in self.thresholds:
                if not wait_until(lambda: self._done() >= threshold or self.finished.is_set(),
                                  timeout_s=120) or self.finished.is_set():
                    return
                found: list = []
                if not wait_until(lambda: bool(found.append(target()) or found[-1]),
                                  timeout_s=30):
                    return
                address, nanny = found[-1]
                pid = nanny.pid
                os.kill(pid, signal.SIGKILL)
                self.kills.append((time.time(), pid))
                self.killed.append(address)
                # the next kill finds a worker busy without this one
                wait_until(lambda: address not in client.processing(), timeout_s=30)

    def __enter__(self) -> "BusyKiller":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.finished.set()
        self.thread.join(timeout=60)
        if self.error is not None and exc[0] is None:
            raise self.error


def _scenario(unit_seconds: tuple[float, ...], rate_per_hour: float) -> Scenario:
    claims = tuple(Claim(1, 1.0, 1.0, rate_per_hour) for _ in range(WORKERS))
    return Scenario(unit_seconds=unit_seconds, slots_per_pod=1, claims=claims,
                    stable_usd_per_hour=0.0, stable_nodes=0,
                    timing=Timing(launch_seconds=RESTART_SECONDS, consolidate_after_seconds=0,
                                  stable_consolidate_after_seconds=0, grace_seconds=0),
                    root_volume=RootVolume(0, 0, 0), strategy="spot", handling="hard",
                    allowed_failures=50)


def _simulated_losses(unit_seconds: tuple[float, ...], kills: int) -> list[Loss]:
    """The first ``kills`` losses of a seeded simulated run that has that many while
    every worker is busy."""
    ideal = simulate(_scenario(unit_seconds, 0.0)).wall_seconds
    rate = kills / (WORKERS * ideal * BUSY_SHARE / 3600)
    limit = int(len(unit_seconds) * BUSY_SHARE)
    for seed in range(200):
        result = simulate(_scenario(unit_seconds, rate), BandCapacity(), run_seed(seed, 0))
        busy = [loss for loss in result.losses if 1 <= loss.done <= limit]
        if len(busy) >= kills and busy[:kills] == list(result.losses[:kills]):
            return busy[:kills]
    raise AssertionError("no seed gave the wanted losses")  # pragma: no cover


def _lost_seconds(log_path, kills: list[tuple[float, int]]) -> float:
    """Wall seconds the killed workers had spent on their units in flight."""
    starts = [json.loads(line) for line in log_path.read_text().splitlines()]
    lost = 0.0
    for when, pid in kills:
        mine = [e["t"] for e in starts if e["pid"] == pid and e["t"] <= when]
        lost += when - max(mine) if mine else 0.0
    return lost


@pytest.mark.parametrize("files, kills", [
    (3, 3),
    pytest.param(8, 10, marks=pytest.mark.slow, id="campaign"),
])
def test_units_redone_match_the_simulated_rework(tmp_path, tokenizer_bytes, files, kills):
    job_dict = _corpus(tmp_path, tokenizer_bytes, files)
    job = parse_job(job_dict)
    plan = plan_job(job)
    options, _ = calibration.run_options(job, plan, storage_of(job))
    rates = calibration.calibrate(plan, options, sample_bytes=10**9)
    units = from_plan(plan, rates, unit_target(job, plan)).unit_seconds()
    losses = _simulated_losses(units, kills)
    thresholds = [loss.done for loss in losses]
    sim_redone = sum(len(loss.units) for loss in losses)
    sim_lost_s = sum(loss.lost_seconds for loss in losses)
    out = tmp_path / "out"
    log_path = tmp_path / "executions.jsonl"

    routes = [*dask.config.get("distributed.scheduler.http.routes")]
    with dask.config.set({"distributed.scheduler.allowed-failures": 50,
                          "distributed.scheduler.http.routes": routes,
                          "distributed.nanny.pre-spawn-environ": {
                              "TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}}):
        cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", host="127.0.0.1",
                               scheduler_kwargs={"host": "127.0.0.1"}, memory_limit="1GiB")
    with cluster:
        with Client(cluster) as client:
            client.register_plugin(ExecutionLog(str(log_path), str(out)))
        started = time.time()
        with BusyKiller(cluster, out, thresholds) as killer:
            summary = run_job(job, engine_kwargs={"cluster": cluster})
    real = read_execution_log(log_path)
    lost_s = _lost_seconds(log_path, killer.kills)
    print(f"\n{summary.units} units; simulated: {len(losses)} losses at units done "
          f"{thresholds}, {sim_redone} units redone, {sim_lost_s:.2f} CPU-s of rework "
          f"(units of {sum(units) / len(units):.2f} s); real: "
          f"{len(killer.killed)} kills, {real.rework} units redone, {lost_s:.2f} s of work "
          f"lost ({real.noop_starts} no-op restarts), run {time.time() - started:.1f} s")
    assert len(killer.killed) == kills
    assert real.units == summary.units == len(units)
    # a hard loss redoes the unit each killed worker had in flight, so the simulator's
    # rework is the real engine's, kill for kill; a kill that lands as a unit is being
    # reported (its marker written) costs the real engine nothing, hence the margin
    assert sim_redone == kills
    assert real.rework <= kills
    assert abs(real.rework - sim_redone) <= max(1, round(0.3 * kills))
