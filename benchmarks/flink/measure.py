"""What ``run.py`` measures of each system, the same way for both.

* Latency: every event carries its producer's wall-clock time (``ts``); the
  reader of the output topic, in the same process as the producer, subtracts it
  from the time it received the result. Same clock, same reader, both systems.
* CPU seconds and peak memory: of every process in the system's process group
  (Flink: the PyFlink driver and its JVM; Faust: the worker), read from
  ``/proc``. Memory is sampled a few times a second (RSS summed over the group).
* Run-queue wait: the seconds the group's threads were ready to run but waited
  for a core (``/proc/<pid>/task/<tid>/schedstat``), a diagnostic of a busy
  machine: latency that no profile of the process itself can show.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "GroupMeter",
    "group_pids",
    "group_runqueue_wait",
    "percentile",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "schedstat_wait_seconds",
]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100); NaN for no values.

    Nearest rank, not interpolation: the p99 of 200 latencies is the second
    worst one actually seen, never a value between two samples.
    """
    if not values:
        return math.nan
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _stat_fields(stat: str) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after it.
    return stat[stat.rindex(")") + 2 :].split()


def proc_cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``."""
    fields = _stat_fields(stat)  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def proc_rss_bytes(statm: str) -> int:
    """Resident set size in bytes from the text of ``/proc/<pid>/statm``."""
    return int(statm.split()[1]) * _PAGE


def schedstat_wait_seconds(schedstat: str) -> float:
    """Seconds a thread waited on a run queue, from the text of its ``schedstat``.

    The file holds three numbers: time on a CPU (ns), time waiting to run (ns),
    and time slices run.
    """
    return int(schedstat.split()[1]) / 1e9


def group_runqueue_wait(pgid: int, proc: Path = Path("/proc")) -> float:
    """Run-queue wait in seconds, summed over every live thread of the group.

    Threads that have exited are not counted: read it before and after a phase
    of long-lived processes (both systems' threads live as long as they do).
    """
    total = 0.0
    for pid in group_pids(pgid, proc):
        for task in (proc / str(pid) / "task").glob("*"):
            text = _read(task / "schedstat")
            if text:
                total += schedstat_wait_seconds(text)
    return total


def group_pids(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every live process whose process group is ``pgid``."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # field 5, pgrp
            pids.append(int(entry.name))
    return pids


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class GroupMeter:
    """CPU seconds and peak RSS of a process group, sampled in a thread.

    CPU time of a process that exits is lost to the sum, so the group's CPU is
    read while it runs (``cpu_seconds()`` before and after a phase); the peak
    RSS is the highest sum seen by the sampler since ``start()``.

    Example::

        meter = GroupMeter(proc.pid).start()
        before = meter.cpu_seconds()
        ...
        used = meter.cpu_seconds() - before
        meter.stop(); print(meter.peak_rss_bytes)
    """

    def __init__(self, pgid: int, interval: float = 0.2) -> None:
        self.pgid = pgid
        self.interval = interval
        self.peak_rss_bytes = 0
        self._last_cpu: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._sample_forever, daemon=True, name=f"meter-{pgid}"
        )

    def start(self) -> GroupMeter:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (takes one last sample first)."""
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the group's processes (exited ones included)."""
        self.sample()
        with self._lock:
            return sum(self._last_cpu.values())

    def sample(self) -> None:
        """Read every process of the group once."""
        rss = 0
        cpu: dict[int, float] = {}
        for pid in group_pids(self.pgid):
            base = Path("/proc") / str(pid)
            stat, statm = _read(base / "stat"), _read(base / "statm")
            if stat is None or statm is None:
                continue
            cpu[pid] = proc_cpu_seconds(stat)
            rss += proc_rss_bytes(statm)
        with self._lock:
            # Keep the last reading of a process that has gone: its CPU was spent.
            self._last_cpu.update(cpu)
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)

    def _sample_forever(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
