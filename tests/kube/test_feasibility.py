import dataclasses

import pytest

from pipelines.kube.capacity.scheduling import Toleration
from pipelines.kube.checks import feasibility
from pipelines.kube.render import dask, spark

from .helpers import REPO


@pytest.fixture(scope="module")
def shipped_pools():
    return feasibility.load_pools(REPO / "nodepools")


def test_every_pod_of_every_profile_finds_a_pool(shipped_pools, job):
    from pipelines.kube.capacity.profiles import DaskProfile, load_profile

    for path in sorted((REPO / "cluster_specs").glob("*/*.yaml")):
        profile = load_profile(path)
        pods = (dask.plan(job, profile).pods(with_runner=True) if isinstance(profile, DaskProfile)
                else spark.plan(job, profile).pods())
        for verdict in feasibility.check(pods, shipped_pools):
            assert verdict.schedulable, (path, verdict.pod.role, verdict.rejected)
            assert len(verdict.fits) == 1  # exactly the pool meant for it


def test_spot_first_with_fallback_for_workers_on_demand_for_scheduler(shipped_pools, job, dask_profile):
    scheduler, worker, runner = feasibility.check(dask.plan(job, dask_profile).pods(True), shipped_pools)
    assert [f.pool.name for f in worker.fits] == ["general"]
    fit = worker.fits[0]
    assert (fit.first_choice, fit.fallback) == ("spot", "on-demand")
    assert "spot saves" in fit.spot_summary() and "interruption" in fit.spot_summary()
    assert [f.pool.name for f in scheduler.fits] == ["stable"]
    assert scheduler.fits[0].first_choice == "on-demand" and scheduler.fits[0].fallback is None


def _worker(job, dask_profile):
    return dask.plan(job, dask_profile).pods(False)[1]


def test_selector_typo_stays_pending(shipped_pools, job, dask_profile):
    pod = dataclasses.replace(_worker(job, dask_profile),
                              node_selector={"tokenyard.io/memory-per-cpus": "4"})
    verdict = feasibility.judge(pod, shipped_pools)
    assert not verdict.schedulable
    assert "no label tokenyard.io/memory-per-cpus" in " ".join(verdict.rejected["general"])


def test_missing_toleration_stays_pending(shipped_pools, job, dask_profile):
    scheduler = dask.plan(job, dask_profile).pods(False)[0]
    verdict = feasibility.judge(dataclasses.replace(scheduler, tolerations=()), shipped_pools)
    assert not verdict.schedulable
    assert "does not tolerate the taint tokenyard.io/dedicated=stable:NoSchedule" in \
        " ".join(verdict.rejected["stable"])


def test_request_bigger_than_any_instance(shipped_pools, job, dask_profile):
    pod = dataclasses.replace(_worker(job, dask_profile), memory_bytes=600 * 2**30)
    verdict = feasibility.judge(pod, shipped_pools)
    assert not verdict.schedulable
    assert "no instance type it allows can allocate" in " ".join(verdict.rejected["general"])


def test_min_values_can_leave_a_pod_pending(shipped_pools, job, dask_profile):
    from pipelines.kube.capacity.scheduling import Requirement

    general = next(p for p in shipped_pools if p.name == "general")
    narrow = dataclasses.replace(general, requirements=general.requirements + (
        Requirement("karpenter.k8s.aws/instance-family", "In", ("m5", "m6i", "m7i")),))
    pod = dataclasses.replace(_worker(job, dask_profile), cpu_m=60_000, memory_bytes=200 * 2**30)
    verdict = feasibility.judge(pod, [narrow])
    assert not verdict.schedulable
    assert "only 3 value(s) of node.kubernetes.io/instance-type fit the pod, and the pool's " \
        "minValues is 5" in " ".join(verdict.rejected["general"])


def test_toleration_matching():
    from pipelines.kube.capacity.scheduling import Taint

    taint = Taint("k", "v", "NoSchedule")
    assert Toleration("k", "Equal", "v", "NoSchedule").tolerates(taint)
    assert Toleration("k", "Exists").tolerates(taint)
    assert not Toleration("k", "Equal", "w").tolerates(taint)
    assert Toleration(None, "Exists").tolerates(taint)


def test_load_prices_reads_a_price_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"m6i.xlarge": 0.192}')
    assert feasibility.load_prices(path) == {"m6i.xlarge": 0.192}
