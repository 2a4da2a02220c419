"""Tail latency with one slow replica of three, without and with hedged requests.

    python benchmarks/hedging.py [--events 3000] [--rate 150] [--repeat 3]

Three replicas of one model, each the fake endpoint (the test double) in its
own process answering in 20 ms; the third answers 10% of its calls in
500 ms instead (seeded). One Faust worker (``benchmarks/wire_app.py``)
scores a topic through ``endpoint=[a, b, c]``, one event per request, 32
in flight at most, while a producer paces ``--events`` events at ``--rate``
per second (after a warm-up the worker has answered). Latency is end to
end: the output record's timestamp minus the ``sent`` time the producer
put in the event. Four pools:

- ``plain``: least-in-flight only (outlier ejection off, no hedging);
- ``hedge``: plus ``hedge=True`` (copy after the recent p95, 5% budget);
- ``eject``: the default pool (a latency outlier is ejected, probed back);
- ``eject+hedge``: both.

Prints p50/p95/p99/max (ms), median of ``--repeat`` interleaved runs with
min-max, and the extra requests hedging cost (requests the replicas got,
over events). A first table times the same pools without Kafka or Faust
(``predict()`` calls paced in this process, one request per call): the
pool's own effect, with less of a busy machine's noise in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import REPO, unique
from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker

POOLS: dict[str, dict[str, Any]] = {
    "plain": {"replicas": {"outlier_factor": None}},
    "hedge": {"replicas": {"outlier_factor": None}, "hedge": True},
    "eject": {},
    "eject+hedge": {"hedge": True},
}
WARMUP = 60


@contextlib.contextmanager
def replicas(latency: float, slow_rate: float, slow_latency: float) -> Iterator[list[str]]:
    """Three fake endpoints in their own processes; the last one sometimes slow."""
    procs = []
    try:
        for slow in (False, False, True):
            extra = ["--slow-rate", str(slow_rate), "--slow-latency", str(slow_latency)]
            proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.fake_endpoint", "--latency", str(latency),
                 "--record-limit", "0", "--max-seconds", "3600", *(extra if slow else [])],
                cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            procs.append(proc)
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("FAKE_ENDPOINT_URL="):
                raise RuntimeError(f"fake endpoint did not start: {line!r}")
            urls.append(line.split("=", 1)[1])
        yield urls
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def requests_served(urls: list[str], reset: bool = False) -> int:
    """Requests the replicas received (``/_stats``), or zero their counters."""
    total = 0
    for url in urls:
        if reset:
            post = urllib.request.Request(f"{url}/_reset", data=b"", method="POST")
            urllib.request.urlopen(post, timeout=5).close()
            continue
        with urllib.request.urlopen(f"{url}/_stats", timeout=5) as resp:
            total += int(orjson.loads(resp.read())["total"])
    return total


async def paced_run(
    bootstrap: str, topic_in: str, topic_out: str, n: int, rate: float
) -> list[float]:
    """Warm up, then send ``n`` events at ``rate``/s; end-to-end latencies in ms."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    consumer = AIOKafkaConsumer(topic_out, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", metadata_max_age_ms=1000)  # fmt: skip
    await producer.start()
    await consumer.start()
    latencies: dict[int, float] = {}

    async def read(until: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(latencies) < until and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    value = orjson.loads(r.value)
                    latencies[value["id"]] = r.timestamp - value["sent"]

    async def send(i: int) -> None:
        event = {"id": i, "sent": time.time() * 1000, "x": [[0.1, 0.2, 0.3, 0.4]]}
        await producer.send(topic_in, key=str(i).encode(), value=orjson.dumps(event))

    try:
        for i in range(WARMUP):  # the worker joins and answers before we measure
            await send(-1 - i)
        await producer.flush()
        await read(WARMUP, 120)
        if len(latencies) < WARMUP:
            raise RuntimeError("the worker did not answer the warm-up events")
        reader = asyncio.create_task(read(WARMUP + n, 60 + n / rate))
        start = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            await send(i)
        await producer.flush()
        await reader
    finally:
        await producer.stop()
        await consumer.stop()
    measured = [v for k, v in latencies.items() if k >= 0]
    if len(measured) < n:
        raise RuntimeError(f"only {len(measured)}/{n} events came out")
    return measured


def one_run(kafka: KafkaBroker, urls: list[str], pool: dict[str, Any], args: Any,
            workdir: Path) -> tuple[list[float], float]:  # fmt: skip
    """Latencies of one paced run and the extra requests per event."""
    topic_in, topic_out = unique("hedge-in"), unique("hedge-out")
    kafka.create_topic(topic_in, partitions=4)
    kafka.create_topic(topic_out, partitions=1)
    model = {"provider": "kserve", "endpoint": urls, "remote_name": "bench", "batch_size": 1,
             "max_concurrency": 32, "timeout": 10.0, **pool}  # fmt: skip
    env = {"BENCH_IN": topic_in, "BENCH_OUT": topic_out, "BENCH_APP_ID": unique("hedge"),
           "KAFKA_BROKER": kafka.url, "BENCH_MODEL": orjson.dumps(model).decode(),
           "BENCH_LINGER": "0"}  # fmt: skip
    requests_served(urls, reset=True)
    worker = FaustWorker("benchmarks.wire_app", env, workdir, topic_in, log_level="warn")
    worker.start()
    try:
        latencies = asyncio.run(
            paced_run(kafka.bootstrap, topic_in, topic_out, args.events, args.rate)
        )
    finally:
        worker.stop()
    extra = requests_served(urls) / (args.events + WARMUP) - 1
    return latencies, extra


async def direct_run(urls: list[str], pool: dict[str, Any], n: int, rate: float) -> list[float]:
    """Latencies (ms) of ``n`` ``predict()`` calls paced at ``rate``/s, no Kafka."""
    from faust_inference import ModelRegistry

    registry = ModelRegistry()
    model = registry.register("bench", provider="kserve", endpoint=urls, batch_size=1,
                              max_concurrency=32, timeout=10.0, **pool)  # fmt: skip
    latencies: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await model.predict([[0.1, 0.2, 0.3, 0.4]])
        if i >= WARMUP:
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        start = time.monotonic()
        calls = []
        for i in range(WARMUP + n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            calls.append(asyncio.create_task(one(i)))
        await asyncio.gather(*calls)
    finally:
        await registry.aclose()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cell(values: list[float], fmt: str = "{:,.0f}") -> str:
    median = statistics.median(values)
    return f"{fmt.format(median)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--slow-rate", type=float, default=0.1)
    parser.add_argument("--slow-latency", type=float, default=0.5)
    parser.add_argument("--direct-events", type=int, default=2000)
    parser.add_argument("--direct-rate", type=float, default=100.0)
    parser.add_argument("--skip-kafka", action="store_true", help="only the direct table")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-hedge-"))
    stats: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p95": [], "p99": [], "max": [], "extra": []} for name in POOLS
    }
    with KafkaBroker() as kafka, replicas(args.latency, args.slow_rate, args.slow_latency) as urls:
        print(f"Kafka {kafka.version}; replicas {urls} ({args.latency * 1000:g} ms; the last "
              f"{args.slow_rate:.0%} at {args.slow_latency * 1000:g} ms); {args.events} events "
              f"at {args.rate:g}/s per run; logs in {workdir}", flush=True)  # fmt: skip
        direct: dict[str, dict[str, list[float]]] = {n: {} for n in POOLS}
        for _ in range(args.repeat):
            for name, pool in POOLS.items():
                requests_served(urls, reset=True)
                lat = asyncio.run(direct_run(urls, pool, args.direct_events, args.direct_rate))
                extra = requests_served(urls) / (args.direct_events + WARMUP) - 1
                for key, value in (("p50", pct(lat, 0.5)), ("p95", pct(lat, 0.95)),
                                   ("p99", pct(lat, 0.99)), ("max", max(lat)),
                                   ("extra", extra * 100)):  # fmt: skip
                    direct[name].setdefault(key, []).append(value)
                print(f"  direct {name}: p99 {direct[name]['p99'][-1]:.0f} ms", flush=True)
        print(f"\nRequest latency without Kafka, {args.direct_events} predict() calls at "
              f"{args.direct_rate:g}/s, ms (median of {args.repeat}, min-max)\n")  # fmt: skip
        table(direct)
        if args.skip_kafka:
            return
        for _ in range(args.repeat):
            for name, pool in POOLS.items():
                latencies, extra = one_run(kafka, urls, pool, args, workdir)
                row = stats[name]
                for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                    row[key].append(pct(latencies, q))
                row["max"].append(max(latencies))
                row["extra"].append(extra * 100)
                print(f"  {name}: p50 {row['p50'][-1]:.0f} p99 {row['p99'][-1]:.0f} ms, "
                      f"extra requests {extra:.1%}", flush=True)  # fmt: skip
    print(f"\nEnd-to-end latency through Kafka, ms (median of {args.repeat} runs, min-max)\n")
    table(stats)


def table(stats: dict[str, dict[str, list[float]]]) -> None:
    print("| pool | p50 | p95 | p99 | max | extra requests % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in stats.items():
        print(f"| {name} | {cell(row['p50'])} | {cell(row['p95'])} | {cell(row['p99'])} | "
              f"{cell(row['max'])} | {cell(row['extra'], '{:.1f}')} |")  # fmt: skip


if __name__ == "__main__":
    main()
