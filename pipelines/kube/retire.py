"""The preStop hook of a Dask worker pod: retire this pod's workers gracefully.

Kubernetes runs ``python -m pipelines.kube.retire`` before it stops a worker container
(a spot notice, consolidation, a scale-down). SIGTERM alone would close the worker at
once and lose what it holds; instead this asks the scheduler, through its HTTP API
(``/api/v1/get_workers`` and ``/api/v1/retire_workers``), to move the results held by
the workers at this pod's IP to other workers and then remove them. The scheduler's
address comes from ``DASK_SCHEDULER_ADDRESS`` (set by the Dask operator) and the pod's
IP from ``POD_IP`` (the downward API). The hook never fails the pod: whatever happens,
it exits 0 so that termination goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

logger = logging.getLogger(__name__)

DASHBOARD_PORT = 8787


def api_base(scheduler_address: str, dashboard_port: int = DASHBOARD_PORT) -> str:
    """``tcp://host:8786`` -> ``http://host:8787/api/v1``."""
    host = urllib.parse.urlsplit(scheduler_address).hostname
    if not host:
        raise ValueError(f"no host in scheduler address {scheduler_address!r}")
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{dashboard_port}/api/v1"


def _host_of(address: str) -> str | None:
    return urllib.parse.urlsplit(address).hostname


def workers_at(base: str, pod_ip: str, timeout: float) -> list[str]:
    with urllib.request.urlopen(f"{base}/get_workers", timeout=timeout) as response:
        listing = json.load(response)
    return [w["address"] for w in listing.get("workers", []) if _host_of(w["address"]) == pod_ip]


def retire(base: str, addresses: list[str], timeout: float) -> dict:
    body = json.dumps({"workers": addresses}).encode()
    request = urllib.request.Request(f"{base}/retire_workers", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def retire_pod(scheduler_address: str, pod_ip: str, timeout: float,
               dashboard_port: int = DASHBOARD_PORT) -> list[str]:
    """Retire every worker at ``pod_ip``; the addresses retired."""
    base = api_base(scheduler_address, dashboard_port)
    addresses = workers_at(base, pod_ip, timeout)
    if addresses:
        retire(base, addresses, timeout)
    return addresses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Retire this pod's Dask workers.")
    parser.add_argument("--timeout", type=float, default=75.0,
                        help="seconds to wait for the scheduler (keep below the pod's "
                             "terminationGracePeriodSeconds)")
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="retire: %(message)s")
    scheduler = os.environ.get("DASK_SCHEDULER_ADDRESS", "")
    pod_ip = os.environ.get("POD_IP", "")
    if not scheduler or not pod_ip:
        logger.warning("DASK_SCHEDULER_ADDRESS or POD_IP is not set; nothing to retire")
        return 0
    try:
        retired = retire_pod(scheduler, pod_ip, args.timeout, args.dashboard_port)
    except (OSError, ValueError, urllib.error.URLError) as err:
        logger.warning("could not retire workers at %s through %s: %s", pod_ip, scheduler, err)
        return 0
    logger.info("retired %d worker(s): %s", len(retired), ", ".join(retired) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
