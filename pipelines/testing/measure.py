"""Peak memory of a command and its worker processes, sampled while it runs."""

from __future__ import annotations

import threading

import psutil

#: command-line fragments of tokenyard's Python worker processes (the process pool and its
#: fork server, Dask, Spark's Python workers; not the Spark JVM, whose class path names
#: pyspark too)
WORKER_MARKERS = ("spawn_main", "multiprocessing.forkserver", "dask worker", "pyspark.daemon",
                  "pyspark.worker")


class PeakRSS:
    """Samples the RSS of a process and its descendants; keeps each one's peak, and the
    CPU time each had used when last seen (a process's last tenth of a second may be
    missed)."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    cmd = " ".join(p.cmdline())[:200]
                    times = p.cpu_times()
                except psutil.Error:
                    continue
                self.cpu[p.pid] = times.user + times.system
                if rss > self.peaks.get(p.pid, ("", 0))[1]:
                    self.peaks[p.pid] = (cmd, rss)
            self._stop.wait(self.interval_s)

    def worker_peak_mb(self) -> float:
        """The largest peak among worker processes (not the driver itself)."""
        workers = [rss for pid, (cmd, rss) in self.peaks.items()
                   if pid != self.pid and any(m in cmd for m in WORKER_MARKERS)
                   and "resource_tracker" not in cmd and not cmd.startswith("java")]
        return max(workers, default=0) / 2**20

    def cpu_seconds(self) -> float:
        """CPU seconds of the whole process tree (the JVMs of Spark included)."""
        return sum(self.cpu.values())

    def driver_peak_mb(self) -> float:
        return self.peaks.get(self.pid, ("", 0))[1] / 2**20
