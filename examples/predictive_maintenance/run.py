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
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from devtools.kafka import KafkaBroker, ensure_jars
from devtools.mlserver import CACHE_DIR, MLServer, ensure_venv, prepare_model
from devtools.worker import FaustWorker
from examples.predictive_maintenance.plant import WINDOW, Pump
from examples.predictive_maintenance.producer import produce, run_pumps

__all__ = ["prepare_detector", "strips", "topics"]

HERE = Path(__file__).resolve().parent


def topics(app_id: str = "predictive-maintenance") -> list[str]:
    """The app's topics, with its tables' changelogs.

    Created before the worker starts: a changelog that Faust declares itself may be
    missing from the worker's metadata at its first write, which crashes the agent
    (``PartitionsMismatch ... has 0 partitions``, seen here with Kafka 3.9).
    """
    tables = ("sensor-windows", "open-window", "anomaly-streaks")
    return ["sensor-readings", "pump-windows", "pump-health", "maintenance-alerts",
            "pump-windows.dlq", *(f"{app_id}-{t}-changelog" for t in tables)]


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


async def watch(bootstrap: str, expected: int, deadline: float) -> list[dict[str, Any]]:
    """Print alerts until ``expected`` window verdicts arrived; returns the verdicts."""
    consumer = AIOKafkaConsumer(
        "pump-health", "maintenance-alerts", "pump-windows.dlq",
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
    )
    await consumer.start()
    verdicts: list[dict[str, Any]] = []
    try:
        while len(verdicts) < expected and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for value in (orjson.loads(r.value) for r in records):
                    if tp.topic == "pump-health":
                        verdicts.append(value)
                    elif tp.topic == "maintenance-alerts":
                        print(f"  ALERT  {value['pump_id']}: {value['reason']}, vibration "
                              f"{value['vibration_mean']} mm/s (max {value['vibration_max']}), "
                              f"{value['temperature_mean']} C")
                    else:
                        print(f"  DLQ    {value['event']['pump_id']}  {value['error_class']}")
    finally:
        await consumer.stop()
    return verdicts


async def scenario(kafka: KafkaBroker, pumps: list[Pump], args: argparse.Namespace) -> int:
    """Replay the readings and show alerts at the same time; then the strips."""
    windows = int(args.minutes * 60 / WINDOW)
    failing = [p.id for p in pumps if p.faulty]
    say(f"replaying {args.minutes:g} minutes of {len(pumps)} pumps at {args.speed:g}x; "
        f"failing from minute {args.minutes * 0.35:g}: {', '.join(failing) or 'none'}")
    start, verdicts = await asyncio.gather(
        produce(kafka.bootstrap, pumps, args.minutes, speed=args.speed),
        watch(kafka.bootstrap, windows * len(pumps), time.monotonic() + args.timeout),
    )
    say(f"{len(verdicts)}/{windows * len(pumps)} windows scored; "
        f"each pump's {WINDOW:g}-second windows (. normal, x anomalous):")
    for pump, strip in strips(verdicts, start).items():
        print(f"  {pump}  {strip}  {'(failing)' if pump in failing else ''}")
    return 0 if len(verdicts) >= windows * len(pumps) else 1


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pumps", type=int, default=8)
    parser.add_argument("--faulty", default="2,5", help="indexes of the failing pumps")
    parser.add_argument("--minutes", type=float, default=20.0, help="simulated minutes")
    parser.add_argument("--speed", type=float, default=60.0, help="times real time")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")
    args = parser.parse_args()

    say("preparing Kafka jars, the MLServer virtualenv and the detector (first run: minutes)")
    ensure_jars()
    ensure_venv()
    models = prepare_detector()
    workdir = Path(tempfile.mkdtemp(prefix="maintenance-example-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    pumps = run_pumps(args.pumps, tuple(int(i) for i in args.faulty.split(",") if i),
                      args.minutes)
    with KafkaBroker() as kafka, MLServer(models) as server:
        say(f"Kafka at {kafka.bootstrap}, MLServer at {server.url}")
        for topic in topics():
            kafka.create_topic(topic, partitions=4)
        env = {"KAFKA_BROKER": kafka.url, "PUMP_MODEL_URL": server.url}
        worker = FaustWorker("examples.predictive_maintenance.app", env, workdir,
                             log_level="warn").start()
        say(f"worker started (pid {worker.pid}, log {worker.log_path})")
        try:
            return asyncio.run(scenario(kafka, pumps, args))
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        finally:
            worker.stop()  # before the broker goes: the worker commits on the way out
            say("stopped the worker; stopping MLServer and Kafka")


if __name__ == "__main__":
    sys.exit(main())
