"""A Faust app with two versions of one model, for the lifecycle tests.

Configured by environment variables (fresh topics and app id per test), run
as real worker processes. Each output record says which version and arm
answered, and which worker process.
"""

from __future__ import annotations

import json
import os
import time

import faust

from faust_inference import infer, install
from faust_inference.lifecycle import evaluate_live, lifecycle

env = os.environ.get

app = faust.App(
    env("APP_ID", "it-lifecycle"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=bool(env("WEB_PORT")),
    web_port=int(env("WEB_PORT", "6066")),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    broker_session_timeout=float(env("SESSION_TIMEOUT", "10")),
    broker_heartbeat_interval=1.0,
    broker_commit_interval=1.0,
    topic_disable_leader=False,
    producer_acks=-1,
    topic_partitions=4,
    # faust-streaming 0.15.3 can crash a worker while it starts standby replicas of a
    # partitioned table after a rebalance (seek to offset None: "Offset must be a positive
    # integer"); docs/lifecycle.md recommends this setting with live evaluation.
    table_standby_replicas=0,
)
install(app)

common = json.loads(env("MODEL_OPTIONS", '{"input_name": "features", "shape": [10]}'))
model = app.model(
    "model",
    provider="kserve",
    endpoint=env("V1_URL"),
    remote_name=env("MODEL_REMOTE_NAME", "fraud"),
    version="v1",
    task="classification",
    max_concurrency=16,
    batch_size=8,
    batch_timeout=0.005,
    timeout=5.0,
    retries={"max_retries": int(env("RETRIES", "3")), "initial_backoff": 0.05},
    **common,
)
model.add_version("v2", endpoint=env("V2_URL", env("V1_URL")), **json.loads(env("V2", "{}")))
# An arm for the split test, which scores 20,000 events: bigger batches, fewer requests.
model.add_version("v3", endpoint=env("V3_URL", env("V1_URL")), **json.loads(env("V3", "{}")))
lifecycle(
    app,
    shadow_in_flight=int(env("SHADOW_IN_FLIGHT", "16")),
    shadow_max_lag_s=float(env("SHADOW_MAX_LAG", "0.02")),
)

if env("WEB_PORT"):
    from faust_inference import web

    app.boot_strategy.enable_web = True  # the worker runs with --without-web
    web.setup(app, token=env("WEB_TOKEN") or None)

if env("LABELS_TOPIC"):
    evaluate_live(app, model, env("LABELS_TOPIC"), window_s=5.0, ttl_s=60.0)


@model.preprocess
def take_input(event: dict[str, object]) -> object:
    return event["x"]


source = app.topic(env("IN_TOPIC", "in"), value_serializer="json")
sink = app.topic(env("OUT_TOPIC", "out"), value_serializer="json")


@app.agent(source)
@infer(model, dead_letter=env("DLQ_TOPIC", "dlq"))
async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        await sink.send(
            key=r.event["id"],
            value={
                "id": r.event["id"],
                "output": r.output,
                "version": r.version,
                "variant": r.variant,
                "latency_s": r.latency_s,
                "sent_at": r.event.get("sent_at"),
                "done_at": time.time(),
                "partition": r.partition,
                "offset": r.offset,
                "pid": os.getpid(),
            },
        )
