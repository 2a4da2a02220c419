"""Helpers for integration tests: real Faust worker processes and Kafka I/O."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.worker import FaustWorker


def unique(prefix: str) -> str:
    """A fresh topic or group name, so tests never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def scoring_topics(kafka: Any, in_partitions: int = 4) -> dict[str, str]:
    """Fresh names for the scoring app (app id, topics), with the topics created."""
    names = {k: unique(k.lower()) for k in ("APP_ID", "IN_TOPIC", "OUT_TOPIC", "DLQ_TOPIC")}
    kafka.create_topic(names["IN_TOPIC"], partitions=in_partitions)
    kafka.create_topic(names["OUT_TOPIC"], partitions=1)
    kafka.create_topic(names["DLQ_TOPIC"], partitions=1)
    return names


Worker = FaustWorker


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        for value in values:
            await producer.send(topic, key=key(value).encode(), value=orjson.dumps(value))
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


class Collector:
    """Reads topics from the beginning in the background, keeping every record."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            metadata_max_age_ms=1000,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                self.records[tp.topic].extend(orjson.loads(r.value) for r in records)

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float, *, workers: Iterable[Worker] = ()
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n\n".join(f"--- {w.name}\n{w.log()}" for w in workers)
                counts = {t: len(v) for t, v in self.records.items()}
                raise AssertionError(f"timed out after {timeout}s; records: {counts}\n{logs}")
            for w in workers:
                w.assert_alive()
            await asyncio.sleep(0.2)
