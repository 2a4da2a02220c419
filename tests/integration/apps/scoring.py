"""A Faust app for integration tests: score a JSON topic through one model.

Configured by environment variables so that each test gets fresh topics and a
fresh consumer group, and so that it runs as a real worker process
(``faust -A tests.integration.apps.scoring worker``), killable with SIGKILL.
"""

from __future__ import annotations

import json
import os

import faust

from faust_inference import infer, install

env = os.environ.get

app = faust.App(
    env("APP_ID", "it-scoring"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_session_timeout=float(env("SESSION_TIMEOUT", "10")),
    broker_heartbeat_interval=1.0,
    broker_commit_interval=float(env("COMMIT_INTERVAL", "1.0")),
    topic_disable_leader=True,
    producer_acks=-1,
    topic_partitions=int(env("TOPIC_PARTITIONS", "4")),  # the cache table's, like the input's
)
install(app)

model = app.model(
    "model",
    provider=env("MODEL_PROVIDER", "kserve"),
    endpoint=json.loads(env("MODEL_URLS", "null")) or env("MODEL_URL"),  # a list: replicas
    remote_name=env("MODEL_REMOTE_NAME", "fraud"),
    version=env("MODEL_VERSION") or None,
    task=env("MODEL_TASK", "classification"),
    max_concurrency=int(env("MAX_CONCURRENCY", "16")),
    batch_size=int(env("BATCH_SIZE", "8")),
    batch_timeout=0.005,
    timeout=float(env("MODEL_TIMEOUT", "5")),
    retries={"max_retries": 3, "initial_backoff": 0.05},
    cache=json.loads(env("CACHE", "null")),
    **json.loads(env("MODEL_OPTIONS", "{}")),
)


@model.preprocess
def take_input(event: dict[str, object]) -> object:
    return event["x"]


# Ids whose result makes the agent itself raise (a bug in user code, simulated).
RAISE_ON = set(filter(None, env("RAISE_ON", "").split(",")))

source = app.topic(env("IN_TOPIC", "in"), value_serializer="json")
sink = app.topic(env("OUT_TOPIC", "out"), value_serializer="json")


@app.agent(source)
@infer(model, dead_letter=env("DLQ_TOPIC", "dlq"), ordered=env("ORDERED", "1") == "1")
async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        if r.event["id"] in RAISE_ON:
            raise RuntimeError(f"agent bug on {r.event['id']}")
        await sink.send(
            key=r.event["id"],
            value={
                "id": r.event["id"],
                "output": r.output,
                "partition": r.partition,
                "offset": r.offset,
                "fallback": r.fallback,
                "cached": r.cached,
                "pid": os.getpid(),
            },
        )
