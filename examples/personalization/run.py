"""Run the whole personalization example on this machine with one command.

    python -m examples.personalization.run [--count 600] [--rate 60] [--shoppers 30]

Starts a real Kafka broker and MLServer (both installed into ``.cache/`` on first use),
trains and serves the ranker, starts the Faust worker with
``faust -A examples.personalization.app worker``, sends shopper events, and prints the
suggestions as they arrive, then how well they match each shopper's hidden taste.
Stops everything once every event has its suggestions (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from devtools.kafka import KafkaBroker, ensure_jars
from devtools.mlserver import CACHE_DIR, prepare_model, run_example
from examples.personalization.producer import click_id, produce
from examples.personalization.shop import Shopper, make_shoppers

__all__ = ["Run", "latest_suggestions", "prepare_ranker", "scenario", "taste_match", "topics"]

HERE = Path(__file__).resolve().parent
SEED = 7


def topics(app_id: str = "personalization") -> list[str]:
    """The app's topics and its table's changelog, created before the worker starts.

    A changelog that Faust declares itself may be missing from the worker's metadata
    at its first write, which crashes the agent (``PartitionsMismatch``).
    """
    return [
        "clicks",
        "rank-requests",
        "suggestions",
        "rank-requests.dlq",
        f"{app_id}-shopper-profiles-changelog",
    ]


def prepare_ranker(models: Path = CACHE_DIR / "example-models" / "personalization") -> Path:
    """Train the ranker into ``models/ranker`` unless current; returns ``models``."""
    prepare_model(
        models / "ranker",
        HERE / "train.py",
        sources=[HERE / "shop.py", HERE / "ranking_runtime.py"],
    )
    return models


def latest_suggestions(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each shopper's last suggested categories, from ``suggestions`` records in order."""
    return {r["user_id"]: [i["category"] for i in r["items"]] for r in records}


def taste_match(shoppers: list[Shopper], latest: dict[str, list[str]]) -> float:
    """Share of shoppers whose top suggestion is in one of their two hidden favourites."""
    hits = [latest[s.id][0] in s.favourites(2) for s in shoppers if s.id in latest]
    return sum(hits) / len(hits) if hits else 0.0


@dataclass
class Run:
    """What a run sent and what came out."""

    sent: dict[str, int]  # events per shopper
    suggestions: list[dict[str, Any]] = field(default_factory=list)  # in arrival order
    dead: list[dict[str, Any]] = field(default_factory=list)

    def answered(self) -> set[str]:
        """Ids of the events that have suggestions or a dead letter."""
        return {s["click_id"] for s in self.suggestions} | {
            d["event"]["click"]["id"] for d in self.dead
        }


async def watch(bootstrap: str, run: Run, ids: set[str], deadline: float) -> None:
    """Print suggestions until every event id has them (or a dead letter)."""
    consumer = AIOKafkaConsumer(
        "suggestions",
        "rank-requests.dlq",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        while not ids <= run.answered() and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for value in (orjson.loads(r.value) for r in records):
                    if tp.topic == "rank-requests.dlq":
                        run.dead.append(value)
                        shopper = value["event"]["click"]["user_id"]
                        print(f"  DLQ  {shopper}  {value['error_class']}")
                        continue
                    run.suggestions.append(value)
                    after = value["after"]
                    items = "  ".join(f"{i['item_id']} {i['score']:.2f}" for i in value["items"])
                    print(
                        f"  {value['user_id']}  {after['action']:>11} {after['item_id']:<14}"
                        f" -> {items}"
                    )
    finally:
        await consumer.stop()


async def scenario(
    kafka: KafkaBroker, shoppers: list[Shopper], count: int, rate: float, timeout: float
) -> Run:
    """Send events and show suggestions at the same time; then compare with the tastes."""
    ids = {click_id(SEED, i) for i in range(count)}
    run = Run(sent={})
    say(f"sending {count} events of {len(shoppers)} shoppers at {rate:g}/s")
    run.sent, _ = await asyncio.gather(
        produce(kafka.bootstrap, count, rate, shoppers=shoppers, seed=SEED),
        watch(kafka.bootstrap, run, ids, time.monotonic() + timeout),
    )
    latest = latest_suggestions(run.suggestions)
    say(
        f"{len(run.answered() & ids)}/{count} events answered ({len(run.dead)} dead letters); "
        "the busiest shoppers' hidden favourites and their last suggestions:"
    )
    for shopper in sorted(shoppers, key=lambda s: -run.sent.get(s.id, 0))[:6]:
        print(
            f"  {shopper.id}  {run.sent.get(shopper.id, 0):3d} events  likes "
            f"{'+'.join(shopper.favourites(2)):<20}  suggested {latest.get(shopper.id)}"
        )
    active = [s for s in shoppers if run.sent.get(s.id, 0) >= 5]
    say(
        f"top suggestion in a hidden favourite category for "
        f"{taste_match(active, latest):.0%} of the {len(active)} shoppers with 5+ events "
        "(a random category: 25%)"
    )
    return run


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="shopper events to send")
    parser.add_argument("--rate", type=float, default=60.0, help="events per second")
    parser.add_argument("--shoppers", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="install and train what is missing, print the model folder, stop",
    )
    args = parser.parse_args()
    if args.prepare_only:
        print(f"MODELS={prepare_ranker()}")
        return 0

    # aiokafka warns while fresh topics elect their leaders; the reader retries by itself.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    say("preparing Kafka jars, the MLServer virtualenv and the ranker (first run: minutes)")
    ensure_jars()
    shoppers = make_shoppers(args.shoppers, seed=SEED)

    def run(kafka: KafkaBroker) -> int:
        done = asyncio.run(scenario(kafka, shoppers, args.count, args.rate, args.timeout))
        return 0 if len(done.suggestions) == args.count else 1

    return run_example(
        "examples.personalization.app",
        prepare_ranker(),
        topics(),
        lambda kafka, model: {"KAFKA_BROKER": kafka, "SHOP_MODEL_URL": model},
        run,
    )


if __name__ == "__main__":
    sys.exit(main())
