"""End-to-end throughput through Kafka: naive agent vs ``infer()`` vs the box's limits.

    python benchmarks/throughput.py [--latency 0.02] [--events 4000]

Prints one table from one run on one machine, same broker, same topics layout
(4 partitions in, 1 out), against the fixed-latency test double
(``devtools.fake_endpoint``) in its own process:

  a. a naive agent doing one awaited HTTP call per event;
  b. ``@infer`` with 50 in flight and micro-batches of up to 16 events or
     10 ms (the README's settings); b1 the same with one event per request;
  c. the endpoint's raw capacity: direct concurrent calls with aiohttp at the
     same in-flight limit, no Kafka;
  d. a bare Faust agent forwarding each event, no model (Faust's ceiling).

The box's limit is min(c, d); targets: b >= 0.9 x min(c, d) and b / a >= 15.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import support
from benchmarks.support import fake_endpoint, raw_capacity
from devtools.kafka import KafkaBroker

IN_FLIGHT = 50


def through_kafka(
    kafka: KafkaBroker, mode: str, n: int, url: str, workdir: Path, **extra: str
) -> float:
    """Events/s of one worker of ``benchmarks.apps`` in ``mode`` over ``n`` events."""
    env = {"BENCH_MODEL_URL": url, "BENCH_CONCURRENCY": str(IN_FLIGHT), **extra}
    return support.through_kafka(kafka, "benchmarks.apps", mode, n, workdir, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--naive-events", type=int, default=300)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of b, b1 and d, interleaved; the median is reported",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.005,
        help="Faust producer_linger (s) of every worker, the same for all runs",
    )
    args = parser.parse_args()
    common = {"BENCH_LINGER": str(args.linger)}
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    with KafkaBroker() as kafka, fake_endpoint(args.latency) as url:
        print(
            f"Kafka {kafka.version} at {kafka.bootstrap}; endpoint {url} "
            f"with {args.latency * 1000:g} ms latency; producer_linger {args.linger:g} s; "
            f"logs in {workdir}",
            flush=True,
        )
        runs: dict[str, list[float]] = {"b": [], "b1": [], "d": []}
        # Warm the broker's JIT (and the page cache) first: the first runs on a
        # fresh broker are up to a third slower, whatever they measure.
        through_kafka(kafka, "bare", args.events, url, workdir, **common)
        c = asyncio.run(raw_capacity(url, args.events, IN_FLIGHT))
        a = through_kafka(kafka, "naive", args.naive_events, url, workdir, **common)
        for _ in range(args.repeat):
            runs["d"].append(through_kafka(kafka, "bare", args.events, url, workdir, **common))
            runs["b"].append(
                through_kafka(
                    kafka,
                    "infer",
                    args.events,
                    url,
                    workdir,
                    BENCH_BATCH="16",
                    BENCH_BATCH_TIMEOUT="0.01",
                    **common,
                )
            )
            runs["b1"].append(through_kafka(kafka, "infer", args.events, url, workdir, **common))
            print("  " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()), flush=True)
    b, b1, d = (statistics.median(runs[k]) for k in ("b", "b1", "d"))
    limit = min(c, d)
    rows = [
        ("a", "naive agent, one await per event", a),
        ("b", f"infer(), {IN_FLIGHT} in flight, batches of <= 16 / 10 ms", b),
        ("b1", f"infer(), {IN_FLIGHT} in flight, 1 event per request", b1),
        ("c", f"endpoint raw capacity, {IN_FLIGHT} in flight (requests/s)", c),
        ("d", "bare Faust agent forwarding each event, no model", d),
    ]
    print()
    print(f"| run | what | events/s (median of {args.repeat} for b, b1, d) | / min(c, d) |")
    print("|-----|------|---------:|------------:|")
    for key, what, value in rows:
        print(f"| {key} | {what} | {value:,.0f} | {value / limit:.2f} |")
    print()
    print(
        f"min(c, d) = {limit:,.0f}/s;  b / min(c, d) = {b / limit:.2f} (target >= 0.9);  "
        f"b / a = {b / a:.1f} (target >= 15);  b1 / min(c, d) = {b1 / limit:.2f}"
    )


if __name__ == "__main__":
    main()
