"""Send synthetic card transactions to the ``transactions`` topic.

    python -m examples.fraud_detection.producer --count 500 --rate 200

Every few hundred events one carries a broken feature vector, to show that
bad input ends in the dead-letter topic with its reason instead of being lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import orjson
from aiokafka import AIOKafkaProducer

from examples.fraud_detection.train import make_transactions


def transaction_id(seed: int, i: int) -> str:
    """The id of the ``i``-th transaction of a run, known before it is sent."""
    return f"tx-{seed}-{i:06d}"


async def produce(
    bootstrap: str,
    count: int,
    rate: float,
    *,
    topic: str = "transactions",
    seed: int = 7,
    bad_every: int = 250,
) -> list[str]:
    """Send ``count`` transactions at about ``rate`` per second; returns their ids."""
    rows, _ = make_transactions(count, seed=seed)
    rng = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    ids: list[str] = []
    started = time.monotonic()
    try:
        for i, features in enumerate(rows):
            tx_id = transaction_id(seed, i)
            card = f"card-{rng.randrange(200):03d}"
            value: dict[str, object] = {
                "id": tx_id,
                "card_id": card,
                "amount": round(2.718281828 ** features[0] - 1, 2),
                "features": features,
            }
            if bad_every and i % bad_every == bad_every - 1:
                value["features"] = features[:7]  # a truncated row: the model rejects it
            await producer.send(topic, key=card.encode(), value=orjson.dumps(value))
            ids.append(tx_id)
            if rate > 0:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second; 0: flat out")
    args = parser.parse_args()
    ids = asyncio.run(produce(args.bootstrap, args.count, args.rate))
    print(f"sent {len(ids)} transactions")


if __name__ == "__main__":
    main()
