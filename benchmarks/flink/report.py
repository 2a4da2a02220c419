"""The comparison tables: one run's rows, and the summary of repeated runs.

One run: a row per system and setting and the ratios ours/Flink (``render``,
``targets``). Repeated runs (``--repeat``): per setting and system the median
of each measure with its spread (min-max), the p99 ratio of every run, and a
verdict per setting, "p99 lower in k of n runs" (``summarize``, ``verdicts``).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "Measured",
    "machine",
    "median_spread",
    "p99_ratios",
    "ratio",
    "render",
    "summarize",
    "targets",
    "uptime",
    "verdicts",
]


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


Runs = Sequence[Sequence["Measured"]]


def median_spread(values: Sequence[float], digits: int = 0) -> str:
    """``median (min-max)`` of the values that are numbers; ``n/a`` if none are.

    Example::

        >>> median_spread([40.0, 52.5, 45.0], 1)
        '45.0 (40.0-52.5)'
    """
    numbers = [v for v in values if not math.isnan(v)]
    if not numbers:
        return "n/a"
    middle = _num(statistics.median(numbers), digits)
    if len(numbers) == 1:
        return middle
    return f"{middle} ({_num(min(numbers), digits)}-{_num(max(numbers), digits)})"


def _settings(runs: Runs) -> list[tuple[str, int, int]]:
    seen: dict[tuple[str, int, int], None] = {}
    for rows in runs:
        for m in rows:
            seen.setdefault((m.task, m.latency_ms, m.in_flight), None)
    return list(seen)


def _pick(rows: Sequence[Measured], key: tuple[str, int, int], system: str) -> Measured | None:
    return next(
        (m for m in rows if (m.task, m.latency_ms, m.in_flight) == key and m.system == system),
        None,
    )


def p99_ratios(runs: Runs, key: tuple[str, int, int]) -> list[float]:
    """Ours/Flink p99 in each run that measured both systems in setting ``key``."""
    out = []
    for rows in runs:
        ours, flink = _pick(rows, key, "faust-inference"), _pick(rows, key, "flink")
        if ours is not None and flink is not None:
            out.append(ratio(ours.p99_ms, flink.p99_ms))
    return out


def summarize(runs: Runs) -> str:
    """A Markdown table over repeated runs: medians with their spread, p99 ratio per run.

    Per setting, a row per system with ``median (min-max)`` of events/s, p50 and
    p99 over the runs (requests, CPU s and peak MB as medians, peak in flight as
    the highest seen), then a ratio row: ours/Flink of the medians, and of p99
    the ratio of each run, in run order.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for key in _settings(runs):
        task, latency_ms, in_flight = key
        medians: dict[str, dict[str, float]] = {}
        for system in ("flink", "faust-inference"):
            found = [m for m in (_pick(rows, key, system) for rows in runs) if m is not None]
            if not found:
                continue
            medians[system] = {
                f: statistics.median(getattr(m, f) for m in found)
                for f in ("events_per_s", "p50_ms", "p99_ms", "requests", "cpu_s", "peak_mb")
            }
            mark = "" if all(m.complete for m in found) else " (incomplete)"
            lines.append(
                f"| {task} | {latency_ms} ms | {in_flight} | {system}{mark} | "
                f"{median_spread([m.events_per_s for m in found])} | "
                f"{median_spread([m.p50_ms for m in found], 1)} | "
                f"{median_spread([m.p99_ms for m in found], 1)} | "
                f"{medians[system]['requests']:,.0f} | "
                f"{max(m.peak_in_flight for m in found)} | "
                f"{_num(medians[system]['cpu_s'], 1)} | {_num(medians[system]['peak_mb'])} |"
            )
        if len(medians) == 2:
            ours, flink = medians["faust-inference"], medians["flink"]
            per_run = ", ".join(_num(r, 2) for r in p99_ratios(runs, key))
            speed = ratio(ours["events_per_s"], flink["events_per_s"])
            lines.append(
                f"| | | | **ours/Flink** | **{_num(speed, 2)}** | "
                f"{_num(ratio(ours['p50_ms'], flink['p50_ms']), 2)} | **{per_run}** | "
                f"{_num(ratio(ours['requests'], flink['requests']), 2)} | | "
                f"{_num(ratio(ours['cpu_s'], flink['cpu_s']), 2)} | "
                f"{_num(ratio(ours['peak_mb'], flink['peak_mb']), 2)} |"
            )
    return "\n".join(lines)


def verdicts(runs: Runs) -> list[str]:
    """One line per setting: in how many runs our p99 was lower than Flink's.

    A run where either system lost events does not count as lower.

    Example::

        embedding 20 ms, 10 in flight: p99 lower in 3 of 3 runs (ours/Flink 0.81, 0.92, 0.77)
    """
    out = []
    for key in _settings(runs):
        task, latency_ms, in_flight = key
        lower = total = 0
        ratios = []
        for rows in runs:
            ours, flink = _pick(rows, key, "faust-inference"), _pick(rows, key, "flink")
            if ours is None or flink is None:
                continue
            total += 1
            r = ratio(ours.p99_ms, flink.p99_ms)
            ratios.append(_num(r, 2))
            lower += int(r < 1 and ours.complete and flink.complete)
        if total:
            out.append(
                f"{task} {latency_ms} ms, {in_flight} in flight: p99 lower in {lower} of "
                f"{total} runs (ours/Flink {', '.join(ratios)})"
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
