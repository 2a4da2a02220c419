"""Send synthetic pump sensor readings to the ``sensor-readings`` topic, faster than real time.

    python -m examples.predictive_maintenance.producer --pumps 8 --faulty 2,5 --minutes 20

Every pump reports every ``--interval`` simulated seconds; ``--speed`` simulated seconds
pass per wall-clock second. Each record's Kafka timestamp is the reading's simulated
time, starting at the current 30-second window, so the app's tumbling windows follow
the readings, not the wall clock. The pumps listed in ``--faulty`` develop a bearing
fault from ``fault_at`` (35%) of the run on. One last reading per pump opens the window
after the run, so that every window of the run is closed and scored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import orjson
from aiokafka import AIOKafkaProducer

from examples.predictive_maintenance.plant import Pump, make_pumps, reading, window_start

__all__ = ["add_replay_arguments", "produce", "run_pumps"]


def run_pumps(
    n: int, faulty: tuple[int, ...] | str, minutes: float, seed: int = 7, fault_at: float = 0.35
) -> list[Pump]:
    """The pumps of a run of ``minutes``; those in ``faulty`` fail from ``fault_at`` of it.

    ``faulty`` may be given as on the command line: ``"2,5"``.
    """
    if isinstance(faulty, str):
        faulty = tuple(int(i) for i in faulty.split(",") if i)
    return make_pumps(n, seed=seed, faulty=faulty, fault_start=fault_at * minutes * 60)


async def produce(
    bootstrap: str,
    pumps: list[Pump],
    minutes: float,
    *,
    interval: float = 2.0,
    speed: float = 60.0,
    topic: str = "sensor-readings",
    seed: int = 7,
) -> float:
    """Send the run's readings; returns its start (epoch seconds, a window boundary)."""
    rng = random.Random(seed)
    start = window_start(time.time())
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all") as kafka:
        began = time.monotonic()
        for step in range(int(minutes * 60 / interval) + 1):  # +1: opens the next window
            t = step * interval
            for pump in pumps:
                await kafka.send(
                    topic,
                    key=pump.id.encode(),
                    value=orjson.dumps(
                        {"pump_id": pump.id, "ts": start + t, **reading(pump, t, rng)}
                    ),
                    timestamp_ms=int((start + t) * 1000),  # the window's clock
                )
            await asyncio.sleep(max(0.0, began + t / speed - time.monotonic()))
        await kafka.flush()
    return start


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a replay (here and in ``run.py``); ``run_pumps(args)`` reads them."""
    parser.add_argument("--pumps", type=int, default=8)
    parser.add_argument("--faulty", default="2,5", help="indexes of the failing pumps")
    parser.add_argument("--minutes", type=float, default=20.0, help="simulated minutes")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    add_replay_arguments(parser)
    args = parser.parse_args()
    pumps = run_pumps(args.pumps, args.faulty, args.minutes)
    asyncio.run(
        produce(args.bootstrap, pumps, args.minutes, interval=args.interval, speed=args.speed)
    )
    print(
        f"sent {args.minutes:g} simulated minutes of {len(pumps)} pumps "
        f"({', '.join(p.id for p in pumps if p.faulty) or 'none'} failing)"
    )


if __name__ == "__main__":
    main()
