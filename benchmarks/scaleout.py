"""Scale-out: events/s of one and of two workers in one consumer group, 8 partitions.

    python benchmarks/scaleout.py [--latency 0.02] [--repeat 3]

Same broker, same fixed-latency test double (``devtools.fake_endpoint``, its own
process) and the same app as ``benchmarks/throughput.py`` (``benchmarks.apps``,
``infer`` mode), with an 8-partition input topic. Each run starts 1 or 2 workers
(separate ``faust -A benchmarks.apps worker`` processes, one app id, so one consumer
group), waits until the group is stable with every worker a member, then writes the
events and measures the rate of the outputs written after the last input was sent
(the producer's own CPU and the group's start-up are left out), middle 80% of them.
Runs alternate 1 and 2 workers, ``--repeat`` times; the table shows medians and the
range. Two settings:

* ``batched``: ``@infer`` with 50 in flight and batches of <= 16 / 10 ms, the README's
  settings: a worker is limited by its own CPU (Faust's consuming and producing);
* ``waiting``: 5 in flight, one event per request: a worker is limited by how many
  calls it may have open (5 / 20 ms = 250 calls/s), not by its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import drain, fake_endpoint, fill_topic, rate, unique
from devtools.kafka import KafkaBroker
from devtools.worker import FaustWorker

__all__ = ["SETTINGS", "run_once", "wait_for_group"]

PARTITIONS = 8
# name: (what, the app's settings, events per run)
SETTINGS: dict[str, tuple[str, dict[str, str], int]] = {
    "batched": (
        "infer(), 50 in flight, batches of <= 16 / 10 ms",
        {"BENCH_CONCURRENCY": "50", "BENCH_BATCH": "16", "BENCH_BATCH_TIMEOUT": "0.01"},
        20_000,
    ),
    "waiting": (
        "infer(), 5 in flight, 1 event per request",
        {"BENCH_CONCURRENCY": "5", "BENCH_BATCH": "1"},
        4_000,
    ),
}


def spread(values: list[float]) -> str:
    """``median (min-max)``, rounded for the table."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def wait_for_group(bootstrap: str, group: str, members: int, timeout: float) -> None:
    """Return once ``group`` is stable with ``members`` members (every worker assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            (response,) = await admin.describe_consumer_groups([group])
            _error, _group, state, _ptype, _protocol, joined, *_ = response.groups[0]
            if state == "Stable" and len(joined) == members:
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"group {group} not stable with {members} members after {timeout:g}s")


def run_once(
    kafka: KafkaBroker, url: str, workers: int, setting: str, workdir: Path, linger: float
) -> float:
    """Events/s of ``workers`` workers of one group over one setting's events."""
    _, app_env, n = SETTINGS[setting]
    topic_in, topic_out, group = unique("scale-in"), unique("scale-out"), unique("scale")
    kafka.create_topic(topic_in, partitions=PARTITIONS)
    kafka.create_topic(topic_out, partitions=1)
    env = {
        "BENCH_MODE": "infer",
        "BENCH_IN": topic_in,
        "BENCH_OUT": topic_out,
        "BENCH_APP_ID": group,
        "BENCH_MODEL_URL": url,
        "KAFKA_BROKER": kafka.url,
        "BENCH_LINGER": str(linger),
        **app_env,
    }
    procs = [
        FaustWorker("benchmarks.apps", env, workdir, f"{group}-{i}", log_level="warn")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        asyncio.run(wait_for_group(kafka.bootstrap, group, workers, timeout=120))
        asyncio.run(fill_topic(kafka.bootstrap, topic_in, n))
        sent_ms = time.time() * 1000
        stamps = asyncio.run(drain(kafka.bootstrap, topic_out, n, timeout=300))
    finally:
        for proc in procs:
            proc.stop()
    if len(stamps) < n:
        raise RuntimeError(
            f"{setting}, {workers} workers: only {len(stamps)}/{n} events "
            f"came out; see {procs[0].log_path}"
        )
    after = [s for s in stamps if s >= sent_ms]
    if len(after) < n // 4:
        raise RuntimeError(
            f"{setting}, {workers} workers: only {len(after)} outputs after the "
            "last input was sent; raise the events per run"
        )
    return rate(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each cell")
    parser.add_argument("--only", choices=sorted(SETTINGS), help="one setting")
    parser.add_argument(
        "--linger", type=float, default=0.005, help="Faust producer_linger (s) of every worker"
    )
    args = parser.parse_args()
    settings = [args.only] if args.only else list(SETTINGS)
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))
    runs: dict[tuple[str, int], list[float]] = {(s, w): [] for s in settings for w in (1, 2)}
    with KafkaBroker() as kafka, fake_endpoint(args.latency) as url:
        print(
            f"Kafka {kafka.version} at {kafka.bootstrap}; endpoint {url} with "
            f"{args.latency * 1000:g} ms latency; {PARTITIONS} partitions; logs in {workdir}; "
            f"load average {os.getloadavg()}",
            flush=True,
        )
        # Warm the broker's JIT first: the first runs on a fresh broker are slower.
        run_once(kafka, url, 1, settings[0], workdir, args.linger)
        for i in range(args.repeat):
            for setting in settings:
                for workers in (1, 2):
                    value = run_once(kafka, url, workers, setting, workdir, args.linger)
                    runs[setting, workers].append(value)
                    print(
                        f"  run {i + 1}: {setting}, {workers} worker(s): {value:,.0f}/s", flush=True
                    )
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print("| setting | 1 worker, events/s | 2 workers, events/s | ratio |")
    print("|---|---:|---:|---:|")
    for setting in settings:
        one, two = runs[setting, 1], runs[setting, 2]
        ratios = [b / a for a, b in zip(one, two, strict=True)]
        print(
            f"| {SETTINGS[setting][0]} | {spread(one)} | {spread(two)} | "
            f"{statistics.median(two) / statistics.median(one):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f} per round) |"
        )
    print()
    print(
        f"medians of {args.repeat} runs, range in brackets; ratio = median of 2 workers / "
        "median of 1 worker (in brackets: the ratio within each round)"
    )


if __name__ == "__main__":
    main()
