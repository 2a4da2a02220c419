"""Drift: PSI arithmetic, binning, and the monitor's windows and alerts.

The monitor runs against a stand-in for Faust's windowed table (same
``relative_to(ts)[key]`` reads and writes) so windows can be driven by a
patched clock; tests/integration/test_drift.py runs it on the real broker.
"""

import math
import random

import faust
import pytest
from faust.windows import TumblingWindow

from faust_inference import ConfigurationError, InferenceResult, install
from faust_inference import drift as drift_module
from faust_inference.core.hooks import InferenceHooks
from faust_inference.drift import (
    DriftMonitor,
    WindowStore,
    histogram,
    population_stability_index,
    quantile_cuts,
)


def test_psi_of_identical_distributions_is_zero_and_grows_with_the_shift():
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    small = population_stability_index([50, 50], [55, 45])
    large = population_stability_index([50, 50], [90, 10])
    assert 0 < small < 0.05 < 0.5 < large


def test_empty_bins_do_not_make_psi_infinite():
    assert math.isfinite(population_stability_index([10, 0], [0, 10]))


def test_quantile_cuts_make_bins_of_equal_count():
    rng = random.Random(1)
    samples = [rng.gauss(0, 1) for _ in range(10_000)]
    cuts = quantile_cuts(samples, 10)
    assert len(cuts) == 9
    assert all(abs(c - 1000) <= 1 for c in histogram(samples, cuts))


class FakeTable:
    """The parts of a Faust table the monitor touches: its store, window and changelog."""

    def __init__(self, size: float) -> None:
        self.data: dict = {}
        self.window = TumblingWindow(size, expires=4 * size)
        self.changelog: list[tuple] = []

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.changelog.append((partition, key, value))


class DriftLog(InferenceHooks):
    def __init__(self) -> None:
        self.checks: list[tuple[str, float, bool]] = []

    def on_drift(self, settings, feature, psi, alert):
        self.checks.append((feature, psi, alert))


@pytest.fixture
def monitor(monkeypatch):
    app = faust.App("drift-unit", broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    model = app.model("m", provider="http", endpoint="http://127.0.0.1:9")
    rng = random.Random(7)
    mon = DriftMonitor(
        app,
        model,
        features={"x": lambda e: e["x"]},
        output=lambda out: out,
        reference={"x": [rng.gauss(0, 1) for _ in range(5000)]},
        bins={"output": [0.5]},
        window=10,
        min_samples=200,
        flush_interval=1.0,
        partitions=2,
    )
    mon.windows = WindowStore(FakeTable(10))
    log = DriftLog()
    app.inference.hooks.add(log)
    clock = [1000.0]
    monkeypatch.setattr(drift_module.time, "time", lambda: clock[0])
    return mon, log, clock


def feed(mon, clock, rng, mean, seconds, per_second=100):
    for _ in range(int(seconds * per_second)):
        clock[0] += 1 / per_second
        x = rng.gauss(mean, 1)
        r = InferenceResult(
            event={"x": x}, output=float(x > 0), model="m", partition=rng.randrange(2)
        )
        mon.observe(r)


def test_a_stable_stream_raises_no_alert_and_a_shifted_one_does(monitor):
    mon, log, clock = monitor
    rng = random.Random(3)
    feed(mon, clock, rng, 0.0, 30)  # windows 1000, 1010, 1020
    assert mon.check() == []
    x_checks = [c for c in log.checks if c[0] == "x"]
    assert len(x_checks) == 1 and x_checks[0][1] < 0.1 and not x_checks[0][2]
    # The output had no reference samples: its first full window became it.
    assert mon.reference["output"] and not any(c[0] == "output" for c in log.checks)
    feed(mon, clock, rng, 1.5, 12)
    alerts = mon.check()
    assert [a["feature"] for a in alerts] == ["x", "output"]
    assert alerts[0]["psi"] > 0.25 and alerts[0]["samples"] >= 900
    assert mon.check() == []  # each window is judged once


def test_small_windows_are_not_judged(monitor):
    mon, log, clock = monitor
    feed(mon, clock, random.Random(5), 3.0, 25, per_second=5)  # 50 per window < 200
    assert mon.check() == [] and log.checks == []


def test_a_feature_needs_a_reference_or_cut_points():
    app = faust.App("drift-unit-2", broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    model = app.model("m", provider="http", endpoint="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="'x'"):
        DriftMonitor(app, model, features={"x": lambda e: e})


def test_windows_are_written_with_the_events_partition_and_expire(monitor):
    mon, _, clock = monitor
    feed(mon, clock, random.Random(9), 0.0, 25)
    table = mon.windows.table
    written = [(p, key) for p, key, value in table.changelog if value is not None]
    assert written and all(key[0].endswith(f"|{p}") for p, key in written)
    starts = {key[1][0] for key in table.data}
    assert starts == {1000.0, 1010.0, 1020.0}
    clock[0] += 60
    mon.check()  # judges the latest window and drops those long gone
    assert table.data == {}
    tombstones = [key for _, key, value in table.changelog if value is None]
    assert sorted(tombstones) == sorted({k for _, k in written})
