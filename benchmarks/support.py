"""Shared plumbing of the benchmark scripts: services, workers, topics, timing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def fake_endpoint(latency: float, *extra: str) -> Iterator[str]:
    """The fixed-latency test double, in its own process so it never shares our loop.

    ``extra`` are more of its options (``"--error-rate", "0.5"`` ...).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_endpoint", "--latency", str(latency),
         "--max-seconds", "1800", *extra],
        cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("FAKE_ENDPOINT_URL="):
            raise RuntimeError(f"fake endpoint did not start: {line!r}")
        yield line.split("=", 1)[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def fill_topic(
    bootstrap: str, topic: str, n: int, width: int = 10, ids: Sequence[int] | None = None
) -> None:
    """Write ``n`` events before a worker starts, so it is measured at full speed.

    With ``ids``, event ``i`` has id ``ids[i]`` and an input only that id has
    (for cache runs, where repeated inputs would be hits).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        for i in range(n):
            if ids is None:
                value = {"id": i, "x": [((i * 7 + j) % 13) / 13 for j in range(width)]}
            else:
                value = {"id": ids[i], "x": [ids[i] / 1e6 + j for j in range(width)]}
            await producer.send(topic, key=str(value["id"]).encode(), value=orjson.dumps(value))
        await producer.flush()
    finally:
        await producer.stop()


async def drain(bootstrap: str, topic: str, n: int, timeout: float) -> list[int]:
    """Read until ``n`` records arrived; returns their broker timestamps (ms)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", metadata_max_age_ms=1000)
    await consumer.start()
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                stamps.extend(r.timestamp for r in records)
    finally:
        await consumer.stop()
    return stamps


def rate(stamps: list[int]) -> float:
    """Steady-state events per second: over the middle 80% of outputs.

    The first and last tenth are left out so that a worker's start (joining the
    group, partitions assigned one after the other) and its tail do not count;
    every run is measured the same way.
    """
    if len(stamps) < 10:
        return 0.0
    ordered = sorted(stamps)
    lo, hi = len(ordered) // 10, len(ordered) - 1 - len(ordered) // 10
    span = (ordered[hi] - ordered[lo]) / 1000
    return (hi - lo) / span if span > 0 else float("inf")

