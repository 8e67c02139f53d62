"""Fault injection for the tests and ``benchmarks/chaos.py``: real faults, real components.

It lives with the tests, not in the package: import it as ``tests.faults.kit`` with the
repository root on ``sys.path``, and on ``PYTHONPATH`` where Dask workers must unpickle
:class:`ExecutionLog` (``tests/conftest.py`` sets both; so does the benchmark).

* :class:`WorkerKiller` SIGKILLs Dask worker processes of a ``LocalCluster`` at random
  moments (the nanny restarts them), like spot reclaims without notice.
* :class:`ExecutionLog` is a Dask worker plugin that appends one line per task start to a
  file (``O_APPEND``, so lines survive the kill of the process that wrote them): the
  honest count of how often each unit ran, and whether its marker was there already.
* :func:`retire_via_http` asks the scheduler to retire a worker through its HTTP API, the
  path the rendered ``preStop`` hook takes on a spot notice.
* :class:`FaultProxy` is an HTTP proxy on 127.0.0.1 between s3fs and an S3 endpoint that,
  seeded, answers a fraction of requests with 503 SlowDown, 500 InternalError, a reset,
  a stall or a truncated response, or fails everything (an outage); or, given a
  ``rule``, faults (or holds) the very requests the rule picks.
* :func:`start_cli` / :func:`kill_tree` run ``tokenyard`` as a subprocess in its own
  session and SIGKILL it (and its workers), for driver-kill campaigns.

Nothing here contacts an address outside 127.0.0.0/8; every loop is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# -- Dask workers ----------------------------------------------------------------------


class WorkerKiller:
    """SIGKILLs random worker processes of a ``LocalCluster`` from a background thread.

    Kills up to ``kills`` times, waiting a random ``interval_s`` between kills (or until
    ``due`` says the next kill is due), and only when at least ``min_alive`` workers are
    up.
    """

    def __init__(self, cluster, *, kills: int, seed: int = 0,
                 interval_s: tuple[float, float] = (0.3, 1.2), min_alive: int = 2,
                 max_seconds: float = 300.0, due=None) -> None:
        self.cluster = cluster
        self.kills_wanted = kills
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.min_alive = min_alive
        self.max_seconds = max_seconds
        #: optional ``due(kills_so_far) -> bool``: kill on progress instead of on a clock,
        #: so that a fast run cannot outpace the killer
        self.due = due
        self.killed: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-killer", daemon=True)

    def _pids(self) -> list[int]:
        pids = []
        for nanny in list(self.cluster.workers.values()):
            try:
                pid = nanny.pid
            except AttributeError:
                pid = None
            if pid and _alive(pid):
                pids.append(pid)
        return sorted(pids)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while (len(self.killed) < self.kills_wanted and not self._stop.is_set()
               and time.monotonic() < deadline):
            wait_s = 0.01 if self.due else self.rng.uniform(*self.interval_s)
            if self._stop.wait(wait_s):
                return
            if self.due is not None and not self.due(len(self.killed)):
                continue
            pids = self._pids()
            if len(pids) < self.min_alive:
                continue
            pid = self.rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append((time.monotonic(), pid))

    def start(self) -> "WorkerKiller":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return len(self.killed)

    def __enter__(self) -> "WorkerKiller":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unit_of_key(key) -> int | None:
    """The unit index of a task key ``tokenize-NNNNNN-<fp>[-attempt]``, else None."""
    key = key if isinstance(key, str) else str(key)
    parts = key.split("-")
    if len(parts) >= 3 and parts[0] == "tokenize" and parts[1].isdigit():
        return int(parts[1])
    return None


try:  # a worker plugin class needs distributed; keep the module importable without it
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPluginBase
except ImportError:  # pragma: no cover
    _WorkerPluginBase = object


class ExecutionLog(_WorkerPluginBase):
    """A worker plugin: one JSON line per unit task that starts executing.

    Each line says the unit, the worker pid, and whether the unit's marker existed at
    that moment (``output_dir`` is a local output prefix; a start with the marker present
    is a cheap no-op recomputation, not rework).
    """

    name = "tokenyard-execution-log"

    def __init__(self, path: str, output_dir: str | None = None) -> None:
        self.path = path
        self.output_dir = output_dir

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing":
            return
        unit = unit_of_key(key)
        if unit is None:
            return
        marker = None
        if self.output_dir:
            from pipelines import layout

            marker = os.path.exists(os.path.join(self.output_dir, layout.marker_path(unit)))
        line = json.dumps({"unit": unit, "pid": os.getpid(), "marker": marker,
                           "t": time.time()}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@dataclass
class Rework:
    """How often units ran, from an :class:`ExecutionLog` file."""

    starts: int
    units: int
    #: starts beyond the first of a unit whose marker was absent: real work done again
    rework: int
    #: starts of a unit whose marker was present: returned at once
    noop_starts: int
    #: units that did real work more than once
    units_reworked: int
    per_unit: dict[int, int] = field(default_factory=dict)


def read_execution_log(path: str | os.PathLike) -> Rework:
    heavy: Counter = Counter()
    noop = 0
    starts = 0
    p = Path(path)
    lines = p.read_text().splitlines() if p.exists() else []
    for line in lines:
        entry = json.loads(line)
        starts += 1
        if entry.get("marker"):
            noop += 1
        else:
            heavy[entry["unit"]] += 1
    rework = sum(n - 1 for n in heavy.values())
    return Rework(starts=starts, units=len(heavy), rework=rework, noop_starts=noop,
                  units_reworked=sum(1 for n in heavy.values() if n > 1), per_unit=dict(heavy))


def retire_via_http(dashboard_url: str, worker_address: str, timeout_s: float = 60) -> dict:
    """POST ``/api/v1/retire_workers`` on the scheduler's HTTP server (the preStop path).

    The route must be enabled: ``distributed.scheduler.http.routes`` must include
    ``distributed.http.scheduler.api``.
    """
    base = dashboard_url.split("/status")[0].rstrip("/")
    body = json.dumps({"workers": [worker_address]}).encode()
    req = urllib.request.Request(f"{base}/api/v1/retire_workers", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read() or b"{}")


# -- the fault proxy -------------------------------------------------------------------

FAULT_KINDS = ("slowdown", "internal", "reset", "stall", "truncate")
#: what a ``rule`` may answer besides :data:`FAULT_KINDS`: 403 AccessDenied (permanent)
RULE_KINDS = (*FAULT_KINDS, "denied")

_ERRORS = {
    "slowdown": (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    "internal": (500, "Internal Server Error", "InternalError",
                 "We encountered an internal error. Please try again."),
    "denied": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


def s3_error_response(status: int, reason: str, code: str, message: str,
                      keep_alive: bool = True) -> bytes:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>TOKENYARDFAULT</RequestId>"
            f"<HostId>fault-proxy</HostId></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: TOKENYARDFAULT\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()
    return head + body


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 that injects S3 faults into a seeded fraction of
    requests.

    ``rate`` is the fraction of requests that get a fault, drawn from ``kinds``.
    ``outage`` set to ``"503"`` answers every request with 503 SlowDown; ``"refuse"``
    closes the listening socket, so new connections are refused until :meth:`heal`, and
    resets requests that arrive on connections already open.
    ``rule(method, path)``, when set, sees every request first (``path`` is the
    unquoted path, ``/bucket/key`` for path-style S3): it answers a kind of
    :data:`RULE_KINDS` to fault that request, or None to let the draw decide. It runs on
    the request's own connection thread and may block there to hold the request.
    Counts of requests and injected faults are in :attr:`stats`.
    """

    def __init__(self, upstream: str, *, rate: float = 0.15, seed: int = 0,
                 kinds: tuple[str, ...] = FAULT_KINDS, stall_s: float = 3.0,
                 rule: Callable[[str, str], str | None] | None = None) -> None:
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.rate = rate
        self.kinds = kinds
        self.stall_s = stall_s
        self.rule = rule
        self.outage: str | None = None
        self.stats: Counter = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = 0
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> int:
        return sum(self.stats[k] for k in FAULT_KINDS) + self.stats["outage"]

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        self._listen()
        return self

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self._listener = s
        t = threading.Thread(target=self._accept_loop, args=(s,), daemon=True,
                             name="fault-proxy-accept")
        t.start()
        self._threads.append(t)

    def set_outage(self, mode: str | None) -> None:
        """``"503"``, ``"refuse"``, or None to heal."""
        if mode == "refuse":
            self.outage = "refuse"
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
        elif mode is None:
            self.heal()
        else:
            self.outage = mode

    def heal(self) -> None:
        was_refusing = self.outage == "refuse"
        self.outage = None
        if was_refusing or self._listener is None:
            self._listen()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:  # closed: an outage or stop
                return
            conn.settimeout(120)
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="fault-proxy-conn").start()

    def _draw(self, request: bytes = b"") -> str | None:
        if self.rule is not None and request:
            method, target = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            kind = self.rule(method, urllib.parse.unquote(target.split("?", 1)[0]))
            if kind is not None:
                if kind not in RULE_KINDS:
                    raise ValueError(f"a fault proxy rule answered {kind!r}; expected one "
                                     f"of {RULE_KINDS} or None")
                with self._lock:
                    self.stats["requests"] += 1
                    self.stats[kind] += 1
                return kind
        with self._lock:
            self.stats["requests"] += 1
            if self.outage == "503":
                self.stats["outage"] += 1
                return "outage"
            if self.outage == "refuse":
                # the endpoint is gone: open keep-alive connections die with it
                self.stats["outage"] += 1
                return "refuse"
            if self._rng.random() < self.rate:
                kind = self._rng.choice(self.kinds)
                self.stats[kind] += 1
                return kind
            return None

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            for _ in range(100_000):  # requests on one keep-alive connection
                request, buf = _read_request(conn, buf)
                if request is None:
                    return
                fault = self._draw(request)
                if fault in ("outage", "slowdown", "internal", "denied"):
                    err = _ERRORS["slowdown" if fault == "outage" else fault]
                    response = s3_error_response(*err)
                    if request.split(b" ", 1)[0].upper() == b"HEAD":
                        response = response.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
                    conn.sendall(response)
                    continue
                if fault in ("reset", "refuse"):
                    _reset(conn)
                    return
                if fault == "stall":
                    self._stop.wait(self.stall_s)
                    _reset(conn)
                    return
                response = self._forward(request)
                if fault == "truncate":
                    head, _, body = response.partition(b"\r\n\r\n")
                    conn.sendall(head + b"\r\n\r\n" + body[: len(body) // 2])
                    _reset(conn)
                    return
                conn.sendall(response)
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _forward(self, request: bytes) -> bytes:
        """Send one request upstream on a fresh connection; the whole response back,
        re-framed with a Content-Length so the client connection stays open."""
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n")
                 if not ln.lower().startswith((b"connection:", b"keep-alive:"))]
        up = socket.create_connection(self.upstream, timeout=60)
        try:
            up.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body)
            chunks = []
            while True:
                data = up.recv(1 << 16)
                if not data:
                    break
                chunks.append(data)
        finally:
            up.close()
        raw = b"".join(chunks)
        rhead, _, rbody = raw.partition(b"\r\n\r\n")
        rlines = rhead.split(b"\r\n")
        headers = [ln for ln in rlines[1:] if not ln.lower().startswith(
            (b"connection:", b"keep-alive:", b"transfer-encoding:", b"content-length:"))]
        if any(ln.lower().startswith(b"transfer-encoding:") and b"chunked" in ln.lower()
               for ln in rlines[1:]):
            rbody = _dechunk(rbody)
        method = request.split(b" ", 1)[0].upper()
        length = _content_length(rlines)
        if method == b"HEAD" and length is not None:
            headers.append(b"Content-Length: %d" % length)
            rbody = b""
        else:
            headers.append(b"Content-Length: %d" % len(rbody))
        headers.append(b"Connection: keep-alive")
        return b"\r\n".join([rlines[0], *headers]) + b"\r\n\r\n" + rbody


def _content_length(lines: list[bytes]) -> int | None:
    for ln in lines[1:]:
        if ln.lower().startswith(b"content-length:"):
            return int(ln.split(b":", 1)[1].strip())
    return None


def _dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while pos < len(body):
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out)


def _reset(conn: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def _read_request(conn: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """One whole HTTP request (head and body) from a client connection."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(1 << 16)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = _content_length(lines) or 0
    if any(ln.lower().startswith(b"expect:") and b"100-continue" in ln.lower()
           for ln in lines[1:]):
        # botocore sends PUT bodies only after a 100 Continue; upstream never sees it
        lines = [ln for ln in lines if not ln.lower().startswith(b"expect:")]
        head = b"\r\n".join(lines)
        if len(rest) < length:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    chunked = any(ln.lower().startswith(b"transfer-encoding:") and b"chunked" in ln.lower()
                  for ln in lines[1:])
    if chunked:
        while not rest.endswith(b"0\r\n\r\n") and b"\r\n0\r\n\r\n" not in rest:
            data = conn.recv(1 << 16)
            if not data:
                return None, b""
            rest += data
        end = rest.index(b"0\r\n\r\n") + 5 if rest.startswith(b"0\r\n") else \
            rest.index(b"\r\n0\r\n\r\n") + 7
        body, rest = _dechunk(rest[:end]), rest[end:]
        lines = [ln for ln in lines if not ln.lower().startswith(b"transfer-encoding:")]
        lines.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body, rest
    while len(rest) < length:
        data = conn.recv(1 << 16)
        if not data:
            return None, b""
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


# -- the driver ------------------------------------------------------------------------


def start_cli(args: list[str], *, env: dict | None = None, cwd: str | None = None,
              log_path: str | os.PathLike | None = None) -> subprocess.Popen:
    """``python -m pipelines ARGS`` in a new session (so :func:`kill_tree` can end it all)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "pipelines", *args], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT if log_path else
                                subprocess.DEVNULL, start_new_session=True)
    finally:
        if log_path:
            out.close()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver first, then its session (its workers), as a lost node would."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def wait_until(predicate, *, timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False
