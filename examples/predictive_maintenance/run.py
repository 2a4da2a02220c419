"""Run the whole predictive-maintenance example on this machine with one command.

    python -m examples.predictive_maintenance.run [--pumps 8] [--faulty 2,5] [--minutes 20]

Starts a real Kafka broker and MLServer (both installed into ``.cache/`` on first use),
trains and serves the anomaly detector, starts the Faust worker with
``faust -A examples.predictive_maintenance.app worker``, replays ``--minutes`` of sensor
readings at ``--speed`` times real time, prints maintenance alerts as they arrive and
then each pump's windows as a strip (``.`` normal, ``x`` anomalous). Stops everything
once every window has a verdict (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools.kafka import KafkaBroker, ensure_jars
from devtools.mlserver import CACHE_DIR, prepare_model, run_example
from examples.predictive_maintenance.plant import WINDOW, Pump
from examples.predictive_maintenance.producer import add_replay_arguments, produce, run_pumps

__all__ = ["Run", "prepare_detector", "scenario", "strips", "topics"]

HERE = Path(__file__).resolve().parent


def topics(app_id: str = "predictive-maintenance") -> list[str]:
    """The app's topics, with its tables' changelogs.

    Created before the worker starts: a changelog that Faust declares itself may be
    missing from the worker's metadata at its first write, which crashes the agent
    (``PartitionsMismatch ... has 0 partitions``, seen here with Kafka 3.9).
    """
    tables = ("sensor-windows", "open-window", "anomaly-streaks")
    return [
        "sensor-readings",
        "pump-windows",
        "pump-health",
        "maintenance-alerts",
        "pump-windows.dlq",
        *(f"{app_id}-{t}-changelog" for t in tables),
    ]


def prepare_detector(models: Path = CACHE_DIR / "example-models" / "maintenance") -> Path:
    """Train the detector into ``models/pump-health`` unless current; returns ``models``."""
    prepare_model(models / "pump-health", HERE / "train.py", sources=[HERE / "plant.py"])
    return models


def strips(verdicts: list[dict[str, Any]], start: float) -> dict[str, str]:
    """Each pump's windows in time order: ``.`` normal, ``x`` anomalous, ``?`` missing."""
    by_pump: dict[str, dict[int, bool]] = {}
    for v in verdicts:
        by_pump.setdefault(v["pump_id"], {})[int((v["start"] - start) // WINDOW)] = v["anomalous"]
    n = 1 + max((max(w) for w in by_pump.values()), default=-1)
    return {
        pump: "".join("?" if i not in w else "x" if w[i] else "." for i in range(n))
        for pump, w in sorted(by_pump.items())
    }


@dataclass
class Run:
    """What a replay produced: every window's verdict, the alerts, the dead letters."""

    start: float = 0.0  # the replay's first window, epoch seconds
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


async def alerts_done(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str) -> bool:
    """Whether the app's group has committed ``pump-health`` to its end.

    The ``alert`` agent reads ``pump-health``; Faust flushes the producer before each
    commit, so once the group's offsets reach the topic's end, every alert is out.
    """
    ends = await consumer.end_offsets(
        [
            TopicPartition("pump-health", p)
            for p in consumer.partitions_for_topic("pump-health") or ()
        ]
    )
    committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    return bool(ends) and all(
        tp in committed and committed[tp].offset >= end for tp, end in ends.items()
    )


async def watch(bootstrap: str, run: Run, expected: int, deadline: float, group: str) -> None:
    """Print alerts until ``expected`` windows have a verdict and every alert is out."""
    consumer = AIOKafkaConsumer(
        "pump-health",
        "maintenance-alerts",
        "pump-windows.dlq",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for value in (orjson.loads(r.value) for r in records):
                    if tp.topic == "pump-health":
                        run.verdicts.append(value)
                    elif tp.topic == "maintenance-alerts":
                        run.alerts.append(value)
                        print(
                            f"  ALERT  {value['pump_id']}: {value['reason']}, vibration "
                            f"{value['vibration_mean']} mm/s (max {value['vibration_max']}), "
                            f"{value['temperature_mean']} C"
                        )
                    else:
                        run.dead.append(value)
                        print(f"  DLQ    {value['event']['pump_id']}  {value['error_class']}")
            scored = len(run.verdicts) + len(run.dead) >= expected
            if scored and await alerts_done(admin, consumer, group):
                break
        # Alerts committed after our last read: take what is left on the topic.
        for tp, records in (await consumer.getmany(timeout_ms=500)).items():
            if tp.topic == "maintenance-alerts":
                run.alerts.extend(orjson.loads(r.value) for r in records)
    finally:
        await admin.close()
        await consumer.stop()


async def scenario(
    kafka: KafkaBroker,
    pumps: list[Pump],
    minutes: float,
    speed: float,
    timeout: float,
    app_id: str = "predictive-maintenance",
) -> Run:
    """Replay the readings and show alerts at the same time; then the strips."""
    expected = int(minutes * 60 / WINDOW) * len(pumps)
    failing = [p.id for p in pumps if p.faulty]
    say(
        f"replaying {minutes:g} minutes of {len(pumps)} pumps at {speed:g}x; "
        f"failing from minute {minutes * 0.35:g}: {', '.join(failing) or 'none'}"
    )
    run = Run()
    run.start, _ = await asyncio.gather(
        produce(kafka.bootstrap, pumps, minutes, speed=speed),
        watch(kafka.bootstrap, run, expected, time.monotonic() + timeout, app_id),
    )
    say(
        f"{len(run.verdicts)}/{expected} windows scored, {len(run.alerts)} alerts, "
        f"{len(run.dead)} dead letters; each pump's {WINDOW:g}-second windows "
        "(. normal, x anomalous):"
    )
    for pump, strip in strips(run.verdicts, run.start).items():
        print(f"  {pump}  {strip}  {'(failing)' if pump in failing else ''}")
    return run


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only train the detector if stale and print its folder",
    )
    add_replay_arguments(parser)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")
    args = parser.parse_args()
    if args.prepare_only:
        print(f"MODELS={prepare_detector()}")
        return 0
    pumps = run_pumps(args.pumps, args.faulty, args.minutes)
    # aiokafka warns while fresh topics elect their leaders; the reader retries by itself.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    say("preparing Kafka jars, the MLServer virtualenv and the detector (first run: minutes)")
    ensure_jars()
    expected = int(args.minutes * 60 / WINDOW) * len(pumps)

    def replay(kafka: KafkaBroker) -> int:
        run = asyncio.run(scenario(kafka, pumps, args.minutes, args.speed, args.timeout))
        return 0 if len(run.verdicts) == expected else 1

    return run_example(
        "examples.predictive_maintenance.app",
        prepare_detector(),
        topics(),
        lambda kafka, model: {"KAFKA_BROKER": kafka, "PUMP_MODEL_URL": model},
        replay,
    )


if __name__ == "__main__":
    sys.exit(main())
