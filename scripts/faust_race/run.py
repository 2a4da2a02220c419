"""Reproduce a Faust 0.15 race: events lost at start-up while a table recovers.

    .venv/bin/python scripts/faust_race/run.py [--starts 6] [--events 4000]

Faust alone (``app.py`` here: a Table and a plain agent, no faust-inference),
on the project's test Kafka broker. Each start reads a fresh topic (so no
committed offsets) with the same app id (so the table's changelog, filled by
the starts before, is recovered first) and forwards every event to an output
topic. The first start has nothing to recover. Prints, per start, how many
events came out and which ids are missing. Seen here: every start after the
first lost some events; see docs/guarantees.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.support import fill_topic, unique
from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker


async def outputs(bootstrap: str, topic: str, n: int, seconds: float) -> list[int]:
    """The ids in ``topic``, read until ``n`` arrived or ``seconds`` passed."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[int] = []
    deadline = time.monotonic() + seconds
    try:
        while len(got) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(orjson.loads(r.value)["id"] for r in records)
    finally:
        await consumer.stop()
    return got


def main() -> None:
    """Start the worker ``--starts`` times and report what each start lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=6)
    parser.add_argument("--events", type=int, default=4000)
    args = parser.parse_args()
    n = args.events
    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    workdir = Path(tempfile.mkdtemp(prefix="faust-race-"))
    with KafkaBroker() as kafka:
        app_id = unique("faust-race")
        for start in range(args.starts):
            topic_in, topic_out = unique("race-in"), unique("race-out")
            kafka.create_topic(topic_in, partitions=4)
            kafka.create_topic(topic_out, partitions=1)
            ids = list(range(n * start, n * (start + 1)))
            asyncio.run(fill_topic(kafka.bootstrap, topic_in, n, ids=ids))
            env = {
                "RACE_APP_ID": app_id,
                "RACE_IN": topic_in,
                "RACE_OUT": topic_out,
                "KAFKA_BROKER": kafka.url,
            }
            worker = FaustWorker("app", env, workdir, topic_in, log_level="warn").start()
            try:
                got = asyncio.run(outputs(kafka.bootstrap, topic_out, n, seconds=40))
            finally:
                worker.stop()
            missing = sorted(set(ids) - set(got))
            print(
                f"start {start}: {len(set(got))}/{n} events came out; "
                f"missing {len(missing)}: {missing[:8]}",
                flush=True,
            )


if __name__ == "__main__":
    main()
