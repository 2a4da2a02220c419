"""What every chaos scenario needs: raw records, a worker, an account of every id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.support import Collector, Worker, unique

APP = "tests.chaos.app"


def good(i: int) -> tuple[bytes, bytes]:
    """A healthy record, keyed by its id ``g<i>``."""
    ident = f"g{i:05d}"
    return ident.encode(), orjson.dumps({"id": ident, "x": [i % 7 / 7, 0.5, -0.25, 1.0]})


async def produce_raw(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    max_request_size: int = 1_048_576,
) -> int:
    """Send (key, value) byte pairs as they are, optionally paced to ``rate`` per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=max_request_size
    )
    await producer.start()
    n = 0
    started = time.monotonic()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
            n += 1
            if rate is not None:
                ahead = started + n / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def committed_vs_end(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition: (the group's committed offset, the end offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: ((await consumer.committed(tp)) or 0, ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


@dataclass
class Account:
    """Where every input id went."""

    sent: set[str]
    out: list[dict[str, Any]]
    dlq: list[dict[str, Any]]
    scored: set[str] = field(init=False)
    dead: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.scored = {r["id"] for r in self.out}
        # By key: a dead letter's event may be cut down, or absent (undecodable).
        self.dead = {r["key"] for r in self.dlq}

    @property
    def lost(self) -> set[str]:
        return self.sent - self.scored - self.dead

    @property
    def duplicates(self) -> int:
        return len(self.out) - len(self.scored)


async def stop_timed(worker: Worker, limit: float = 30.0) -> float:
    """SIGTERM the worker and return how long it took to exit (the loop keeps running)."""
    started = time.monotonic()
    await asyncio.to_thread(worker.stop, limit)
    return time.monotonic() - started


def chaos_env(
    kafka: Any, model_url: str, *, in_configs: dict[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """Fresh topics (4 input partitions) and group for one scenario, and the app's settings."""
    names = {k: unique(k.lower()) for k in ("APP_ID", "IN_TOPIC", "OUT_TOPIC", "DLQ_TOPIC")}
    kafka.create_topic(names["IN_TOPIC"], partitions=4, configs=in_configs)
    kafka.create_topic(names["OUT_TOPIC"], partitions=1)
    kafka.create_topic(names["DLQ_TOPIC"], partitions=1)
    return {**names, "KAFKA_BROKER": kafka.url, "MODEL_URL": model_url, **extra}


__all__ = [
    "APP",
    "Account",
    "Collector",
    "Worker",
    "chaos_env",
    "committed_vs_end",
    "good",
    "produce_raw",
    "stop_timed",
]
