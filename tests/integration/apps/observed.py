"""A Faust app for the observability tests: scoring with metrics on ``/metrics``.

Like ``scoring.py`` (one model, results to OUT_TOPIC, failures to DLQ_TOPIC),
configured from the environment, plus: the Faust web server on WEB_PORT with
the Prometheus metrics, and optionally a rate limit (RATE_LIMIT, JSON), a
circuit breaker (CIRCUIT_BREAKER, JSON) and a drift monitor on input
feature ``x0`` (DRIFT=1, alerts to DRIFT_TOPIC).
"""

from __future__ import annotations

import json
import os
import random

import faust

from faust_inference import DriftMonitor, Price, infer, install
from faust_inference.sensors import prometheus

env = os.environ.get

app = faust.App(
    env("APP_ID", "it-observed"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    topic_partitions=4,  # the tables' changelogs, like the test topics
    web_enabled=True,
    web_port=int(env("WEB_PORT", "6066")),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_commit_interval=1.0,
    topic_disable_leader=True,
    producer_acks=-1,
)
# devtools.FaustWorker starts workers with --without-web; the metrics are
# served by the web server, so this app keeps it on regardless.
app.boot_strategy.enable_web = True
install(app)
prometheus.setup(app, prices={"model": Price(per_request=0.002)})

model = app.model(
    "model",
    provider=env("MODEL_PROVIDER", "kserve"),
    endpoint=env("MODEL_URL"),
    remote_name=env("MODEL_REMOTE_NAME", "fraud"),
    version=env("MODEL_VERSION") or None,
    max_concurrency=int(env("MAX_CONCURRENCY", "16")),
    batch_size=int(env("BATCH_SIZE", "8")),
    batch_timeout=float(env("BATCH_TIMEOUT", "0.005")),
    timeout=float(env("MODEL_TIMEOUT", "5")),
    retries=json.loads(env("RETRIES", '{"max_retries": 3, "initial_backoff": 0.05}')),
    rate_limit=json.loads(env("RATE_LIMIT", "null")),
    circuit_breaker=json.loads(env("CIRCUIT_BREAKER", "null")),
    **json.loads(env("MODEL_OPTIONS", "{}")),
)


@model.preprocess
def take_input(event: dict[str, object]) -> object:
    return event["x"]


drift = None
if env("DRIFT") == "1":
    rng = random.Random(0)
    drift = DriftMonitor(
        app,
        model,
        features={"x0": lambda e: e["x"][0]},
        reference={"x0": [rng.gauss(0.0, 1.0) for _ in range(5000)]},
        window=float(env("DRIFT_WINDOW", "2")),
        check_interval=0.25,
        flush_interval=0.25,
        min_samples=int(env("DRIFT_MIN_SAMPLES", "100")),
        threshold=0.2,
        alerts=env("DRIFT_TOPIC", "drift"),
    )

source = app.topic(env("IN_TOPIC", "in"), value_serializer="json")
sink = app.topic(env("OUT_TOPIC", "out"), value_serializer="json")


@app.agent(source)
@infer(model, dead_letter=env("DLQ_TOPIC", "dlq"))
async def score(results):  # type: ignore[no-untyped-def]
    async for r in results:
        if drift is not None:
            drift.observe(r)
        await sink.send(key=r.event["id"], value={"id": r.event["id"], "output": r.output})
