"""Lifecycle costs: switch time to every worker, and a slow failing shadow's effect on p99.

    python benchmarks/lifecycle.py [--runs 3] [--rate 200] [--seconds 10]

A real Kafka broker and two workers of ``tests/integration/lifecycle/app.py``
in one group; the model servers are the fixed-latency test double
(``devtools.fake_endpoint``) in their own processes: the primary answers in
20 ms, the shadow in 300 ms and fails half its calls (no retries). Phases
alternate, without restarting the workers: shadow off, then shadow on (every
event copied, at most 16 copies in flight per worker), ``--runs`` times. Each
phase sends events at a fixed rate (not saturating: latency is what is
measured) and takes the end-to-end latency of each event, from the producer's
timestamp to the agent holding its result. The table gives the median over
runs of each phase's p50 and p99, with the spread (min-max) over runs.

Switch time is read from the workers' own log lines ("applied routing
revision N ... X s after it was written"): the delay from the moment the
change was written to the control topic to the moment that worker compiled it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.support import fake_endpoint
from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker
from faust_inference.lifecycle import Change, ControlClient, RoutingState

REPO = Path(__file__).resolve().parents[1]
APP = "tests.integration.lifecycle.app"
APPLIED = re.compile(r"applied routing revision (\d+) .*? ([0-9.]+)s after it was written")


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def phase(bootstrap: str, env: dict[str, str], tag: str, rate: float, seconds: float,
                outputs: dict[str, float], *, complete: bool = True) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    ids = []
    try:
        n = int(rate * seconds)
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            eid = f"{tag}-{i}"
            ids.append(eid)
            value = {"id": eid, "x": [(i % 10) / 10] * 10, "sent_at": time.time()}
            await producer.send(env["IN_TOPIC"], key=eid.encode(), value=orjson.dumps(value))
        await producer.flush()
    finally:
        await producer.stop()
    deadline = time.monotonic() + (60 if complete else 15)
    while not all(i in outputs for i in ids):
        if time.monotonic() > deadline:
            if not complete:  # warm-up on fresh topics: see docs/guarantees.md, a Faust race
                break
            raise RuntimeError(f"phase {tag}: {sum(i in outputs for i in ids)} of {len(ids)} done")
        await asyncio.sleep(0.2)
    return [outputs[i] for i in ids[len(ids) // 10:] if i in outputs]  # first 10%: warm-up


requests: dict[str, float] = {}
"""Event id -> the primary request's own latency (from the result's latency_s)."""


async def collect(bootstrap: str, topic: str, outputs: dict[str, float]) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    v = orjson.loads(r.value)
                    if v.get("sent_at") is not None:
                        outputs[v["id"]] = v["done_at"] - v["sent_at"]
                        requests[v["id"]] = v["latency_s"]
    finally:
        await consumer.stop()


async def main(runs: int, rate: float, seconds: float) -> None:
    broker = KafkaBroker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    workers: list[FaustWorker] = []
    try:
        with fake_endpoint(0.02) as v1, fake_endpoint(0.3, "--error-rate", "0.5") as v2:
            stamp = str(int(time.time()))
            env = {"APP_ID": f"bench-lc-{stamp}", "IN_TOPIC": f"bench-lc-in-{stamp}",
                   "OUT_TOPIC": f"bench-lc-out-{stamp}", "DLQ_TOPIC": f"bench-lc-dlq-{stamp}",
                   "KAFKA_BROKER": broker.url, "V1_URL": v1, "V2_URL": v2,
                   "MODEL_REMOTE_NAME": "fake-model", "SHADOW_IN_FLIGHT": "16",
                   "V2": '{"retries": 0}'}
            broker.create_topic(env["IN_TOPIC"], partitions=4)
            broker.create_topic(env["OUT_TOPIC"], partitions=1)
            workers = [FaustWorker(APP, env, tmp, f"w{i}").start() for i in range(2)]
            client = ControlClient(broker.bootstrap, env["APP_ID"])
            outputs: dict[str, float] = {}
            collector = asyncio.create_task(collect(broker.bootstrap, env["OUT_TOPIC"], outputs))
            await phase(broker.bootstrap, env, "warm", rate, 8.0, outputs, complete=False)
            results: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
            kw = {"versions": ("v1", "v2"), "default": "v1"}
            for run in range(runs):
                for mode in ("off", "on"):
                    change = (Change.shadow("v2", 1.0) if mode == "on" else Change.shadow_off())
                    if mode == "on" or run > 0:
                        await client.change("model", change, **kw)
                        await asyncio.sleep(3.0)  # every worker applied it
                    lat = await phase(broker.bootstrap, env, f"{mode}{run}", rate, seconds,
                                      outputs)
                    req = [v for k, v in requests.items() if k.startswith(f"{mode}{run}-")]
                    results[mode].append(
                        (quantile(lat, 0.5), quantile(lat, 0.99), quantile(req, 0.99)))
            await client.aclose()
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
            reader = ControlClient(broker.bootstrap, env["APP_ID"])
            state: RoutingState = (await reader.states())["model"]
            stats = await reader.read(reader.stats_topic)
            copies = {what: sum(sum(s["shadow"][what].values()) for s in stats.values())
                      for what in ("sent", "dropped", "failed")}
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    delays = [float(m[2]) for w in workers for m in APPLIED.finditer(w.log_path.read_text())]
    print(f"\n{runs} runs x 2 phases of {seconds:g} s at {rate:g} events/s, two workers; "
          f"primary 20 ms, shadow 300 ms failing 50%, {state.revision} routing changes\n")
    print("| shadow | event p50 (ms) | event p99 (ms) | request p99 (ms) |")
    print("|---|---|---|---|")
    for mode, rows in results.items():
        cells = []
        for i in range(3):
            xs = [1000 * r[i] for r in rows]
            cells.append(f"{statistics.median(xs):.1f} [{min(xs):.1f}-{max(xs):.1f}]")
        print(f"| {mode} | " + " | ".join(cells) + " |")
    print("(medians over runs, [min-max])")
    off = statistics.median(r[1] for r in results["off"])
    on = statistics.median(r[1] for r in results["on"])
    print(f"\nshadow copies over the 'on' phases: {copies['sent']} sent "
          f"({copies['failed']} failed), {copies['dropped']} dropped (cap, lag or busy primary)")
    print(f"shadow's effect on the primary's p99: {100 * (on - off) / off:+.1f}% (medians)")
    print(f"switch time, change written -> worker applied it, {len(delays)} applications: "
          f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.rate, a.seconds))
