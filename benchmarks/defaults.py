"""Fast by default: the README's app with only ``max_concurrency=50``, through Kafka.

    python benchmarks/defaults.py [--latency 0.02] [--events 3000] [--repeat 5]
    python benchmarks/defaults.py --before     # also batch_size=1, the default until 2026-11

Faust's defaults (no producer linger) and no batch settings: what a user gets
without tuning (``benchmarks/defaults_app.py``). One broker, the fixed-latency
fake endpoint in its own process, 4 partitions in and 1 out. For each
provider that batches (``kserve``, the Open Inference Protocol, and ``openai``
embeddings), events/s against the box's limit, defined as in
``benchmarks/throughput.py``: min(the endpoint's raw capacity with aiohttp at
50 in flight, no Kafka; a bare Faust agent forwarding each event with the
same defaults). Runs are interleaved (bare, kserve, embeddings, bare, ...);
the table gives medians with min-max. Target: >= 0.9 x the limit.
``--before`` adds runs with ``batch_size=1`` (``kserve@1``, ``embeddings@1``),
interleaved with the others so that both see the same load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import fake_endpoint, raw_capacity, through_kafka
from devtools.kafka import KafkaBroker

IN_FLIGHT = 50
APP = "benchmarks.defaults_app"
EMBED_BODY = {"model": "fake-model", "input": ["event 1: [0.1, 0.2]"]}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--model", default="{}", help="extra registration keywords (JSON) for both models"
    )
    parser.add_argument("--modes", default="kserve,embeddings")
    parser.add_argument(
        "--before", action="store_true", help="also run each provider with batch_size=1 (mode@1)"
    )
    args = parser.parse_args()
    json.loads(args.model)  # fail early on a typo
    modes = args.modes.split(",")
    if args.before:
        modes += [f"{m}@1" for m in modes]
    workdir = Path(tempfile.mkdtemp(prefix="bench-defaults-"))
    with KafkaBroker() as kafka, fake_endpoint(args.latency) as url:
        print(
            f"Kafka {kafka.version} at {kafka.bootstrap}; endpoint {url} with "
            f"{args.latency * 1000:g} ms; model {args.model}; logs in {workdir}",
            flush=True,
        )
        env = {"BENCH_MODEL_URL": url, "BENCH_MODEL": args.model}
        # Warm the broker's JIT and the page cache: the first runs are slower.
        through_kafka(kafka, APP, "bare", args.events, workdir, env)
        capacity = {
            "kserve": [asyncio.run(raw_capacity(url, args.events, IN_FLIGHT))],
            "embeddings": [
                asyncio.run(raw_capacity(url, args.events, IN_FLIGHT, "/v1/embeddings", EMBED_BODY))
            ],
        }
        runs: dict[str, list[float]] = {m: [] for m in ("bare", *modes)}
        for i in range(args.repeat):
            for mode in runs:
                provider, _, fixed = mode.partition("@")
                model = {**json.loads(args.model), **({"batch_size": int(fixed)} if fixed else {})}
                runs[mode].append(
                    through_kafka(
                        kafka,
                        APP,
                        provider,
                        args.events,
                        workdir,
                        {**env, "BENCH_MODEL": json.dumps(model)},
                    )
                )
            capacity["kserve"].append(asyncio.run(raw_capacity(url, args.events, IN_FLIGHT)))
            capacity["embeddings"].append(
                asyncio.run(raw_capacity(url, args.events, IN_FLIGHT, "/v1/embeddings", EMBED_BODY))
            )
            print(
                f"  run {i + 1}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items())
                + ", raw "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in capacity.items()),
                flush=True,
            )
    d = statistics.median(runs["bare"])
    print()
    print(
        f"| provider | c: endpoint raw, {IN_FLIGHT} in flight (req/s) | d: bare Faust agent "
        f"(events/s) | limit min(c, d) | events/s | / limit (per round: median, min-max) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode in modes:
        raw = capacity[mode.partition("@")[0]]
        c = statistics.median(raw)
        limit = min(c, d)
        # Each run against the limit measured in the same round (same load on the box).
        ratios = [
            v / min(c_i, d_i) for v, c_i, d_i in zip(runs[mode], raw[1:], runs["bare"], strict=True)
        ]
        print(
            f"| {mode} | {spread(raw)} | {spread(runs['bare'])} | {limit:,.0f} | "
            f"{spread(runs[mode])} | {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    print(
        f"\n{args.events} events per run, {args.repeat} runs, medians (min-max); "
        "rates over the middle 80% of outputs (broker timestamps)."
    )


if __name__ == "__main__":
    main()
