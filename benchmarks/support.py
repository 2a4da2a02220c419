"""Shared plumbing of the benchmark scripts: services, workers, topics, timing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker

REPO = Path(__file__).resolve().parents[1]

OIP_ROUTE = "/v2/models/bench/infer"
OIP_BODY: dict[str, Any] = {
    "inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": [0.1] * 10}]
}
"""One event's request to the fake endpoint's Open Inference Protocol route."""


@contextlib.contextmanager
def fake_endpoint(latency: float, *extra: str) -> Iterator[str]:
    """The fixed-latency test double, in its own process so it never shares our loop.

    ``extra`` are more of its options (``"--error-rate", "0.5"`` ...).
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.fake_endpoint",
            "--latency",
            str(latency),
            "--max-seconds",
            "1800",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
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


async def drain(
    bootstrap: str, topic: str, n: int, timeout: float, alive: Callable[[], bool] | None = None
) -> list[int]:
    """Read until ``n`` records arrived; returns their broker timestamps (ms).

    Stops early once ``alive`` (the producing worker's liveness) says no.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n and time.monotonic() < deadline:
            if alive is not None and not alive():
                break
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


async def raw_capacity(
    url: str, n: int, in_flight: int, route: str = OIP_ROUTE, body: Any = None
) -> float:
    """Requests/s of direct calls with aiohttp, ``in_flight`` at a time, no Kafka.

    The endpoint's capacity as the box allows it: one half of the box's limit
    (the other is a bare Faust agent, :func:`through_kafka` in ``bare`` mode).
    """
    payload = OIP_BODY if body is None else body
    target = f"{url}{route}"
    queue = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def lane() -> None:
            for _ in queue:
                async with session.post(target, json=payload) as resp:
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        return n / (time.perf_counter() - started)


def through_kafka(
    kafka: KafkaBroker, app: str, mode: str, n: int, workdir: Path, env: Mapping[str, str]
) -> float:
    """Events/s of one worker of the Faust ``app`` over ``n`` events (4 partitions in, 1 out).

    The events are written before the worker starts; the worker reads
    ``BENCH_MODE``, ``BENCH_IN``, ``BENCH_OUT``, ``BENCH_APP_ID`` and
    ``KAFKA_BROKER``, plus ``env``. Raises if not every event came out.
    """
    topic_in, topic_out = unique(f"bench-{mode}-in"), unique(f"bench-{mode}-out")
    kafka.create_topic(topic_in, partitions=4)
    kafka.create_topic(topic_out, partitions=1)
    asyncio.run(fill_topic(kafka.bootstrap, topic_in, n))
    env = {
        "BENCH_MODE": mode,
        "BENCH_IN": topic_in,
        "BENCH_OUT": topic_out,
        "BENCH_APP_ID": unique(f"bench-{mode}"),
        "KAFKA_BROKER": kafka.url,
        **env,
    }
    worker = FaustWorker(app, env, workdir, topic_in, log_level="warn").start()
    try:
        stamps = asyncio.run(drain(kafka.bootstrap, topic_out, n, timeout=300, alive=worker.alive))
    finally:
        worker.stop()
    if len(stamps) < n:
        raise RuntimeError(f"{mode}: only {len(stamps)}/{n} events came out; see {worker.log_path}")
    return rate(stamps)
