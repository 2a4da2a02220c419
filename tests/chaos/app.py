"""The Faust app the chaos tests run as real worker processes.

A user's app as the README writes it: a typed record stream scored through one
model, results to a topic, failures to a dead-letter topic. Configured by
environment variables so that each test has fresh topics and its own group.
"""

from __future__ import annotations

import json
import os

import faust

from faust_inference import infer, install

env = os.environ.get

app = faust.App(
    env("APP_ID", "chaos"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_session_timeout=float(env("SESSION_TIMEOUT", "10")),
    broker_heartbeat_interval=1.0,
    broker_commit_interval=float(env("COMMIT_INTERVAL", "0.5")),
    topic_disable_leader=True,
    producer_acks=-1,
    topic_partitions=int(env("TOPIC_PARTITIONS", "4")),
)
install(app)


class Reading(faust.Record, serializer="json"):
    id: str
    x: list[float]


model = app.model(
    "model",
    provider=env("MODEL_PROVIDER", "kserve"),
    endpoint=env("MODEL_URL"),
    remote_name="fraud",
    max_concurrency=int(env("MAX_CONCURRENCY", "8")),
    batch_size=int(env("BATCH_SIZE", "4")),
    timeout=float(env("MODEL_TIMEOUT", "2")),
    retries={"max_retries": 2, "initial_backoff": 0.05},
    **json.loads(env("MODEL_OPTIONS", "{}")),
)


@model.preprocess
def take_input(reading: Reading) -> list[float]:
    if not reading.x:
        raise ValueError("x is empty")
    return reading.x


source = app.topic(env("IN_TOPIC", "in"), value_type=Reading)
sink = app.topic(env("OUT_TOPIC", "out"), value_serializer="json")


async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        await sink.send(
            key=r.event.id,
            value={"id": r.event.id, "output": r.output, "offset": r.offset, "pid": os.getpid()},
        )


scored = infer(model, dead_letter=env("DLQ_TOPIC", "dlq"))
if env("INFER_ABOVE_AGENT"):  # a misconfiguration the tests check: the wrong order
    agent = scored(app.agent(source)(score))
else:
    agent = app.agent(source)(scored(score))
