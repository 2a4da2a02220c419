"""Lifecycle costs: switch time to every worker, and a slow failing shadow's effect on p99.

    python benchmarks/lifecycle.py [--pairs 10] [--rate 200] [--seconds 8] [--profile 8]

A real Kafka broker and two workers of ``tests/integration/lifecycle/app.py``
in one group; the model servers are the fixed-latency test double
(``devtools.fake_endpoint``) in their own processes: the primary answers in
20 ms, the shadow in 300 ms and fails half its calls (no retries).

The machine is shared and noisy: the latency of two runs of the same phase
differs by more than the 10% to be shown. So the phases are short and
interleaved, ``--pairs`` pairs of one phase with the shadow off and one with
it on (every event copied, at most 16 copies in flight per worker), in
alternating order (off-on, on-off, ...), so that drift in the machine's load
hits both alike. Each phase sends events at a fixed rate (not saturating:
latency is what is measured) and takes, per event, the end-to-end latency
(the producer's timestamp to the agent holding the result) and the primary
request's own latency. Two estimates of the shadow's effect on p99:

* the p99 of all phases of a mode pooled (thousands of events each), with a
  95% interval from resampling the pairs (bootstrap);
* the median over pairs of the ratio on/off of the two phases' p99s, with its
  interquartile range.

``--profile S`` then samples one worker with py-spy (if installed) for S
seconds in one more phase of each mode: the CPU samples of the worker, and
the share spent in the shadow's own code.

Switch time is read from the workers' own log lines ("applied routing
revision N ... X s after it was written"): the delay from the moment the
change was written to the control topic to the moment that worker compiled it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
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


async def phase(
    bootstrap: str,
    env: dict[str, str],
    tag: str,
    rate: float,
    seconds: float,
    outputs: dict[str, float],
    *,
    complete: bool = True,
) -> list[float]:
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
    return [outputs[i] for i in ids[len(ids) // 10 :] if i in outputs]  # first 10%: warm-up


requests: dict[str, float] = {}
"""Event id -> the primary request's own latency (from the result's latency_s)."""


async def collect(bootstrap: str, topic: str, outputs: dict[str, float]) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
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


def pooled_ratio(pairs: list[tuple[list[float], list[float]]], q: float) -> float:
    """The on/off ratio of the ``q`` quantile over every phase of each mode pooled."""
    off = [x for o, _ in pairs for x in o]
    on = [x for _, o in pairs for x in o]
    return quantile(on, q) / quantile(off, q)


def bootstrap(
    pairs: list[tuple[list[float], list[float]]], q: float, n: int = 400, seed: int = 1
) -> tuple[float, float]:
    """A 95% interval of :func:`pooled_ratio`, resampling whole pairs."""
    rng = random.Random(seed)
    ratios = sorted(
        pooled_ratio([pairs[rng.randrange(len(pairs))] for _ in pairs], q) for _ in range(n)
    )
    return ratios[int(0.025 * n)], ratios[int(0.975 * n) - 1]


def iqr(xs: list[float]) -> tuple[float, float]:
    """The quartiles of ``xs`` (first, third)."""
    qs = statistics.quantiles(xs, n=4, method="inclusive")
    return qs[0], qs[2]


def profile(pid: int, seconds: float, out: Path) -> dict[str, int]:
    """Sample ``pid`` with py-spy; CPU samples in total and with shadow code on the stack."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    subprocess.run(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        capture_output=True,
        check=False,
        timeout=seconds + 60,
    )
    counts = {"samples": 0, "shadow": 0, "runner": 0}
    if not out.exists():
        return {}
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        counts["samples"] += int(n)
        if "lifecycle/shadow.py" in stack:
            counts["shadow"] += int(n)
        if "core/runner.py" in stack or "core/batching.py" in stack:
            counts["runner"] += int(n)
    return counts


async def main(pairs: int, rate: float, seconds: float, profile_s: float) -> None:
    load_start = os.getloadavg()
    broker = KafkaBroker()
    broker.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    workers: list[FaustWorker] = []
    results: dict[str, list[tuple[list[float], list[float]]]] = {"event": [], "request": []}
    spied: dict[str, dict[str, int]] = {}
    try:
        with fake_endpoint(0.02) as v1, fake_endpoint(0.3, "--error-rate", "0.5") as v2:
            stamp = str(int(time.time()))
            env = {
                "APP_ID": f"bench-lc-{stamp}",
                "IN_TOPIC": f"bench-lc-in-{stamp}",
                "OUT_TOPIC": f"bench-lc-out-{stamp}",
                "DLQ_TOPIC": f"bench-lc-dlq-{stamp}",
                "KAFKA_BROKER": broker.url,
                "V1_URL": v1,
                "V2_URL": v2,
                "MODEL_REMOTE_NAME": "fake-model",
                "SHADOW_IN_FLIGHT": "16",
                "V2": '{"retries": 0}',
            }
            broker.create_topic(env["IN_TOPIC"], partitions=4)
            broker.create_topic(env["OUT_TOPIC"], partitions=1)
            workers = [FaustWorker(APP, env, tmp, f"w{i}").start() for i in range(2)]
            client = ControlClient(broker.bootstrap, env["APP_ID"])
            outputs: dict[str, float] = {}
            collector = asyncio.create_task(collect(broker.bootstrap, env["OUT_TOPIC"], outputs))
            await phase(broker.bootstrap, env, "warm", rate, 8.0, outputs, complete=False)
            kw = {"versions": ("v1", "v2"), "default": "v1"}
            mode_now = "off"

            async def run_phase(mode: str, tag: str) -> tuple[list[float], list[float]]:
                nonlocal mode_now
                if mode != mode_now:
                    change = Change.shadow("v2", 1.0) if mode == "on" else Change.shadow_off()
                    await client.change("model", change, **kw)
                    mode_now = mode
                await asyncio.sleep(2.5)  # every worker applied any change; same gap always
                lat = await phase(broker.bootstrap, env, tag, rate, seconds, outputs)
                ids = [f"{tag}-{i}" for i in range(int(rate * seconds))]
                req = [requests[i] for i in ids[len(ids) // 10 :] if i in requests]
                return lat, req

            for pair in range(pairs):
                order = ("off", "on") if pair % 2 == 0 else ("on", "off")
                got = {m: await run_phase(m, f"{m}{pair}") for m in order}
                results["event"].append((got["off"][0], got["on"][0]))
                results["request"].append((got["off"][1], got["on"][1]))
                p99 = {m: 1000 * quantile(got[m][0], 0.99) for m in got}
                print(
                    f"pair {pair + 1}/{pairs}: event p99 off {p99['off']:.0f} ms, "
                    f"on {p99['on']:.0f} ms",
                    flush=True,
                )
            if profile_s > 0:
                for mode in (mode_now, "off" if mode_now == "on" else "on"):
                    spy = asyncio.create_task(
                        asyncio.to_thread(
                            profile, workers[0].pid or 0, profile_s, tmp / f"spy-{mode}.txt"
                        )
                    )
                    await run_phase(mode, f"spy{mode}")
                    spied[mode] = await spy
            await client.aclose()
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
            reader = ControlClient(broker.bootstrap, env["APP_ID"])
            state: RoutingState = (await reader.states())["model"]
            stats = await reader.read(reader.stats_topic)
            copies = {
                what: sum(sum(s["shadow"][what].values()) for s in stats.values())
                for what in ("sent", "dropped", "failed")
            }
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    load_end = os.getloadavg()
    delays = [float(m[2]) for w in workers for m in APPLIED.finditer(w.log_path.read_text())]
    n_off = sum(len(o) for o, _ in results["event"])
    n_on = sum(len(o) for _, o in results["event"])
    print(
        f"\n{pairs} pairs of {seconds:g} s phases (off/on interleaved, alternating order) at "
        f"{rate:g} events/s, two workers; primary 20 ms, shadow 300 ms failing 50%, "
        f"{state.revision} routing changes; {n_off} events with the shadow off, {n_on} on"
    )
    print(
        f"load average (1/5/15 min): start {' '.join(f'{x:.1f}' for x in load_start)}, "
        f"end {' '.join(f'{x:.1f}' for x in load_end)}\n"
    )
    print(
        "| latency | off: pooled p50 / p99 (ms) | on: pooled p50 / p99 (ms) "
        "| p99 on/off pooled [95% bootstrap] | p99 on/off per pair: median [IQR] [min-max] |"
    )
    print("|---|---|---|---|---|")
    verdict = {}
    for what, ps in results.items():
        off = [x for o, _ in ps for x in o]
        on = [x for _, o in ps for x in o]
        ratio = pooled_ratio(ps, 0.99)
        lo, hi = bootstrap(ps, 0.99)
        per = [quantile(b, 0.99) / quantile(a, 0.99) for a, b in ps]
        q1, q3 = iqr(per)
        verdict[what] = (ratio, hi, statistics.median(per))
        print(
            f"| {what} | {1000 * quantile(off, 0.5):.1f} / {1000 * quantile(off, 0.99):.1f} "
            f"| {1000 * quantile(on, 0.5):.1f} / {1000 * quantile(on, 0.99):.1f} "
            f"| {ratio:.3f} [{lo:.3f}-{hi:.3f}] "
            f"| {statistics.median(per):.3f} [{q1:.3f}-{q3:.3f}] "
            f"[{min(per):.3f}-{max(per):.3f}] |"
        )
    print(
        f"\nshadow copies: {copies['sent']} sent ({copies['failed']} failed), "
        f"{copies['dropped']} dropped (cap, lag or busy primary)"
    )
    for what, (ratio, hi, med) in verdict.items():
        held = "held" if ratio <= 1.10 and med <= 1.10 else "NOT held"
        print(
            f"10% bound on the primary's {what} p99: {held} (pooled {100 * (ratio - 1):+.1f}%, "
            f"upper 95% {100 * (hi - 1):+.1f}%, median per pair {100 * (med - 1):+.1f}%)"
        )
    for mode, c in spied.items():
        if c.get("samples"):
            print(
                f"py-spy, worker 0, {profile_s:g} s with the shadow {mode}: {c['samples']} CPU "
                f"samples, {c['shadow']} ({100 * c['shadow'] / c['samples']:.1f}%) in shadow.py, "
                f"{c['runner']} ({100 * c['runner'] / c['samples']:.1f}%) in the runners"
            )
    print(
        f"switch time, change written -> worker applied it, {len(delays)} applications: "
        f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--profile", type=float, default=0.0, help="seconds of py-spy sampling per mode (0: none)"
    )
    a = parser.parse_args()
    asyncio.run(main(a.pairs, a.rate, a.seconds, a.profile))
