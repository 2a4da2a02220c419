"""The Faust app that ``benchmarks/defaults.py`` runs as workers: the README's, defaults only.

Faust's defaults (no producer linger, the default commit interval) and one
model registered with nothing but ``max_concurrency=50``: no batch settings.
``BENCH_MODE`` picks the model:

* ``kserve``: the Open Inference Protocol route of the fake endpoint;
* ``embeddings``: its OpenAI-compatible ``/v1/embeddings``;
* ``bare``: no model, each event forwarded (Faust's ceiling with these defaults).

``BENCH_MODEL`` (JSON) adds registration keywords, e.g. ``{"batch_size": 1}``
for the behaviour before ``batch_size="auto"``.
"""

from __future__ import annotations

import json
import os

import faust

from faust_inference import infer, install

env = os.environ.get
MODE = env("BENCH_MODE", "bare")
URL = env("BENCH_MODEL_URL", "http://127.0.0.1:8080")
EXTRA = json.loads(env("BENCH_MODEL", "{}"))

app = faust.App(env("BENCH_APP_ID", "bench-defaults"), broker=env("KAFKA_BROKER"))
install(app)
source = app.topic(env("BENCH_IN", "bench-in"), value_serializer="json")
sink = app.topic(env("BENCH_OUT", "bench-out"), value_serializer="json")

if MODE == "kserve":
    model = app.model("bench", provider="kserve", endpoint=URL, max_concurrency=50, **EXTRA)

    @model.preprocess
    def features(event: dict[str, object]) -> object:
        return event["x"]

elif MODE == "embeddings":
    model = app.model(
        "bench",
        provider="openai",
        task="embedding",
        endpoint=f"{URL}/v1",
        remote_name="fake-model",
        max_concurrency=50,
        **EXTRA,
    )

    @model.preprocess
    def text(event: dict[str, object]) -> object:
        return f"event {event['id']}: {event['x']}"


if MODE == "bare":

    @app.agent(source)
    async def bare(stream):  # type: ignore[no-untyped-def]
        async for event in stream:
            await sink.send(value={"id": event["id"], "p": event["x"]})

else:

    @app.agent(source)
    @infer(model)
    async def scored(results):  # type: ignore[no-untyped-def]
        async for r in results:
            await sink.send(value={"id": r.event["id"], "p": r.output})
