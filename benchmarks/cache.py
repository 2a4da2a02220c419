"""The result cache: what a hit costs against a call, and events/s at 0, 50 and 100% hits.

    python benchmarks/cache.py [--latency 0.02] [--events 10000]

One run, one machine, against the fixed-latency test double
(``devtools.fake_endpoint``) in its own process:

1. **Hit against call**, in one process without Kafka: ``model.predict(x)``
   of a model registered with ``cache=True`` (no app, so the entries live in
   a dict; a Faust table's local store is a dict too), one call at a time. A
   miss pays the HTTP call; a hit pays the digest and the lookup. Target: a
   hit costs < 5% of a call.
2. **Through Kafka**: one worker, ``infer()`` with 50 in flight and one event
   per request (so that every miss is a request), the cache in a partitioned
   table. The worker runs through every phase without a restart: it first
   scores the inputs that later phases repeat, then reads, phase after phase,
   events that repeat those inputs (same keys, so the same partitions) for
   the given share and carry new inputs otherwise. Rates are over the middle
   80% of each phase's outputs, like ``throughput.py``. (One worker for all
   phases, because restarting on a fresh topic while the table recovers hit
   a Faust race that drops an event now and then: docs/guarantees.md.) A
   last worker without a cache gives the baseline: what recording each
   result in the table costs when nothing hits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer

from benchmarks.support import fake_endpoint, fill_topic, rate, unique
from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker
from faust_inference import ModelRegistry

IN_FLIGHT = 50
HIT_RATES = (0.0, 0.5, 1.0)


async def hit_against_call(url: str, calls: int, hits: int) -> tuple[float, float]:
    """Mean seconds of a miss (a call) and of a hit, one at a time."""
    registry = ModelRegistry()
    model = registry.register(
        "bench",
        provider="kserve",
        endpoint=url,
        remote_name="bench",
        cache=True,
        batch_timeout=0.0,
    )
    inputs = [[i / 1e6 + j for j in range(10)] for i in range(calls)]
    try:
        await model.predict([0.0] * 10)  # connection set up outside the timing
        started = time.perf_counter()
        for x in inputs:
            await model.predict(x)
        miss = (time.perf_counter() - started) / calls
        rounds = max(1, hits // calls)
        started = time.perf_counter()
        for _ in range(rounds):
            for x in inputs:
                await model.predict(x)
        hit = (time.perf_counter() - started) / (rounds * calls)
        assert model.cache is not None
        assert model.cache.hits == rounds * calls, model.cache.hits
    finally:
        await registry.aclose()
    return miss, hit


async def phases(
    kafka: KafkaBroker,
    url: str,
    workdir: Path,
    n: int,
    common: dict[str, str],
    shares: tuple[float, ...] = HIT_RATES,
) -> list[float]:
    """Events/s of one worker for each share of hits in ``shares``."""
    topic_in, topic_out = unique("bench-cache-in"), unique("bench-cache-out")
    kafka.create_topic(topic_in, partitions=4)
    kafka.create_topic(topic_out, partitions=1)
    env = {
        "BENCH_MODE": "infer",
        "BENCH_IN": topic_in,
        "BENCH_OUT": topic_out,
        "BENCH_APP_ID": unique("bench-cache"),
        "BENCH_MODEL_URL": url,
        "KAFKA_BROKER": kafka.url,
        "BENCH_CONCURRENCY": str(IN_FLIGHT),
        **common,
    }
    worker = FaustWorker("benchmarks.apps", env, workdir, topic_in, log_level="warn").start()
    consumer = AIOKafkaConsumer(
        topic_out,
        bootstrap_servers=kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()

    async def outputs(count: int) -> list[int]:
        stamps: list[int] = []
        deadline = time.monotonic() + 300
        while len(stamps) < count:
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"only {len(stamps)}/{count} outputs; see {worker.log_path}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                stamps.extend(r.timestamp for r in records)
        return stamps

    try:
        known = list(range(n))  # scored first: the later phases' hits
        await fill_topic(kafka.bootstrap, topic_in, n, ids=known)
        await outputs(n)
        fresh = iter(range(n, n * (len(shares) + 1)))
        rates = []
        for share in shares:
            repeats = int(n * share)
            ids = known[:repeats] + [next(fresh) for _ in range(n - repeats)]
            # Mixed, so every stretch of the phase has the same share of hits.
            ids.sort(key=lambda i: (i * 2654435761) % 2**32)
            await fill_topic(kafka.bootstrap, topic_in, n, ids=ids)
            rates.append(rate(await outputs(n)))
            cached = "cache" if "BENCH_CACHE" in common else "no cache"
            print(f"  {cached}, {share:.0%} repeats: {rates[-1]:,.0f} events/s", flush=True)
        return rates
    finally:
        await consumer.stop()
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--linger", type=float, default=0.005)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    common = {"BENCH_LINGER": str(args.linger), "BENCH_CACHE": '{"partitions": 4}'}
    with KafkaBroker() as kafka, fake_endpoint(args.latency) as url:
        print(
            f"Kafka {kafka.version} at {kafka.bootstrap}; endpoint {url} with "
            f"{args.latency * 1000:g} ms latency; logs in {workdir}",
            flush=True,
        )
        miss, hit = asyncio.run(hit_against_call(url, calls=200, hits=20000))
        rates = asyncio.run(phases(kafka, url, workdir, args.events, common))
        plain = {"BENCH_LINGER": str(args.linger)}
        baseline = asyncio.run(phases(kafka, url, workdir, args.events, plain, (0.0,)))[0]
    print()
    print("| what | value |")
    print("|------|------:|")
    print(
        f"| a call, {args.latency * 1000:g} ms endpoint (mean of 200, one at a time) | "
        f"{miss * 1000:.2f} ms |"
    )
    print(f"| a hit (mean of 20,000) | {hit * 1e6:.1f} µs |")
    print(f"| hit / call | {hit / miss:.2%} (target < 5%) |")
    for share, value in zip(HIT_RATES, rates, strict=True):
        print(
            f"| events/s at {share:.0%} hits ({IN_FLIGHT} in flight, 1 event per request) | "
            f"{value:,.0f} |"
        )
    print(f"| events/s without a cache (same worker settings) | {baseline:,.0f} |")
    print()
    print(
        f"100% / 0% hits = {rates[-1] / rates[0]:.2f}; 50% / 0% = {rates[1] / rates[0]:.2f}; "
        f"0% hits / no cache = {rates[0] / baseline:.2f} (the cost of recording results)"
    )


if __name__ == "__main__":
    main()
