"""The comparison table: one row per system and setting, and the ratios ours/Flink."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Measured", "machine", "ratio", "render", "targets", "uptime"]


@dataclass(frozen=True)
class Measured:
    """What one system did in one setting (see ``run.py`` for how each is measured)."""

    task: str
    latency_ms: int
    in_flight: int
    system: str
    events_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    peak_in_flight: int
    cpu_s: float
    peak_mb: float
    paced_rate: float
    complete: bool


COLUMNS = (
    "task",
    "latency",
    "in flight",
    "system",
    "events/s",
    "p50 ms",
    "p99 ms",
    "requests",
    "peak in flight",
    "CPU s",
    "peak MB",
)


def ratio(ours: float, theirs: float) -> float:
    """Ours divided by theirs; NaN when either is missing or theirs is 0."""
    if theirs == 0 or math.isnan(ours) or math.isnan(theirs):
        return math.nan
    return ours / theirs


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def render(rows: Sequence[Measured]) -> str:
    """A Markdown table: each Flink row, its faust-inference row, then their ratios."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in rows:
        mark = "" if m.complete else " (incomplete)"
        lines.append(
            f"| {m.task} | {m.latency_ms} ms | {m.in_flight} | {m.system}{mark} | "
            f"{_num(m.events_per_s)} | {_num(m.p50_ms, 1)} | {_num(m.p99_ms, 1)} | "
            f"{m.requests:,} | {m.peak_in_flight} | {_num(m.cpu_s, 1)} | {_num(m.peak_mb)} |"
        )
        if m.system == "faust-inference":
            flink = next((f for f in rows if f.system == "flink" and _same(f, m)), None)
            if flink is not None:
                speed = ratio(m.events_per_s, flink.events_per_s)
                lines.append(
                    f"| | | | **ours/Flink** | **{_num(speed, 2)}** | "
                    f"{_num(ratio(m.p50_ms, flink.p50_ms), 2)} | "
                    f"**{_num(ratio(m.p99_ms, flink.p99_ms), 2)}** | "
                    f"{_num(ratio(m.requests, flink.requests), 2)} | | "
                    f"{_num(ratio(m.cpu_s, flink.cpu_s), 2)} | "
                    f"{_num(ratio(m.peak_mb, flink.peak_mb), 2)} |"
                )
    return "\n".join(lines)


def _same(a: Measured, b: Measured) -> bool:
    return (a.task, a.latency_ms, a.in_flight) == (b.task, b.latency_ms, b.in_flight)


def targets(rows: Sequence[Measured]) -> list[str]:
    """The issue's targets, one line per setting.

    Events/s ours/Flink >= 2 with embeddings (where batching counts), >= 1 with
    chat (one event per request on both sides), and a lower p99 in both.
    """
    out = []
    for m in rows:
        flink = next((f for f in rows if f.system == "flink" and _same(f, m)), None)
        if m.system != "faust-inference" or flink is None:
            continue
        want = 2.0 if m.task == "embedding" else 1.0
        speed = ratio(m.events_per_s, flink.events_per_s)
        p99 = ratio(m.p99_ms, flink.p99_ms)
        ok = speed >= want and p99 < 1
        verdict = "met   " if ok else "MISSED"
        out.append(
            f"{verdict} {m.task} {m.latency_ms} ms, {m.in_flight} in flight: events/s "
            f"x{_num(speed, 2)} (target >= {want:g}), p99 x{_num(p99, 2)} (target < 1)"
        )
    return out


def uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """Date, CPU, cores, memory and kernel, for the record."""
    cpu = "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {os.cpu_count()} cores ({cpu}){memory}; Linux {platform.release()}; "
        f"Python {platform.python_version()}"
    )
