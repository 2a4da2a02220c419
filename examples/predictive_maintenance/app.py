"""Watch pumps for developing faults: windowed sensor features scored by a novelty detector.

Run it as any Faust app::

    KAFKA_BROKER=kafka://127.0.0.1:9092 PUMP_MODEL_URL=http://127.0.0.1:8080 \
        faust -A examples.predictive_maintenance.app worker -l info

Three agents, every topic keyed by pump (so each pump's state lives on one partition):

* ``summarise`` folds each reading of ``sensor-readings`` into the pump's current
  30-second window of the ``sensor-windows`` tumbling table (by the reading's own
  timestamp, the Kafka record's). A window closes when the pump's first reading of a
  later window arrives; its features go to ``pump-windows``.
* ``score`` sends each closed window to the ``pump-health`` model (a local outlier
  factor novelty detector behind MLServer, Open Inference Protocol V2; 1 normal,
  -1 anomalous) in micro-batches, and publishes every verdict to ``pump-health``. Windows it cannot
  score after its retries go to ``pump-windows.dlq``.
* ``alert`` counts anomalous windows in a row per pump (``anomaly-streaks`` table) and
  sends one alert to ``maintenance-alerts`` when the count reaches
  ``PUMP_ALERT_AFTER`` (2): a single odd window (a stray impact) raises no alarm.
"""

from __future__ import annotations

import os
from datetime import timedelta

import faust

from examples.predictive_maintenance.plant import (
    FEATURES,
    WINDOW,
    add_reading,
    window_features,
    window_start,
)
from faust_inference import infer, install

__all__ = ["PumpWindow", "Reading", "alert", "app", "detector", "score", "summarise"]


class Reading(faust.Record, serializer="json"):
    """One pump's sensors at ``ts`` (seconds since the epoch)."""

    pump_id: str
    ts: float
    temperature_c: float
    vibration_mm_s: float
    pressure_bar: float
    current_a: float


class PumpWindow(faust.Record, serializer="json"):
    """A closed window's features, in ``plant.FEATURES`` order."""

    pump_id: str
    start: float
    readings: int
    features: list[float]


# Anomalous windows in a row that make an alert: one odd window is no reason to act.
ALERT_AFTER = int(os.environ.get("PUMP_ALERT_AFTER", "2"))
app = faust.App(
    os.environ.get("PUMP_APP_ID", "predictive-maintenance"),
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",  # the tables live in memory, and in their changelog topics
    topic_partitions=4,  # every topic and table: one pump's state on one partition
)
install(app)

readings = app.topic("sensor-readings", value_type=Reading)
pump_windows = app.topic("pump-windows", value_type=PumpWindow)
health = app.topic("pump-health", value_serializer="json")
alerts = app.topic("maintenance-alerts", value_serializer="json")

# Windows by the Kafka record's timestamp (the reading's); kept an hour after they end.
windows = (
    app.Table("sensor-windows", default=dict, partitions=4)
    .tumbling(WINDOW, expires=timedelta(hours=1))
    .relative_to_stream()
)
open_window = app.Table("open-window", default=float, partitions=4)  # pump -> start
streaks = app.Table("anomaly-streaks", default=int, partitions=4)

detector = app.model(
    "pump-health",
    provider="kserve",
    endpoint=os.environ.get("PUMP_MODEL_URL", "http://127.0.0.1:8080"),
    remote_name="pump-health",
    version="v1",
    input_name="features",
    shape=[len(FEATURES)],
    max_concurrency=8,
    batch_size=16,
    batch_timeout=0.01,
    timeout=2.0,
    retries=3,
)


@detector.preprocess
def features(window: PumpWindow) -> list[float]:
    return window.features


@app.agent(readings)
async def summarise(stream):  # type: ignore[no-untyped-def]
    async for r in stream:
        start = window_start(r.ts)
        current = open_window[r.pump_id]
        if current and start > current:  # the pump moved on: its open window is closed
            closed = windows[r.pump_id].delta(start - current)
            if closed:
                await pump_windows.send(
                    key=r.pump_id,
                    value=PumpWindow(
                        pump_id=r.pump_id,
                        start=current,
                        readings=closed["n"],
                        features=window_features(closed),
                    ),
                )
        if start > current:
            open_window[r.pump_id] = start
        # A late reading (start < current) still counts in its own window, which has
        # already been scored: it is kept for inspection, not scored again.
        windows[r.pump_id] = add_reading(windows[r.pump_id].current(), r.asdict())


@app.agent(pump_windows)
@infer(detector, dead_letter="pump-windows.dlq")
async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        window = r.event
        await health.send(
            key=window.pump_id,
            value={
                "pump_id": window.pump_id,
                "start": window.start,
                "end": window.start + WINDOW,
                "readings": window.readings,
                "anomalous": r.output[0] == -1,  # MLServer answers [rows, 1]
                "features": dict(zip(FEATURES, window.features, strict=True)),
                "model": r.model,
                "version": r.version,
            },
        )


@app.agent(health)
async def alert(verdicts):  # type: ignore[no-untyped-def]
    async for verdict in verdicts:
        pump = verdict["pump_id"]
        streak = streaks[pump] + 1 if verdict["anomalous"] else 0
        streaks[pump] = streak
        if streak == ALERT_AFTER:
            f = verdict["features"]
            await alerts.send(
                key=pump,
                value={
                    "pump_id": pump,
                    "since": verdict["start"] - (ALERT_AFTER - 1) * WINDOW,
                    "at": verdict["end"],
                    "reason": f"{ALERT_AFTER} anomalous windows in a row",
                    "vibration_mean": round(f["vibration_mean"], 2),
                    "vibration_max": round(f["vibration_max"], 2),
                    "temperature_mean": round(f["temperature_mean"], 1),
                },
            )
