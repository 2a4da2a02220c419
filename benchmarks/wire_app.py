"""The Faust app that ``benchmarks/wire.py`` and ``benchmarks/hedging.py`` run as workers.

One model, its registration read from ``BENCH_MODEL`` (JSON: any
``app.model`` keyword, wire format and replicas included), one agent that
scores ``BENCH_IN`` into ``BENCH_OUT``. Each output carries the input's
``sent`` time (set by the producer), so end-to-end latency is the output
record's timestamp minus it.
"""

from __future__ import annotations

import json
import os

import faust

from faust_inference import infer, install

env = os.environ.get

app = faust.App(
    env("BENCH_APP_ID", "bench-wire"),
    broker=env("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_enabled=False,
    broker_commit_interval=1.0,
    topic_disable_leader=True,
    producer_linger=float(env("BENCH_LINGER", "0.005")),
    topic_partitions=4,
)
install(app)
source = app.topic(env("BENCH_IN", "bench-in"), value_serializer="json")
sink = app.topic(env("BENCH_OUT", "bench-out"), value_serializer="json")

model = app.model("bench", **json.loads(env("BENCH_MODEL", "{}")))


@model.preprocess
def features(event: dict[str, object]) -> object:
    return event["x"]


@app.agent(source)
@infer(model)
async def scored(results):  # type: ignore[no-untyped-def]
    async for r in results:
        await sink.send(value={"id": r.event["id"], "sent": r.event.get("sent"), "p": r.output})
