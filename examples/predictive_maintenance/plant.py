"""The synthetic plant behind the predictive-maintenance example: pumps, sensors, windows.

Deterministic and standard-library only, because the trainer (MLServer's venv), the
producer and the Faust app (the project's venv) share it, so that the model sees at
serving time exactly the window features it was trained on.

Each pump reports four sensors once per ``interval`` seconds: temperature (deg C),
vibration velocity RMS (mm/s, ISO 10816 style), outlet pressure (bar) and motor current
(A). Healthy pumps differ in their operating point and follow a slow load cycle, with
sensor noise and the odd vibration spike. A pump with a developing bearing fault
vibrates more and more (with frequent impacts), runs hotter and draws more current,
starting at ``fault_start`` and growing over ``FAULT_RAMP`` seconds.

The app folds readings into per-window statistics (``add_reading``) in a tumbling
table and turns a closed window into the model's input (``window_features``)::

    stats: dict = {}
    for t in range(0, 30, 2):
        stats = add_reading(stats, reading(pump, t, rng))
    window_features(stats)          # 9 floats in FEATURES order
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FEATURES",
    "SENSORS",
    "WINDOW",
    "Pump",
    "add_reading",
    "make_pumps",
    "reading",
    "window_features",
    "window_start",
]

SENSORS = ("temperature_c", "vibration_mm_s", "pressure_bar", "current_a")
WINDOW = 30.0  # seconds per tumbling window
FAULT_RAMP = 240.0  # seconds from a fault's onset to its full strength
FEATURES = (
    "temperature_mean",
    "temperature_std",
    "vibration_mean",
    "vibration_std",
    "vibration_max",
    "pressure_mean",
    "pressure_std",
    "current_mean",
    "current_std",
)


@dataclass(frozen=True)
class Pump:
    """One pump: its operating point and, if it is failing, when the fault starts."""

    id: str
    temperature: float
    vibration: float
    pressure: float
    current: float
    phase: float  # of the load cycle
    fault_start: float | None = None  # seconds since the start of the run

    @property
    def faulty(self) -> bool:
        """Whether this pump develops a fault during the run."""
        return self.fault_start is not None


def make_pumps(
    n: int, seed: int = 0, faulty: tuple[int, ...] = (), fault_start: float = 0.0
) -> list[Pump]:
    """``n`` pumps ``pump-00`` ...; those at the indexes in ``faulty`` fail from ``fault_start``."""
    rng = random.Random(seed)
    return [
        Pump(
            f"pump-{i:02d}",
            temperature=rng.uniform(52.0, 64.0),
            vibration=rng.uniform(1.8, 2.8),
            pressure=rng.uniform(5.5, 6.5),
            current=rng.uniform(14.0, 18.0),
            phase=rng.uniform(0.0, 2 * math.pi),
            fault_start=fault_start if i in faulty else None,
        )
        for i in range(n)
    ]


def reading(pump: Pump, t: float, rng: random.Random) -> dict[str, float]:
    """The four sensor values of ``pump`` at ``t`` seconds into the run."""
    load = 0.5 + 0.5 * math.sin(2 * math.pi * t / 900.0 + pump.phase)  # 15-minute cycle
    wear = 0.0
    if pump.fault_start is not None and t >= pump.fault_start:
        wear = min(1.0, (t - pump.fault_start) / FAULT_RAMP)
    vibration = pump.vibration * (1 + 0.15 * load) * (1 + 1.6 * wear) + rng.gauss(0, 0.12)
    if rng.random() < 0.01 + 0.25 * wear:  # impacts: rare when healthy, frequent when worn
        vibration += rng.uniform(1.0, 3.0) * (1 + 2 * wear)
    return {
        "temperature_c": pump.temperature + 6.0 * load + 9.0 * wear + rng.gauss(0, 0.4),
        "vibration_mm_s": max(0.0, vibration),
        "pressure_bar": pump.pressure - 0.3 * load - 0.4 * wear + rng.gauss(0, 0.05),
        "current_a": pump.current * (1 + 0.12 * load + 0.08 * wear) + rng.gauss(0, 0.15),
    }


def window_start(ts: float) -> float:
    """Start of the tumbling window holding ``ts`` (windows are aligned to the epoch)."""
    return math.floor(ts / WINDOW) * WINDOW


def add_reading(stats: dict[str, Any], values: dict[str, float]) -> dict[str, Any]:
    """The window's statistics with one more reading (a new dict, for the Faust table)."""
    sums = stats.get("sum", [0.0] * len(SENSORS))
    squares = stats.get("sumsq", [0.0] * len(SENSORS))
    x = [float(values[s]) for s in SENSORS]
    return {
        "n": stats.get("n", 0) + 1,
        "sum": [a + b for a, b in zip(sums, x, strict=True)],
        "sumsq": [a + b * b for a, b in zip(squares, x, strict=True)],
        "vibration_max": max(stats.get("vibration_max", 0.0), x[1]),
    }


def window_features(stats: dict[str, Any]) -> list[float]:
    """The model's input for a closed window, in ``FEATURES`` order."""
    n = stats["n"]
    means = [s / n for s in stats["sum"]]
    stds = [math.sqrt(max(0.0, q / n - m * m)) for q, m in zip(stats["sumsq"], means, strict=True)]
    return [
        means[0], stds[0],
        means[1], stds[1], stats["vibration_max"],
        means[2], stds[2],
        means[3], stds[3],
    ]  # fmt: skip
