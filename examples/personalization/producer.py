"""Send synthetic shopper events to the ``clicks`` topic.

    python -m examples.personalization.producer --count 1000 --rate 100

Each event is one of ``--shoppers`` shoppers (the more active ones more often) viewing,
clicking, carting or buying an item that fits their hidden taste (``shop.py``). Events
are keyed by shopper, so one shopper's events stay in order on one partition.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import orjson
from aiokafka import AIOKafkaProducer

from examples.personalization.shop import Shopper, make_shoppers, next_event

__all__ = ["click_id", "produce"]


async def produce(
    bootstrap: str,
    count: int,
    rate: float,
    *,
    shoppers: list[Shopper] | None = None,
    topic: str = "clicks",
    seed: int = 7,
) -> dict[str, int]:
    """Send ``count`` events at about ``rate`` per second; returns events per shopper."""
    crowd = shoppers or make_shoppers(40, seed=seed)
    rng = random.Random(seed)
    activity = [s.activity for s in crowd]
    sent: dict[str, int] = {}
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all") as kafka:
        started = time.monotonic()
        for i in range(count):
            shopper = rng.choices(crowd, activity)[0]
            item_id, action = next_event(shopper, rng)
            event = {
                "id": click_id(seed, i),
                "user_id": shopper.id,
                "item_id": item_id,
                "action": action,
                "ts": time.time(),
            }
            await kafka.send(topic, key=shopper.id.encode(), value=orjson.dumps(event))
            sent[shopper.id] = sent.get(shopper.id, 0) + 1
            if rate > 0:  # keep to the schedule: event i leaves at i / rate
                await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        await kafka.flush()
    return sent


def click_id(seed: int, i: int) -> str:
    """The id of the ``i``-th event of a run, known before it is sent."""
    return f"c-{seed}-{i:06d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second; 0: flat out")
    parser.add_argument("--shoppers", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    crowd = make_shoppers(args.shoppers, seed=args.seed)
    sent = asyncio.run(
        produce(args.bootstrap, args.count, args.rate, shoppers=crowd, seed=args.seed)
    )
    print(f"sent {sum(sent.values())} events from {len(sent)} shoppers")


if __name__ == "__main__":
    main()
