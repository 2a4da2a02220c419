"""Send synthetic support tickets to the ``tickets`` topic.

    python -m examples.llm_support.producer --count 8

Each ticket is keyed by its id. The field saying which category a person
would give it stays here: the model never sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import orjson
from aiokafka import AIOKafkaProducer

from examples.llm_support.tickets import make_tickets

__all__ = ["send_tickets"]


async def send_tickets(
    bootstrap: str, tickets: list[dict[str, object]], topic: str = "tickets"
) -> int:
    """Send ``tickets`` (without their expected answers); returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for ticket in tickets:
            wire = {k: v for k, v in ticket.items() if not k.startswith("expected")}
            await producer.send(topic, key=str(ticket["id"]).encode(), value=orjson.dumps(wire))
        await producer.flush()
    finally:
        await producer.stop()
    return len(tickets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    sent = asyncio.run(send_tickets(args.bootstrap, make_tickets(args.count)))
    print(f"sent {sent} tickets")


if __name__ == "__main__":
    main()
