"""Events in, results out: the producer and the output reader ``run.py`` drives.

Every event is ``{"id": n, "ts": <producer wall clock, s>, "input": <text>}``;
both systems copy ``id`` and ``ts`` into their result. The reader notes when it
first received each id, so duplicates from an at-least-once redelivery count
once, and a result's latency is ``received - ts``: one clock, one reader, the
same for both systems.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

__all__ = ["OutputReader", "Producer", "copy_order", "endpoint_stats", "event_text"]

_WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while"),
    *("a", "streaming", "pipeline", "scores", "every", "event", "it", "reads"),
]


def event_text(i: int) -> str:
    """A short sentence, different for every event (about 12 words)."""
    words = [_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(11)]
    return f"event {i}: " + " ".join(words)


class Producer:
    """Writes events to one or more topics, as fast as it can or at a steady rate.

    With several topics (one per system under test), each event goes to every
    topic at the same moment, each copy stamped with its own send time; the
    order of the copies alternates from one event to the next, so neither system
    is always second.
    """

    def __init__(self, bootstrap: str) -> None:
        # linger 0: a paced event leaves at once, adding nothing to its latency.
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def _send(self, topic: str, i: int) -> None:
        value = orjson.dumps({"id": i, "ts": time.time(), "input": event_text(i)})
        await self._producer.send(topic, key=str(i).encode(), value=value)

    async def burst(self, topics: Sequence[str], ids: Iterable[int]) -> None:
        """Send every event (to every topic) as fast as the client takes them."""
        for i in ids:
            for topic in copy_order(topics, i):
                await self._send(topic, i)
        await self._producer.flush()

    async def paced(self, topics: Sequence[str], ids: Iterable[int], rate: float) -> None:
        """Send one event every ``1 / rate`` seconds, on a fixed schedule (no drift)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k, i in enumerate(ids):
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for topic in copy_order(topics, i):
                await self._send(topic, i)
        await self._producer.flush()


def copy_order(topics: Sequence[str], i: int) -> Sequence[str]:
    """The topics in the order event ``i`` is sent to them: reversed for odd ids.

    Example::

        >>> copy_order(["a", "b"], 0), copy_order(["a", "b"], 1)
        (['a', 'b'], ['b', 'a'])
    """
    return topics if i % 2 == 0 else list(reversed(topics))


class OutputReader:
    """Reads the output topic in the background; keeps the first arrival of each id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.received: dict[int, tuple[float, float]] = {}  # id -> (received, ts)
        self.bad = 0  # results without an output
        # id -> (sent, inference seconds), from results that carry them (ours does).
        self.stages: dict[int, tuple[float, float]] = {}
        self._bootstrap, self._topic = bootstrap, topic
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutputReader:
        # Made here, not in __init__: aiokafka wants a running loop.
        self._consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    value = orjson.loads(record.value)
                    if not value.get("output"):
                        self.bad += 1
                    if value["id"] not in self.received:
                        self.received[value["id"]] = (now, value["ts"])
                        if "sent" in value and "infer_s" in value:
                            self.stages[value["id"]] = (value["sent"], value["infer_s"])

    async def wait_for(self, ids: range, timeout: float) -> bool:
        """Wait until every id arrived (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.received for i in ids):
                return True
            await asyncio.sleep(0.05)
        return False

    def latencies(self, ids: range) -> list[float]:
        """Seconds from production to arrival, of the ids that arrived."""
        return [got - ts for got, ts in (self.received[i] for i in ids if i in self.received)]

    def stage_latencies(self, ids: range) -> dict[str, list[float]]:
        """Where each result's time went, for results stamped by the system.

        ``before``: from the producer's timestamp to the request (Kafka in, the
        consumer, the queue and any batch wait); ``inference``: the request; ``after``:
        from the system's send of the result to its arrival at the reader (Kafka out).
        """
        out: dict[str, list[float]] = {"before": [], "inference": [], "after": []}
        for i in ids:
            if i in self.stages and i in self.received:
                (got, ts), (sent, infer_s) = self.received[i], self.stages[i]
                out["before"].append(sent - infer_s - ts)
                out["inference"].append(infer_s)
                out["after"].append(got - sent)
        return out

    def arrivals_ms(self, ids: range) -> list[int]:
        """Arrival times in ms of the ids that arrived (for ``benchmarks.support.rate``)."""
        return [int(self.received[i][0] * 1000) for i in ids if i in self.received]


def endpoint_stats(url: str, reset: bool = False) -> dict[str, object]:
    """The test double's counters (``/_stats``), or zero them (``/_reset``)."""
    if reset:
        request = urllib.request.Request(f"{url}/_reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            return dict(orjson.loads(resp.read()))
    with urllib.request.urlopen(f"{url}/_stats", timeout=5) as resp:
        return dict(orjson.loads(resp.read()))
