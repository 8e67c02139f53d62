"""The worker preStop hook against a real Dask scheduler on loopback."""

import dask.config
import pytest
from distributed import Client, LocalCluster

from pipelines.kube.render import dask as kdask
from pipelines.kube.retire import api_base, main, retire, retire_pod


def test_api_base_is_the_schedulers_dashboard_api_from_its_tcp_address():
    assert api_base("tcp://books-scheduler.tokenyard.svc.cluster.local:8786") == \
        "http://books-scheduler.tokenyard.svc.cluster.local:8787/api/v1"


@pytest.fixture
def cluster():
    routes = list(kdask.SCHEDULER_HTTP_ROUTES)
    with dask.config.set({"distributed.scheduler.http.routes": routes}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                          protocol="tcp", host="127.0.0.1",
                          dashboard_address="127.0.0.1:0") as c:
            yield c


def test_retire_hands_results_to_other_workers(cluster):
    port = cluster.scheduler.http_server.port
    with Client(cluster) as client:
        future = client.submit(sum, [1, 2, 3], pure=False)
        assert future.result() == 6
        holder = next(iter(client.who_has(future)[future.key]))
        # both workers are on 127.0.0.1: retire the one holding the result, by address
        retire(api_base(cluster.scheduler_address, port), [holder], timeout=30)
        assert holder not in client.scheduler_info()["workers"]
        assert future.result() == 6  # the result moved before the worker left


def test_retire_pod_retires_every_worker_at_the_ip(cluster):
    port = cluster.scheduler.http_server.port
    retired = retire_pod(cluster.scheduler_address, "127.0.0.1", timeout=30, dashboard_port=port)
    assert len(retired) == 2
    assert cluster.scheduler.workers == {}


def test_hook_never_fails_the_pod(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert main([]) == 0
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    monkeypatch.setenv("POD_IP", "127.0.0.1")
    assert main(["--timeout", "2", "--dashboard-port", "1"]) == 0
