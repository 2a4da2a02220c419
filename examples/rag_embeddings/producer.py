"""Send a product catalog, then updates to it, to the ``product-updates`` topic.

    python -m examples.rag_embeddings.producer --products 200 --updates 100

Records are keyed by product id, so all updates of one product land on one
partition, in order. Most updates change only price and stock (their text is
already embedded: the cache answers); every fifth rewrites the description.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer

from examples.rag_embeddings.catalog import make_catalog, make_updates

__all__ = ["produce"]


async def produce(
    bootstrap: str,
    records: Sequence[dict[str, object]],
    rate: float = 0.0,
    *,
    topic: str = "product-updates",
) -> int:
    """Send ``records`` at about ``rate`` per second (0: as fast as possible)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    started = time.monotonic()
    try:
        for i, record in enumerate(records):
            key = str(record["id"]).encode()
            await producer.send(topic, key=key, value=orjson.dumps(record))
            if rate > 0:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="records per second; 0: flat out")
    args = parser.parse_args()
    catalog = make_catalog(args.products)
    sent = asyncio.run(
        produce(args.bootstrap, catalog + make_updates(catalog, args.updates), args.rate)
    )
    print(f"sent {sent} product updates")


if __name__ == "__main__":
    main()
