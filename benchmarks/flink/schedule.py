"""What a comparison runs, in which order, at which pace: the pure part of ``run.py``.

``run.py`` measures; this module decides. The settings (task, endpoint latency,
in-flight cap), how many events each phase sends (:class:`Plan`), the order in
which the two systems take their turn in a setting (:func:`system_order`), the
pace of the latency phase (:func:`paced_rate`) and the bench lock (:func:`held`)
are plain functions, so that ``tests/benchmarks/test_flink_helpers.py`` checks
them without a broker.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FLINK_IN_FLIGHT",
    "FULL",
    "PACE",
    "SMOKE",
    "SYSTEMS",
    "TASKS",
    "Plan",
    "Setting",
    "held",
    "paced_rate",
    "parse_setting",
    "settings",
    "system_order",
]

SYSTEMS = ("flink", "faust")
TASKS = ("embedding", "chat")
FLINK_IN_FLIGHT = 5  # OkHttp's requests per host in Flink's openai provider; see run.py
# Events/s of the latency phase, by endpoint latency in ms: half Flink's measured
# burst rate there (196-208/s at 20 ms, 47-49/s at 100 ms); see paced_rate().
PACE = {20: 100.0, 100: 25.0}


@dataclass(frozen=True)
class Plan:
    """How many events each phase sends.

    Example::

        >>> Plan(warmup=50, burst_max=2000, burst_latencies=40, paced_events=2000).burst(0.1)
        400
    """

    warmup: int
    burst_max: int
    burst_latencies: float  # a burst is this many endpoint latencies' worth of events
    paced_events: int

    def burst(self, latency: float) -> int:
        """Events in the burst: about 8 s of Flink's pace (5 requests in flight)."""
        return min(self.burst_max, int(self.burst_latencies / max(latency, 1e-3)))


FULL = Plan(warmup=50, burst_max=2000, burst_latencies=40, paced_events=2000)
SMOKE = Plan(warmup=20, burst_max=300, burst_latencies=6, paced_events=200)


@dataclass(frozen=True)
class Setting:
    """One point of the comparison: the task, the endpoint's latency (s), the cap."""

    task: str
    latency: float
    in_flight: int


def parse_setting(text: str) -> Setting:
    """``embedding:20:10`` -> task, endpoint latency in ms, in-flight cap.

    Example::

        >>> parse_setting("chat:100:50")
        Setting(task='chat', latency=0.1, in_flight=50)
    """
    try:
        task, latency_ms, cap = text.split(":")
        setting = Setting(task, int(latency_ms) / 1000, int(cap))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--setting {text!r}: write task:latency_ms:cap, e.g. chat:20:50"
        ) from None
    if task not in TASKS:
        raise argparse.ArgumentTypeError(f"--setting {text!r}: task must be one of {TASKS}")
    return setting


def settings(smoke: bool) -> list[Setting]:
    """Every combination for the full run (20 ms first); one for the smoke run.

    Cap 5 at 20 ms too: Flink's provider never has more than 5 requests in flight
    (OkHttp's default per host), so this is the comparison at equal *effective* caps.
    """
    if smoke:
        return [Setting("embedding", 0.02, 10)]
    return [
        Setting(task, latency, cap)
        for latency in (0.02, 0.1)
        for task in TASKS
        for cap in ((5, 10, 50) if latency == 0.02 else (10, 50))
    ]


def system_order(
    setting_index: int, repeat: int, systems: Sequence[str] = SYSTEMS
) -> tuple[str, ...]:
    """Which system takes its turn first in a setting: alternating per setting and repeat.

    Flink goes first in the first setting of the first repeat, then the order
    flips from one setting to the next and, for the same setting, from one repeat
    to the next: slow drift of the machine's load (other work starting or
    ending) then falls on each system as often as on the other, and no setting
    always measures the same system second.

    Args:
        setting_index: the setting's place in the repeat, from 0.
        repeat: the repeat's number, from 1.
        systems: the systems in their default order (Flink first).

    Example::

        >>> [system_order(i, 1)[0] for i in range(3)], system_order(0, 2)[0]
        (['flink', 'faust', 'flink'], 'faust')
    """
    ordered = tuple(systems)
    return ordered if (setting_index + repeat - 1) % 2 == 0 else ordered[::-1]


def paced_rate(latency: float) -> float:
    """Events/s of the latency phase for an endpoint latency (s): the same for both systems.

    Half of Flink's burst rate, fixed per latency rather than taken from the
    burst just measured: Flink has at most 5 requests in flight
    (:data:`FLINK_IN_FLIGHT`), so it saturates near 5 / (latency + ~5 ms): it
    measured 196-208 events/s at 20 ms and 47-49 at 100 ms on a quiet box, so
    the pace is 100/s and 25/s (:data:`PACE`). Half keeps both systems
    unsaturated (a paced phase at Flink's limit would measure its queue, not its
    latency). Fixed, because with the order alternating ours may run first, and
    a pace derived from a burst measured at a busy moment (Flink's ranged
    101-208/s on a loaded box) would change the offered load from run to run,
    so the runs' p99s would not compare. Other latencies (``--setting``) get
    half of 5 / (latency + 5 ms).

    Example::

        >>> paced_rate(0.02), paced_rate(0.1), paced_rate(0.045)
        (100.0, 25.0, 50.0)
    """
    ms = round(latency * 1000)
    if ms in PACE:
        return PACE[ms]
    return round(0.5 * FLINK_IN_FLIGHT / (latency + 0.005), 1)


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """Hold ``flock(lock)`` (the same lock as ``flock(1)``'s) for the block; no-op for None."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
